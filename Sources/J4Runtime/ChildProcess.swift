import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A child process started with `posix_spawn`, its signal mask cleared and its signal
/// dispositions reset, with stdout and stderr drained on a thread of their own.
///
/// Why not Foundation's `Process`: it spawns from the calling thread and keeps that thread's
/// signal mask, and Swift's pool threads block SIGTERM, so a child started from async code
/// never sees SIGTERM (redis-server would not stop; a worker could not hand off).
public final class ChildProcess: @unchecked Sendable {
    /// The child's process id.
    public let pid: pid_t
    /// Its combined stdout and stderr.
    public let output: OutputDrain
    private let exitLock = NSLock()
    private var exitStatus: Int32?
    private var exitWaiters: [CheckedContinuation<Int32, Never>] = []

    /// Why a child could not be started.
    public struct SpawnError: Error, CustomStringConvertible {
        /// For a person.
        public var description: String
    }

    /// Starts `path` with `arguments`; `environment` replaces the parent's when given.
    public init(_ path: String, _ arguments: [String], environment: [String: String]? = nil) throws {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw SpawnError(description: "pipe failed: \(String(cString: strerror(errno)))") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 2)
        // Nothing else of this process's reaches the child: its sockets (NIO opens them
        // without close-on-exec) would otherwise stay open in the child, so a connection
        // this process closes would not close until the child exits.
        closeInheritedDescriptors(&actions)

        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attr, &none)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigdefault(&attr, &all)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let env = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        let argv = [path] + arguments
        var cArgs = argv.map { strdup($0) } + [nil]
        var cEnv = env.map { strdup($0) } + [nil]
        defer {
            cArgs.forEach { free($0) }
            cEnv.forEach { free($0) }
        }
        var child: pid_t = 0
        let rc = posix_spawn(&child, path, &actions, &attr, &cArgs, &cEnv)
        close(fds[1])
        guard rc == 0 else {
            close(fds[0])
            throw SpawnError(description: "cannot start \(path): \(String(cString: strerror(rc)))")
        }
        let spawned = child
        pid = spawned
        output = OutputDrain()
        output.start(reading: fds[0])
        let reaper = Thread { [self] in
            var status: Int32 = 0
            while waitpid(spawned, &status, 0) < 0 && errno == EINTR {}
            let code: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
            let waiters = exitLock.withLock {
                exitStatus = code
                defer { exitWaiters = [] }
                return exitWaiters
            }
            waiters.forEach { $0.resume(returning: code) }
        }
        reaper.start()
    }

    /// Sends `signal` (e.g. `SIGTERM`, `SIGKILL`, `SIGSTOP`).
    public func send(_ signal: Int32) {
        if exitLock.withLock({ exitStatus == nil }) { kill(pid, signal) }
    }

    /// True until the child has exited.
    public var isRunning: Bool { exitLock.withLock { exitStatus == nil } }

    /// Waits for the child to exit; its exit code, or 128 + the signal that ended it.
    public func wait() async -> Int32 {
        await withCheckedContinuation { c in
            let done: Int32? = exitLock.withLock {
                if let exitStatus { return exitStatus }
                exitWaiters.append(c)
                return nil
            }
            if let done { c.resume(returning: done) }
        }
    }
}

/// Reads a child's output on a thread of its own until EOF, so the pipe never fills, keeps
/// the last 64 KiB, and wakes those waiting for a line to appear.
public final class OutputDrain: @unchecked Sendable {
    private let lock = NSLock()
    private var text = ""
    private var ended = false
    private var waiters: [(predicate: @Sendable (String) -> Bool, continuation: CheckedContinuation<String?, Never>)] = []

    func start(reading fd: Int32) {
        let thread = Thread { [self] in
            var buffer = [UInt8](repeating: 0, count: 8192)
            while true {
                let n = read(fd, &buffer, buffer.count)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                let woken: [(CheckedContinuation<String?, Never>, String)] = lock.withLock {
                    text += String(decoding: buffer[0..<n], as: UTF8.self)
                    if text.utf8.count > 65_536 { text = String(text.suffix(32_768)) }
                    var wake: [(CheckedContinuation<String?, Never>, String)] = []
                    waiters.removeAll { w in
                        if w.predicate(text) { wake.append((w.continuation, text)); return true }
                        return false
                    }
                    return wake
                }
                for (c, t) in woken { c.resume(returning: t) }
            }
            close(fd)
            let rest = lock.withLock {
                ended = true
                defer { waiters = [] }
                return waiters
            }
            for w in rest { w.continuation.resume(returning: nil) }
        }
        thread.start()
    }

    /// Everything kept so far.
    public var all: String { lock.withLock { text } }

    /// The last characters, for error messages.
    public func tail(_ count: Int = 800) -> String { String(all.suffix(count)) }

    /// Waits until the output satisfies `predicate` (returns the output), the output ends,
    /// or `timeout` passes (both nil).
    public func wait(timeout: Duration, until predicate: @escaping @Sendable (String) -> Bool) async -> String? {
        return await withTaskGroup(of: String?.self) { group in
            group.addTask {
                await withCheckedContinuation { (c: CheckedContinuation<String?, Never>) in
                    let now: (String?, Bool) = self.lock.withLock {
                        if predicate(self.text) { return (self.text, true) }
                        if self.ended { return (nil, true) }
                        self.waiters.append((predicate, c))
                        return (nil, false)
                    }
                    if now.1 { c.resume(returning: now.0) }
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            if first == nil { self.cancelWaiters() }
            group.cancelAll()
            return first
        }
    }

    private func cancelWaiters() {
        let all = lock.withLock {
            defer { waiters = [] }
            return waiters
        }
        for w in all { w.continuation.resume(returning: nil) }
    }

    /// Waits for a text in the output.
    public func wait(for needle: String, timeout: Duration) async -> Bool {
        let n = needle.lowercased()
        return await wait(timeout: timeout) { $0.lowercased().contains(n) } != nil
    }
}

/// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34 and later), which Swift's Glibc
/// module does not import; looked up once at run time.
private let addCloseFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? =
    dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np").map {
        unsafeBitCast($0, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
    }

/// Adds to `actions` the closing in the child of every descriptor above stderr. Where glibc
/// lacks `closefrom`, the descriptors open now are closed one by one.
private func closeInheritedDescriptors(_ actions: inout posix_spawn_file_actions_t) {
    if let addCloseFrom {
        _ = addCloseFrom(&actions, 3)
        return
    }
    let open = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
    for fd in open.compactMap(Int32.init) where fd > 2 { posix_spawn_file_actions_addclose(&actions, fd) }
}

