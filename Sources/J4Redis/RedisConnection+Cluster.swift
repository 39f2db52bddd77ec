import CHiredis
import Foundation

/// Redis Cluster routing: each command goes to the node that owns its key's slot, following
/// MOVED and ASK; the slot map comes from CLUSTER SLOTS (parsed by ``ClusterSlots``).
extension RedisConnection {
    /// Runs `commands` on the nodes that own their keys' slots (keyless ones, and all of them
    /// with `routeKey`, where the batch's key goes), following MOVED and ASK.
    func executeOnCluster(_ commands: [[[UInt8]]], routeKey: [UInt8]?, seeds: [RedisEndpoint.HostPort]) throws -> [RedisValue] {
        if let retryAt, ContinuousClock.now < retryAt { throw RedisError.backingOff(lastFailure) }
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
    func roundTrip(on node: RedisEndpoint.HostPort, _ commands: [[[UInt8]]]) throws -> [RedisValue] {
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

    func nodeContext(_ node: RedisEndpoint.HostPort) throws -> UnsafeMutablePointer<redisContext> {
        if let ctx = nodes[node.description] { return ctx }
        do {
            let one = RedisEndpoint(address: .tcp(host: node.host, port: node.port), user: endpoint.user, password: endpoint.password)
            let ctx = try RedisConnection.open(one, options)
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
    func refreshSlots(_ seeds: [RedisEndpoint.HostPort]) throws {
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
            switch ClusterSlots.owners(fromSlotsReply: reply, answeredBy: node) {
            case .success(let owners):
                slotOwners = owners
                return
            case .failure(let problem):
                errors.append("\(node): \(problem.text)")
            }
        }
        throw RedisError.connection("no cluster node gave its slot map: \(errors.joined(separator: "; "))")
    }
}
