import Foundation
import J4Core
import J4Redis
import J4Runtime
import J4TestSupport
import Testing

@Suite("Credentials (real redis-server and j4 processes)")
struct CredentialTests {
    @Test("a password in a --redis URL is not in the process title (/proc/PID/cmdline), nor in what the process prints")
    func processTitle() async throws {
        // Nothing listens on port 1 of loopback: the worker keeps retrying and printing why.
        let worker = try J4Binary.start(["worker", "--redis", "redis://j4:hunter2-secret@127.0.0.1:1", "--log-level", "debug"])
        defer { worker.send(SIGKILL) }
        _ = await worker.output.wait(for: "redis", timeout: .seconds(10))
        let cmdline = try String(contentsOfFile: "/proc/\(worker.pid)/cmdline", encoding: .utf8).replacingOccurrences(of: "\0", with: " ")
        #expect(cmdline.contains("redis://j4:") && cmdline.contains("@127.0.0.1:1"), "\(cmdline)")
        #expect(!cmdline.contains("hunter2"), "\(cmdline)")
        #expect(!worker.output.all.contains("hunter2"), "\(worker.output.tail())")
    }

    @Test("J4_REDIS_PASSWORD_FILE: the password from a mounted secret file; a missing file is named, its contents never")
    func passwordFile() async throws {
        let redis = try await EmbeddedRedis.start(extraArguments: ["--requirepass", "from-a-file"])
        defer { Task { await redis.stop() } }
        let file = try temporaryFile("from-a-file\n", suffix: ".secret")
        let (ok, okOutput) = try await J4Binary.run(["status", "--redis", redis.url], environment: ["J4_REDIS_PASSWORD_FILE": file])
        #expect(ok == 0, "\(okOutput)")
        let (missing, missingOutput) = try await J4Binary.run(["status", "--redis", redis.url], environment: ["J4_REDIS_PASSWORD_FILE": "/nonexistent/j4-secret"])
        #expect(missing == 2 && missingOutput.contains("J4_REDIS_PASSWORD_FILE=/nonexistent/j4-secret cannot be read"), "\(missingOutput)")
        let wrong = try temporaryFile("not-the-password\n", suffix: ".secret")
        let (refused, refusedOutput) = try await J4Binary.run(["status", "--redis", redis.url], environment: ["J4_REDIS_PASSWORD_FILE": wrong])
        #expect(refused != 0 && !refusedOutput.contains("not-the-password"), "\(refusedOutput)")
    }
}
