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
    ///
    /// `diesWithParent`: the server gets SIGKILL from the kernel when this process ends,
    /// however it ends (`setpriv --pdeathsig`, from util-linux), so a `j4 run` killed with
    /// SIGKILL leaves no Redis behind; its folder is removed by the next start in the same
    /// temporary directory, which sweeps the folders of processes that are gone.
    /// `wrapper`: a command that runs redis-server (its path appended to it), such as
    /// `/usr/bin/env LD_PRELOAD=… ` for tests that move the server's clock; not with `diesWithParent`.
    public static func start(
        extraArguments: [String] = [], diesWithParent: Bool = false, wrapper: [String] = [], timeout: Duration = .seconds(15)
    ) async throws -> EmbeddedRedis {
        guard let redisServer = findExecutable("redis-server") else {
            throw StartError(description: "redis-server was not found on PATH; install it (Debian/Ubuntu: apt-get install redis-server) or pass --redis URL")
        }
        sweepOrphans()
        var binary = redisServer
        var prefix: [String] = []
        if diesWithParent {
            guard let setpriv = findExecutable("setpriv") else {
                throw StartError(description: "setpriv was not found on PATH; install util-linux (Debian/Ubuntu: apt-get install util-linux) or pass --redis URL")
            }
            binary = setpriv
            prefix = ["--pdeathsig", "KILL", "--", redisServer]
        } else if let first = wrapper.first {
            binary = first
            prefix = wrapper.dropFirst() + [redisServer]
        }
        let dir = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("\(folderPrefix)\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let args = [
            "--port", "0", "--unixsocket", dir.appendingPathComponent("redis.sock").path, "--unixsocketperm", "700",
            "--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction", "--daemonize", "no",
            "--dir", dir.path, "--logfile", "",
        ] + extraArguments
        let redis = try EmbeddedRedis(binary: binary, directory: dir, arguments: prefix + args, keeper: diesWithParent)
        try await redis.waitReady(timeout: timeout)
        return redis
    }

    /// The name of every such folder: this prefix, the pid of the process that made it, a nonce.
    static let folderPrefix = "j4-redis-"

    /// Ends the keeper thread (see ``spawn(_:_:keeper:)``).
    let release: DispatchSemaphore?

    private init(binary: String, directory: URL, arguments: [String], keeper: Bool) throws {
        self.binary = binary
        self.directory = directory
        self.arguments = arguments
        self.endpoint = RedisEndpoint(address: .unix(path: directory.appendingPathComponent("redis.sock").path))
        (child, release) = try EmbeddedRedis.spawn(binary, arguments, keeper: keeper)
    }

    /// Starts the child. With `keeper`, from a thread of its own that lives until ``stop()``:
    /// the kernel's parent-death signal fires when the *thread* that started a child ends, and
    /// a thread of Swift's pool may end whenever it is idle.
    static func spawn(_ binary: String, _ arguments: [String], keeper: Bool) throws -> (ChildProcess, DispatchSemaphore?) {
        guard keeper else { return (try ChildProcess(binary, arguments), nil) }
        let release = DispatchSemaphore(value: 0)
        let started = DispatchSemaphore(value: 0)
        // Written by the thread before `started` is signalled, read after: the semaphore orders them.
        final class Outcome: @unchecked Sendable { var result: Result<ChildProcess, any Error>? }
        let outcome = Outcome()
        let thread = Thread {
            outcome.result = Result { try ChildProcess(binary, arguments) }
            started.signal()
            release.wait()
        }
        thread.name = "j4-redis-keeper"
        thread.start()
        started.wait()
        return (try outcome.result!.get(), release)
    }

    /// Removes the folders of private servers whose process is gone (a `j4 run` that was
    /// killed). Their servers died with it; a folder whose process lives is left alone.
    static func sweepOrphans() {
        let tmp = URL(fileURLWithPath: NSTemporaryDirectory())
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: tmp.path) else { return }
        for name in names where name.hasPrefix(folderPrefix) {
            guard let pid = Int32(name.dropFirst(folderPrefix.count).split(separator: "-").first ?? ""), pid > 0, pid != getpid() else { continue }
            if Glibc.kill(pid, 0) != 0 && errno == ESRCH {
                try? FileManager.default.removeItem(at: tmp.appendingPathComponent(name))
            }
        }
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
        release?.signal()
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
