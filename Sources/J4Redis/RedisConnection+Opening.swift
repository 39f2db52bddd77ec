import CHiredis
import Foundation

/// Opening a connection, with Sentinel discovery: the part of ``RedisConnection`` that
/// finds the server and sets the connection up (AUTH, SELECT, CLIENT SETNAME).
extension RedisConnection {

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

    /// A new hiredis context to `endpoint`, with the read timeout, AUTH, SELECT and
    /// CLIENT SETNAME of `options` applied.
    static func open(_ endpoint: RedisEndpoint, _ options: RedisConnectionOptions) throws(RedisError) -> UnsafeMutablePointer<redisContext> {
        let tv = timeval(options.connectTimeout)
        let opened: UnsafeMutablePointer<redisContext>?
        switch endpoint.address {
        case .tcp(let host, let port): opened = redisConnectWithTimeout(host, Int32(port), tv)
        case .unix(let path): opened = redisConnectUnixWithTimeout(path, tv)
        case .sentinel(let nodes, let master):
            let found = try discoverPrimary(nodes, master, endpoint, options)
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
        return ctx
    }
}
