import Foundation
import J4Redis

/// A private `redis-server` child on a temporary unix socket: `j4 run`'s zero-setup Redis,
/// and the real Redis every test talks to.
public final class EmbeddedRedis: @unchecked Sendable {
    /// Where to reach it.
    public let endpoint: RedisEndpoint
    /// Its temporary folder (socket, data).
    public let directory: URL
    /// The running child.
    public private(set) var child: ChildProcess
    let binary: String
    let arguments: [String]

    /// The endpoint's socket path.
    public var socketPath: String { directory.appendingPathComponent("redis.sock").path }

    /// Why a private Redis could not be started.
    public struct StartError: Error, CustomStringConvertible {
        /// For a person.
        public var description: String
    }

    /// Starts `redis-server` and returns once it accepts connections (it says so in its log).
    /// `extraArguments` are passed as they are (e.g. `["--appendonly", "yes"]`).
    public static func start(extraArguments: [String] = [], timeout: Duration = .seconds(15)) async throws -> EmbeddedRedis {
        guard let binary = findExecutable("redis-server") else {
            throw StartError(description: "redis-server was not found on PATH; install it (Debian/Ubuntu: apt-get install redis-server) or pass --redis URL")
        }
        let dir = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("j4-redis-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let args = [
            "--port", "0", "--unixsocket", dir.appendingPathComponent("redis.sock").path, "--unixsocketperm", "700",
            "--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction", "--daemonize", "no",
            "--dir", dir.path, "--logfile", "",
        ] + extraArguments
        let redis = try EmbeddedRedis(binary: binary, directory: dir, arguments: args)
        try await redis.waitReady(timeout: timeout)
        return redis
    }

    private init(binary: String, directory: URL, arguments: [String]) throws {
        self.binary = binary
        self.directory = directory
        self.arguments = arguments
        self.endpoint = RedisEndpoint(address: .unix(path: directory.appendingPathComponent("redis.sock").path))
        child = try ChildProcess(binary, arguments)
    }

    func waitReady(timeout: Duration) async throws {
        guard await child.output.wait(for: "ready to accept connections", timeout: timeout) else {
            await stop()
            throw StartError(description: "redis-server did not become ready: " + child.output.tail())
        }
    }

    /// Starts the same server again on the same socket (after ``kill(_:)``), for restart tests.
    public func restart(timeout: Duration = .seconds(15)) async throws {
        child = try ChildProcess(binary, arguments)
        try await waitReady(timeout: timeout)
    }

    /// Sends `signal` to the server and waits for it to exit.
    public func kill(_ signal: Int32 = SIGKILL) async {
        child.send(signal)
        _ = await child.wait()
    }

    /// The child's process id.
    public var pid: Int32 { child.pid }

    /// Stops the child (SIGTERM, then waits) and removes its folder.
    public func stop() async {
        child.send(SIGTERM)
        _ = await child.wait()
        try? FileManager.default.removeItem(at: directory)
    }

    /// Finds an executable on PATH.
    public static func findExecutable(_ name: String) -> String? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}
