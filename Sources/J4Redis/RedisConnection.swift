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
    private let thread: DedicatedThread
    private let logger: Logger

    // Touched only on `thread`.
    private var context: UnsafeMutablePointer<redisContext>?
    private var failures = 0
    private var retryAt: ContinuousClock.Instant?
    private var lastFailure = ""
    private var scriptHashes: [String: String] = [:]
    private var connects = 0

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
                    let loaded = try execute([[Array("SCRIPT".utf8), Array("LOAD".utf8), Array(script.source.utf8)]])[0]
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

    private func execute(_ commands: [[[UInt8]]]) throws -> [RedisValue] {
        let ctx = try connectedContext()
        commandCounter.increment(by: Int64(commands.count))
        guard let replies = RedisConnection.roundTrip(ctx, commands) else { throw fail(ctx) }
        return replies
    }

    /// Sends `commands` on `ctx` and reads their replies; nil on a connection error.
    static func roundTrip(_ ctx: UnsafeMutablePointer<redisContext>, _ commands: [[[UInt8]]]) -> [RedisValue]? {
        for command in commands {
            let rc = withArgv(command) { argc, argv, lens in redisAppendCommandArgv(ctx, argc, argv, lens) }
            guard rc == REDIS_OK else { return nil }
        }
        var replies: [RedisValue] = []
        replies.reserveCapacity(commands.count)
        for _ in commands {
            var raw: UnsafeMutableRawPointer?
            guard redisGetReply(ctx, &raw) == REDIS_OK, let raw else { return nil }
            let reply = raw.assumingMemoryBound(to: redisReply.self)
            replies.append(RedisConnection.copy(reply))
            freeReplyObject(raw)
        }
        return replies
    }

    private func fail(_ ctx: UnsafeMutablePointer<redisContext>) -> RedisError {
        let message = RedisConnection.errorText(ctx)
        dropContext()
        noteFailure(message)
        return .connection(message)
    }

    private func dropContext() {
        if let context { redisFree(context) }
        context = nil
    }

    private lazy var errorCounter = Counter(label: "j4_redis_errors_total", dimensions: [("client", options.clientName)])
    private lazy var connectCounter = Counter(label: "j4_redis_connects_total", dimensions: [("client", options.clientName)])
    /// Commands sent, pipelined ones each counted: the Redis calls a process makes.
    private lazy var commandCounter = Counter(label: "j4_redis_commands_total", dimensions: [("client", options.clientName)])

    private func noteFailure(_ message: String) {
        errorCounter.increment()
        failures += 1
        lastFailure = message
        let base = options.minBackoff * Int(1 << min(failures - 1, 16))
        let capped = min(base, options.maxBackoff)
        let jittered = capped * Double.random(in: 0.5...1.0)
        retryAt = .now + jittered
        logger.debug("redis connection failed", metadata: ["redis": "\(endpoint)", "client": "\(options.clientName)", "error": "\(message)", "retry_in": "\(jittered)"])
    }

    private func connectedContext() throws -> UnsafeMutablePointer<redisContext> {
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

    /// A new hiredis context to `endpoint`, with the read timeout, AUTH, SELECT and
    /// CLIENT SETNAME of `options` applied.
    static func open(_ endpoint: RedisEndpoint, _ options: RedisConnectionOptions) throws(RedisError) -> UnsafeMutablePointer<redisContext> {
        let tv = timeval(options.connectTimeout)
        let opened: UnsafeMutablePointer<redisContext>?
        switch endpoint.address {
        case .tcp(let host, let port): opened = redisConnectWithTimeout(host, Int32(port), tv)
        case .unix(let path): opened = redisConnectUnixWithTimeout(path, tv)
        }
        guard let ctx = opened else { throw .connection("cannot allocate a hiredis context") }
        if ctx.pointee.err != 0 {
            let message = errorText(ctx)
            redisFree(ctx)
            throw .connection("\(endpoint): \(message)")
        }
        redisSetTimeout(ctx, timeval(options.readTimeout))
        var setup: [[[UInt8]]] = []
        if let password = endpoint.password {
            setup.append((["AUTH"] + (endpoint.user.map { [$0] } ?? []) + [password]).map { Array($0.utf8) })
        }
        if endpoint.database != 0 { setup.append(["SELECT", String(endpoint.database)].map { Array($0.utf8) }) }
        setup.append(["CLIENT", "SETNAME", options.clientName].map { Array($0.utf8) })
        guard let replies = roundTrip(ctx, setup) else {
            let message = errorText(ctx)
            redisFree(ctx)
            throw .connection("\(endpoint): \(message)")
        }
        for case .error(let e) in replies {
            redisFree(ctx)
            throw RedisError.fromReply(e)  // AUTH refused (WRONGPASS…) or SELECT out of range
        }
        return ctx
    }

    // MARK: - hiredis helpers

    static func timeval(_ d: Duration) -> Glibc.timeval {
        let (s, atto) = d.components
        return Glibc.timeval(tv_sec: Int(s), tv_usec: Int(atto / 1_000_000_000_000))
    }

    static func errorText(_ ctx: UnsafeMutablePointer<redisContext>) -> String {
        withUnsafeBytes(of: ctx.pointee.errstr) { raw in
            let bytes = raw.prefix { $0 != 0 }
            let text = String(decoding: bytes, as: UTF8.self)
            return text.isEmpty ? "connection lost (error \(ctx.pointee.err))" : text
        }
    }

    /// Copies a reply into Swift values; the caller frees the reply once.
    static func copy(_ r: UnsafeMutablePointer<redisReply>) -> RedisValue {
        let reply = r.pointee
        switch reply.type {
        case REDIS_REPLY_STRING:
            return .bulk(reply.str.map { Array(UnsafeRawBufferPointer(start: $0, count: Int(reply.len))) } ?? [])
        case REDIS_REPLY_STATUS:
            return .status(reply.str.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: Int(reply.len)), as: UTF8.self) } ?? "")
        case REDIS_REPLY_ERROR:
            return .error(reply.str.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: Int(reply.len)), as: UTF8.self) } ?? "ERR")
        case REDIS_REPLY_INTEGER:
            return .integer(Int64(reply.integer))
        case REDIS_REPLY_ARRAY:
            var items: [RedisValue] = []
            items.reserveCapacity(Int(reply.elements))
            for i in 0..<Int(reply.elements) {
                if let e = reply.element[i] { items.append(copy(e)) }
            }
            return .array(items)
        default:
            return .null
        }
    }
}

/// Calls `body` with a C argv (pointers and lengths) over `args`, valid only inside the call.
func withArgv<R>(_ args: [[UInt8]], _ body: (Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafePointer<Int>) -> R) -> R {
    let total = args.reduce(0) { $0 + $1.count }
    return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: max(total, 1)) { storage in
        var offset = 0
        var pointers: [UnsafePointer<CChar>?] = []
        var lengths: [Int] = []
        pointers.reserveCapacity(args.count)
        lengths.reserveCapacity(args.count)
        for a in args {
            let start = storage.baseAddress! + offset
            a.withUnsafeBufferPointer { src in
                if let base = src.baseAddress { (start).update(from: base, count: a.count) }
            }
            pointers.append(UnsafeRawPointer(start).assumingMemoryBound(to: CChar.self))
            lengths.append(a.count)
            offset += a.count
        }
        return pointers.withUnsafeMutableBufferPointer { p in
            lengths.withUnsafeBufferPointer { l in body(Int32(args.count), p.baseAddress!, l.baseAddress!) }
        }
    }
}
