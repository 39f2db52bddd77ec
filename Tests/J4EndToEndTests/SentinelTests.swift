import Foundation
import Glibc
import J4Core
import J4Redis
import J4Runtime
import J4TestSupport
import Testing

/// Redis with Sentinel on loopback: a primary, a replica and three Sentinels, all real
/// redis-server processes.
struct SentinelGroup {
    let directory: URL
    var primary: ChildProcess
    let replica: ChildProcess
    let sentinels: [ChildProcess]
    let primaryPort: Int, replicaPort: Int
    let sentinelPorts: [Int]
    static let master = "j4main"
    static let dataPassword = "data-secret"
    static let sentinelPassword = "sentinel-secret"
    /// How J4 processes get both passwords.
    static let environment = ["J4_REDIS_PASSWORD": dataPassword, "J4_SENTINEL_PASSWORD": sentinelPassword]

    var url: String { "redis-sentinel://" + sentinelPorts.map { "127.0.0.1:\($0)" }.joined(separator: ",") + "/\(Self.master)" }

    static func start() async throws -> SentinelGroup {
        let dir = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("j4-sentinel-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let binary = try which("redis-server")
        let ports = try freeLoopbackPorts(5)
        func server(_ port: Int, _ extra: [String]) throws -> ChildProcess {
            let d = dir.appendingPathComponent("r\(port)")
            try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
            return try ChildProcess(binary, ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                             "--maxmemory-policy", "noeviction", "--dir", d.path] + extra)
        }
        // AUTH on both: the data nodes (and replication) and the Sentinels have passwords.
        let auth = ["--requirepass", dataPassword, "--masterauth", dataPassword]
        let primary = try server(ports[0], auth)
        let replica = try server(ports[1], auth + ["--replicaof", "127.0.0.1", String(ports[0])])
        var sentinels: [ChildProcess] = []
        for port in ports[2...] {
            let conf = dir.appendingPathComponent("sentinel-\(port).conf")
            try """
                port \(port)
                bind 127.0.0.1
                dir \(dir.path)
                sentinel monitor \(master) 127.0.0.1 \(ports[0]) 2
                sentinel down-after-milliseconds \(master) 1000
                sentinel failover-timeout \(master) 5000
                sentinel parallel-syncs \(master) 1
                sentinel auth-pass \(master) \(dataPassword)
                requirepass \(sentinelPassword)

                """.write(to: conf, atomically: true, encoding: .utf8)
            sentinels.append(try ChildProcess(binary, [conf.path, "--sentinel"]))
        }
        let group = SentinelGroup(directory: dir, primary: primary, replica: replica, sentinels: sentinels,
                                  primaryPort: ports[0], replicaPort: ports[1], sentinelPorts: Array(ports[2...]))
        // Ready when every Sentinel knows the primary and its replica.
        for port in group.sentinelPorts {
            let c = RedisConnection(endpoint: RedisEndpoint(address: .tcp(host: "127.0.0.1", port: port), password: sentinelPassword), options: RedisConnectionOptions(clientName: "j4-test"))
            try await waitFor("Sentinel \(port) to see the replica", timeout: .seconds(30), every: .milliseconds(200)) {
                let replicas = try? await c.send(["SENTINEL", "replicas", master])
                return (replicas?.array?.count ?? 0) >= 1
            }
            await c.close()
        }
        return group
    }

    func stop() {
        for c in [primary, replica] + sentinels { c.send(SIGKILL) }
        try? FileManager.default.removeItem(at: directory)
    }
}

// In the serialized end-to-end suite: a timed load test must not share two cores with another.
extension EndToEndTests {
    @Test("Redis Sentinel: the primary is killed mid-run: workers follow the new primary, the run goes on, no (tick, shard) is granted twice")
    func sentinelFailover() async throws {
        let group = try await SentinelGroup.start()
        defer { group.stop() }
        let sink = try await SinkProcess.start()
        defer { Task { await sink.stop() } }
        let url = group.url
        let env = SentinelGroup.environment
        let processes = try startSupervisorAndWorkers(url: url, workers: 3, environment: env)
        defer { for p in processes { p.send(SIGKILL) } }
        let file = try holdDefinition(rate: 100, seconds: 20, shards: 12, target: sink.url)
        let run = try await submitRun(file, ["--redis", url], environment: env)
        // Through the Sentinels, as a user would.
        var endpoint = try RedisEndpoint(url: url)
        endpoint.password = SentinelGroup.dataPassword
        endpoint.sentinelPassword = SentinelGroup.sentinelPassword
        let c = RedisConnection(endpoint: endpoint, options: RedisConnectionOptions(clientName: "j4-test"))
        var start: Int64 = 0
        try await waitFor("the run to start", timeout: .seconds(15)) {
            start = (try? await c.send(["HGET", RunKeys(run: run).ctl, "start_ms"]).int) ?? 0
            return start > 0
        }
        try await waitFor("load at the sink", timeout: .seconds(15)) { try await sink.stats().requests >= 300 }
        // Kill the primary without warning.
        group.primary.send(SIGKILL)
        _ = await group.primary.wait()
        let killedAt = Date()
        let (waitCode, waitOutput) = try await J4Binary.run(["wait", run, "--redis", url], environment: env)
        #expect(waitCode == 0, "\(waitOutput)")
        let stats = try await sink.stats()
        let attribution = try await sink.attribution()
        // Never two workers for one (tick, shard), nor one worker twice: a (tick, shard) at
        // 100/s over 12 shards is at most 9 iterations.
        let doubled = attribution.by_tick_shard.filter { $0.value.count > 1 || $0.value.values.reduce(0, +) > 9 }
        #expect(doubled.isEmpty, "\(doubled)")
        var events: [RedisValue] = []
        try await waitFor("the events through the new primary", timeout: .seconds(10)) {
            guard let e = try? await c.send(["XRANGE", RunKeys(run: run).events, "-", "+"]).array else { return false }
            events = e
            return true
        }
        let texts = events.map { "\($0)" }
        #expect(texts.contains { $0.contains("redis_changed") }, "\(texts.suffix(10))")
        let s = try await J4Binary.summary(run, url: url, environment: env)
        let target = s["target"] as? Int ?? -1, started = s["started"] as? Int ?? -1, dropped = s["dropped"] as? Int ?? -1
        let unclaimed = s["unclaimed"] as? Int ?? -1, lost = s["lost"] as? Int ?? -1
        let counts = Dictionary(uniqueKeysWithValues: stats.by_second.map { ($0.t, $0.n) })
        let perSecond = (0..<Int64(20)).map { counts[start / 1000 + $0] ?? 0 }
        print("figures sentinel failover at \(String(format: "%.1f", killedAt.timeIntervalSince1970 - Double(start) / 1000)) s: per second at the sink \(perSecond); target \(target) started \(started) dropped \(dropped) unclaimed \(unclaimed) lost \(lost); sink \(stats.requests)")
        #expect(s["state"] as? String == "finished")
        #expect(target == 2000)
        #expect(started + dropped + unclaimed + lost == target, "\(s)")
        // The load came back after the failover: the last seconds are at the target, and the
        // gap (detection, election, the barrier's two ticks) is a few seconds.
        #expect(perSecond.suffix(4).allSatisfy { $0 >= 95 }, "\(perSecond)")
        #expect(perSecond.filter { $0 == 0 }.count <= 8, "\(perSecond)")
        #expect(Int(stats.requests) >= started - 1, "\(stats.requests) at the sink, \(started) started")
        await c.close()
    }
}
