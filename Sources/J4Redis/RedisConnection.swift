import CHiredis
import Foundation
import Logging
import Metrics

/// Timeouts and identity of a connection.
public struct RedisConnectionOptions: Sendable {
    /// Bound on connecting.
    public var connectTimeout: Duration = .seconds(2)
    /// Bound on every read and write after connecting (`redisSetTimeout`).
    public var readTimeout: Duration = .seconds(2)
    /// Shown by `CLIENT LIST`, e.g. `j4-worker:w1:lease`.
    public var clientName: String
    /// First wait after a failed connection; it doubles per failure, with jitter, up to `maxBackoff`.
    public var minBackoff: Duration = .milliseconds(50)
    /// Longest wait between connection attempts.
    public var maxBackoff: Duration = .seconds(2)

    /// Options for a connection named `clientName`.
    public init(clientName: String) { self.clientName = clientName }
}

/// One connection to Redis on hiredis, owned by a dedicated thread.
///
/// Every call is queued to the connection's thread, so calls are ordered and never block the
/// cooperative pool. After any connection error the hiredis context is freed; the next call
/// reconnects, once the jittered backoff has passed (until then it fails at once with
/// ``RedisError/backingOff(_:)``), and re-applies the read timeout, AUTH, SELECT and
/// CLIENT SETNAME. A server error reply leaves the connection usable.
public final class RedisConnection: @unchecked Sendable {
    /// Where it connects.
    public let endpoint: RedisEndpoint
    /// Its timeouts and name.
    public let options: RedisConnectionOptions
    let thread: DedicatedThread
    let logger: Logger

    // Touched only on `thread`.
    var context: UnsafeMutablePointer<redisContext>?
    /// Redis Cluster: a connection per node, and each slot's node (empty: not known yet).
    var nodes: [String: UnsafeMutablePointer<redisContext>] = [:]
    var slotOwners: [RedisEndpoint.HostPort?] = []
    var failures = 0
    var retryAt: ContinuousClock.Instant?
    var lastFailure = ""
    var scriptHashes: [String: String] = [:]
    var connects = 0

    /// hiredis writes with plain `write(2)`: a write to a connection the server closed raises
    /// SIGPIPE, which would end the process. The failed write is reported as an error anyway.
    private static let ignoreSIGPIPE: Void = { signal(SIGPIPE, SIG_IGN) }()

    /// A connection that opens on its first call.
    public init(endpoint: RedisEndpoint, options: RedisConnectionOptions, logger: Logger = Logger(label: "j4.redis")) {
        RedisConnection.ignoreSIGPIPE
        self.endpoint = endpoint
        self.options = options
        self.logger = logger
        self.thread = DedicatedThread(name: "redis:\(options.clientName)")
    }

    deinit {
        let ctx = context
        thread.submit { if let ctx { redisFree(ctx) } }
        thread.stop()
    }

    /// Closes the connection; a later call opens it again.
    public func close() async {
        _ = try? await thread.run { [self] in dropContext() }
    }

    /// How many times this connection has connected (for tests and status).
    public func connectCount() async -> Int {
        (try? await thread.run { [self] in connects }) ?? 0
    }

    /// Sends one command (binary-safe argv); a server error reply is thrown as ``RedisError/server(code:message:)``.
    @discardableResult
    public func send(_ args: [String]) async throws -> RedisValue {
        try await sendBytes(args.map { Array($0.utf8) })
    }

    /// Sends one command given as bytes.
    @discardableResult
    public func sendBytes(_ args: [[UInt8]]) async throws -> RedisValue {
        let reply = try await pipelineBytes([args])[0]
        if case .error(let e) = reply { throw RedisError.fromReply(e) }
        return reply
    }

    /// Sends several commands in one round trip; each reply comes back in order, errors as ``RedisValue/error(_:)``.
    public func pipeline(_ commands: [[String]]) async throws -> [RedisValue] {
        try await pipelineBytes(commands.map { $0.map { Array($0.utf8) } })
    }

    /// ``pipeline(_:)`` for commands given as bytes.
    public func pipelineBytes(_ commands: [[[UInt8]]]) async throws -> [RedisValue] {
        try await thread.run { [self] in try execute(commands) }
    }

