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
    /// The primary this connection reached through Sentinel (`host:port`), "" otherwise.
    private var primary = ""
    /// Redis Cluster: a connection per node, and each slot's node (empty: not known yet).
    private var nodes: [String: UnsafeMutablePointer<redisContext>] = [:]
    private var slotOwners: [RedisEndpoint.HostPort?] = []
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

    private func execute(_ commands: [[[UInt8]]], routeKey: [UInt8]? = nil) throws -> [RedisValue] {
        if case .cluster(let seeds) = endpoint.address { return try executeOnCluster(commands, routeKey: routeKey, seeds: seeds) }
        let ctx = try connectedContext()
        commandCounter.increment(by: Int64(commands.count))
        // The primary that will run these commands, for scripts that must know it (claim.lua's failover barrier).
        let token = RedisConnection.primaryToken
        let bound = commands.map { command in command.map { $0 == token ? Array(primary.utf8) : $0 } }
        guard let replies = RedisConnection.roundTrip(ctx, bound) else { throw fail(ctx) }
        // A primary demoted by a failover answers writes with READONLY: find the new one.
        for case .error(let e) in replies where e.hasPrefix("READONLY") || e.hasPrefix("MASTERDOWN") {
            dropContext()
            noteFailure(e)
            throw RedisError.connection("\(endpoint): \(e)")
        }
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
        for ctx in nodes.values { redisFree(ctx) }
        nodes = [:]
        slotOwners = []
    }

    // MARK: - Redis Cluster

    /// Runs `commands` on the nodes that own their keys' slots (keyless ones, and all of them
    /// with `routeKey`, where the batch's key goes), following MOVED and ASK.
    private func executeOnCluster(_ given: [[[UInt8]]], routeKey: [UInt8]?, seeds: [RedisEndpoint.HostPort]) throws -> [RedisValue] {
        if let retryAt, ContinuousClock.now < retryAt { throw RedisError.backingOff(lastFailure) }
        // No Sentinel here: the failover barrier's primary argument is empty (a cluster fails
        // over per shard of slots; see deploy/README.md).
        let commands = given.map { command in command.map { $0 == RedisConnection.primaryToken ? [] : $0 } }
        if slotOwners.isEmpty { try refreshSlots(seeds) }
        commandCounter.increment(by: Int64(commands.count))
        func owner(_ key: [UInt8]) -> RedisEndpoint.HostPort? { slotOwners[ClusterSlots.slot(of: key)] }
        let batchKey = routeKey ?? commands.lazy.compactMap(ClusterSlots.key(of:)).first
        guard let batchNode = batchKey.flatMap(owner) ?? slotOwners.lazy.compactMap({ $0 }).first else {
            slotOwners = []
            throw RedisError.connection("\(endpoint): the cluster's slot map has no node for this key")
        }
        let targets = commands.map { c in (routeKey ?? ClusterSlots.key(of: c)).flatMap(owner) ?? batchNode }
        var replies: [RedisValue]
        if targets.allSatisfy({ $0 == targets[0] }) {
            replies = try roundTrip(on: targets[0], commands)
        } else {
            replies = []
            for (command, node) in zip(commands, targets) { replies.append(try roundTrip(on: node, [command])[0]) }
        }
        var moved = false
        for i in replies.indices {
            var hops = 0
            while case .error(let e) = replies[i], let r = ClusterSlots.redirect(e), hops < 5 {
                hops += 1
                if r.ask {
                    replies[i] = try roundTrip(on: r.node, [[Array("ASKING".utf8)], commands[i]])[1]
                } else {
                    // The slot moved (resharding or a failover): read the whole map again next time.
                    replies[i] = try roundTrip(on: r.node, [commands[i]])[0]
                    moved = true
                }
            }
            if case .error(let e) = replies[i], e.hasPrefix("CLUSTERDOWN") || e.hasPrefix("TRYAGAIN") {
                slotOwners = []
                noteFailure(e)
                throw RedisError.connection("\(endpoint): \(e)")
            }
        }
        if moved { slotOwners = [] }
        return replies
    }

    /// Sends `commands` to `node` (connecting first if needed).
    private func roundTrip(on node: RedisEndpoint.HostPort, _ commands: [[[UInt8]]]) throws -> [RedisValue] {
        let ctx = try nodeContext(node)
        guard let replies = RedisConnection.roundTrip(ctx, commands) else {
            let message = RedisConnection.errorText(ctx)
            redisFree(ctx)
            nodes[node.description] = nil
            slotOwners = []
            noteFailure(message)
            throw RedisError.connection("\(node): \(message)")
        }
        return replies
    }

    private func nodeContext(_ node: RedisEndpoint.HostPort) throws -> UnsafeMutablePointer<redisContext> {
        if let ctx = nodes[node.description] { return ctx }
        do {
            let one = RedisEndpoint(address: .tcp(host: node.host, port: node.port), user: endpoint.user, password: endpoint.password)
            let ctx = try RedisConnection.openReporting(one, options).0
            nodes[node.description] = ctx
            failures = 0
            retryAt = nil
            connects += 1
            connectCounter.increment()
            return ctx
        } catch {
            if case .connection(let m) = error { noteFailure(m) } else { noteFailure(error.description) }
            throw error
        }
    }

    /// Reads the slot map with CLUSTER SLOTS from the first node that answers.
    private func refreshSlots(_ seeds: [RedisEndpoint.HostPort]) throws {
        var known = seeds
        for name in nodes.keys.sorted() where !known.contains(where: { $0.description == name }) {
            if let colon = name.lastIndex(of: ":"), let port = Int(name[name.index(after: colon)...]) {
                known.append(RedisEndpoint.HostPort(host: String(name[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]")), port: port))
            }
        }
        var errors: [String] = []
        for node in known {
            let reply: RedisValue
            do { reply = try roundTrip(on: node, [["CLUSTER", "SLOTS"].map { Array($0.utf8) }])[0] } catch {
                errors.append("\(error)")
                continue
            }
            guard case .array(let ranges) = reply else {
                errors.append("\(node): CLUSTER SLOTS gave \(reply)")
                continue
            }
            var owners = [RedisEndpoint.HostPort?](repeating: nil, count: ClusterSlots.count)
            for range in ranges {
                guard case .array(let r) = range, r.count >= 3, let lo = r[0].int, let hi = r[1].int, case .array(let master) = r[2], master.count >= 2,
                      let port = master[1].int, lo >= 0, hi < ClusterSlots.count, lo <= hi else { continue }
                let host = master[0].string.flatMap { $0.isEmpty ? nil : $0 } ?? node.host
                for slot in Int(lo)...Int(hi) { owners[slot] = RedisEndpoint.HostPort(host: host, port: Int(port)) }
            }
            guard owners.contains(where: { $0 != nil }) else {
                errors.append("\(node): no slots assigned")
                continue
            }
            slotOwners = owners
            return
        }
        throw RedisError.connection("no cluster node gave its slot map: \(errors.joined(separator: "; "))")
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
            (context, primary) = try RedisConnection.openReporting(endpoint, options)
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

    /// An argument replaced, when the command is sent, by the `host:port` of the primary the
    /// connection reached through Sentinel ("" for other endpoints), so that a script learns
    /// which primary it runs on from the very connection that runs it.
    public static let primaryArgument = "\u{0}j4-primary\u{0}"
    /// ``primaryArgument`` as bytes.
    static let primaryToken: [UInt8] = Array(primaryArgument.utf8)

    /// A new hiredis context to `endpoint`, with the read timeout, AUTH, SELECT and
    /// CLIENT SETNAME of `options` applied.
    static func open(_ endpoint: RedisEndpoint, _ options: RedisConnectionOptions) throws(RedisError) -> UnsafeMutablePointer<redisContext> {
        try openReporting(endpoint, options).0
    }

    /// The primary of `master` as the first Sentinel that answers knows it.
    static func discoverPrimary(_ nodes: [RedisEndpoint.HostPort], _ master: String, _ endpoint: RedisEndpoint, _ options: RedisConnectionOptions) throws(RedisError) -> RedisEndpoint.HostPort {
        var errors: [String] = []
        for node in nodes {
            guard let ctx = redisConnectWithTimeout(node.host, Int32(node.port), timeval(options.connectTimeout)) else { continue }
            defer { redisFree(ctx) }
            if ctx.pointee.err != 0 {
                errors.append("\(node): \(errorText(ctx))")
                continue
            }
            redisSetTimeout(ctx, timeval(options.readTimeout))
            var commands: [[[UInt8]]] = []
            if let password = endpoint.sentinelPassword {
                commands.append((["AUTH"] + (endpoint.sentinelUser.map { [$0] } ?? []) + [password]).map { Array($0.utf8) })
            }
            commands.append(["SENTINEL", "get-master-addr-by-name", master].map { Array($0.utf8) })
            guard let replies = roundTrip(ctx, commands) else {
                errors.append("\(node): \(errorText(ctx))")
                continue
            }
            if case .error(let e)? = replies.first(where: { if case .error = $0 { return true } else { return false } }) {
                errors.append("\(node): \(e)")
                continue
            }
            if case .array(let a)? = replies.last, a.count == 2, let host = a[0].string, let port = a[1].string.flatMap({ Int($0) }) {
                return RedisEndpoint.HostPort(host: host, port: port)
            }
            errors.append("\(node): no primary named \(master)")
        }
        throw .connection("no Sentinel gave the primary of \(master): \(errors.joined(separator: "; "))")
    }

    /// ``open(_:_:)``, and the primary's `host:port` when reached through Sentinel ("" otherwise).
    static func openReporting(_ endpoint: RedisEndpoint, _ options: RedisConnectionOptions) throws(RedisError) -> (UnsafeMutablePointer<redisContext>, String) {
        let tv = timeval(options.connectTimeout)
        let opened: UnsafeMutablePointer<redisContext>?
        var primary = ""
        switch endpoint.address {
        case .tcp(let host, let port): opened = redisConnectWithTimeout(host, Int32(port), tv)
        case .unix(let path): opened = redisConnectUnixWithTimeout(path, tv)
        case .sentinel(let nodes, let master):
            let found = try discoverPrimary(nodes, master, endpoint, options)
            primary = found.description
            opened = redisConnectWithTimeout(found.host, Int32(found.port), tv)
        case .cluster(let nodes):
            // One node (a subscriber: Redis Cluster broadcasts PUBLISH to every node).
            var reached: UnsafeMutablePointer<redisContext>?
            for node in nodes {
                guard let ctx = redisConnectWithTimeout(node.host, Int32(node.port), tv) else { continue }
                if ctx.pointee.err == 0 {
                    reached = ctx
                    break
                }
                redisFree(ctx)
            }
            opened = reached
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
        return (ctx, primary)
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