    /// Runs a Lua script with EVALSHA, loading it with SCRIPT LOAD first and again on NOSCRIPT
    /// (a restarted Redis has an empty script cache). Checks the key and argument counts
    /// against the script's descriptor.
    public func evalScript(_ script: LuaScript, keys: [String], args: [String]) async throws -> RedisValue {
        try script.check(keyCount: keys.count, argCount: args.count)
        return try await thread.run { [self] in
            for attempt in 0..<2 {
                let sha: String
                if let known = scriptHashes[script.name] {
                    sha = known
                } else {
                    let loaded = try execute([[Array("SCRIPT".utf8), Array("LOAD".utf8), Array(script.source.utf8)]], routeKey: keys.first.map { Array($0.utf8) })[0]
                    if case .error(let e) = loaded { throw RedisError.fromReply(e) }
                    guard let s = loaded.string else { throw RedisError.unexpectedReply("SCRIPT LOAD gave \(loaded)") }
                    scriptHashes[script.name] = s
                    sha = s
                }
                let argv = [Array("EVALSHA".utf8), Array(sha.utf8), Array(String(keys.count).utf8)]
                    + keys.map { Array($0.utf8) } + args.map { Array($0.utf8) }
                let reply = try execute([argv])[0]
                if case .error(let e) = reply {
                    if e.hasPrefix("NOSCRIPT"), attempt == 0 {
                        scriptHashes[script.name] = nil
                        continue
                    }
                    throw RedisError.fromReply(e)
                }
                return reply
            }
            throw RedisError.unexpectedReply("script \(script.name) could not be loaded")
        }
    }

    // MARK: - On the connection's thread

    func execute(_ commands: [[[UInt8]]], routeKey: [UInt8]? = nil) throws -> [RedisValue] {
        if case .cluster(let seeds) = endpoint.address { return try executeOnCluster(commands, routeKey: routeKey, seeds: seeds) }
        let ctx = try connectedContext()
        commandCounter.increment(by: Int64(commands.count))
        guard let replies = RedisConnection.roundTrip(ctx, commands) else { throw fail(ctx) }
        // A primary demoted by a failover answers writes with READONLY: find the new one.
        for case .error(let e) in replies where e.hasPrefix("READONLY") || e.hasPrefix("MASTERDOWN") {
            dropContext()
            noteFailure(e)
            throw RedisError.connection("\(endpoint): \(e)")
        }
        return replies
    }

    func fail(_ ctx: UnsafeMutablePointer<redisContext>) -> RedisError {
        let message = RedisConnection.errorText(ctx)
        dropContext()
        noteFailure(message)
        return .connection(message)
    }

    func dropContext() {
        if let context { redisFree(context) }
        context = nil
        for ctx in nodes.values { redisFree(ctx) }
        nodes = [:]
        slotOwners = []
    }

    lazy var errorCounter = Counter(label: "j4_redis_errors_total", dimensions: [("client", options.clientName)])
    lazy var connectCounter = Counter(label: "j4_redis_connects_total", dimensions: [("client", options.clientName)])
    /// Commands sent, pipelined ones each counted: the Redis calls a process makes.
    lazy var commandCounter = Counter(label: "j4_redis_commands_total", dimensions: [("client", options.clientName)])

    func noteFailure(_ message: String) {
        errorCounter.increment()
        failures += 1
        lastFailure = message
        let jittered = Backoff(min: options.minBackoff, max: options.maxBackoff).delay(afterFailures: failures, jitter: Double.random(in: 0.5...1.0))
        retryAt = .now + jittered
        logger.debug("redis connection failed", metadata: ["redis": "\(endpoint)", "client": "\(options.clientName)", "error": "\(message)", "retry_in": "\(jittered)"])
    }

    func connectedContext() throws -> UnsafeMutablePointer<redisContext> {
        if let context { return context }
        if let retryAt, ContinuousClock.now < retryAt { throw RedisError.backingOff(lastFailure) }
        do {
            context = try RedisConnection.open(endpoint, options)
        } catch {
            if case .connection(let m) = error { noteFailure(m) } else { noteFailure(error.description) }
            throw error
        }
        failures = 0
        retryAt = nil
        connects += 1
        connectCounter.increment()
        return context!
    }

}
