import Foundation
import J4Core
import J4Redis
import J4Runtime
import J4TestSupport
import Testing

// In the serialized end-to-end suite: a timed load test must not share two cores with another.
extension EndToEndTests {
    @Test("Redis Cluster, three nodes: runs placed on every node complete with exact counts at the sink")
    func redisClusterRuns() async throws {
        let dir = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("j4-cluster-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let redisServer = try which("redis-server")
        let ports = try freeLoopbackPorts(3, busOffset: 10000)
        var servers: [ChildProcess] = []
        defer { for s in servers { s.send(SIGKILL) } }
        for port in ports {
            servers.append(try ChildProcess(redisServer, [
                "--port", String(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes", "--cluster-config-file", "nodes-\(port).conf",
                "--dir", dir.path, "--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction",
            ]))
        }
        for port in ports {
            var last = ""
            try await waitFor("node \(port) up (redis-cli said: \(last))", timeout: .seconds(15), every: .milliseconds(100)) {
                last = try await runTool(["redis-cli", "-p", String(port), "ping"]).1
                return last.contains("PONG")
            }
        }
        let (created, output) = try await runTool(["redis-cli", "--cluster", "create"] + ports.map { "127.0.0.1:\($0)" } + ["--cluster-replicas", "0", "--cluster-yes"])
        #expect(created == 0, "\(output)")
        for port in ports {
            try await waitFor("node \(port) to see the cluster ok", timeout: .seconds(20), every: .milliseconds(200)) {
                try await runTool(["redis-cli", "-p", String(port), "cluster", "info"]).1.contains("cluster_state:ok")
            }
        }
        let url = "redis-cluster://" + ports.map { "127.0.0.1:\($0)" }.joined(separator: ",")

        // Run ids whose keys land on each node in turn (a run's keys share its hash tag).
        let c = RedisConnection(endpoint: try RedisEndpoint(url: url), options: RedisConnectionOptions(clientName: "j4-test"))
        let slots = try await c.send(["CLUSTER", "SLOTS"]).array ?? []
        func node(ofSlot slot: Int) -> Int? {
            for case .array(let r) in slots where r.count >= 3 {
                if let lo = r[0].int, let hi = r[1].int, (lo...hi).contains(Int64(slot)), case .array(let m) = r[2], let p = m[1].int { return Int(p) }
            }
            return nil
        }
        // J4's slot function agrees with the cluster's.
        for key in ["foo", "{user1000}.following", "j4:{r:20261126-033308-0001}:ctl", "j4:{p:accounts}:items", "a{}b", "{}", "x{y"] {
            #expect(try await c.send(["CLUSTER", "KEYSLOT", key]).int == Int64(ClusterSlots.slot(of: key)), "\(key)")
        }
        var ids: [Int: String] = [:]
        let stamp = RunID.make(unixSeconds: Int64(Date().timeIntervalSince1970), random: 0).dropLast(4)
        for n in 0..<4096 where ids.count < ports.count {
            let id = stamp + String(format: "%04x", n)
            if let p = node(ofSlot: ClusterSlots.slot(of: RunKeys(run: String(id)).ctl)), ids[p] == nil { ids[p] = String(id) }
        }
        #expect(Set(ids.keys) == Set(ports), "\(ids)")

        let sink = try await SinkProcess.start()
        defer { Task { await sink.stop() } }
        let processes = try startSupervisorAndWorkers(url: url, workers: 2)
        defer { for p in processes { p.send(SIGKILL) } }
        let file = try holdDefinition(rate: 50, seconds: 6, shards: 8, target: sink.url)
        for id in ids.values.sorted() {
            let (code, out) = try await J4Binary.run(["submit", file, "--id", id, "--redis", url])
            #expect(code == 0 && out.contains(id), "\(out)")
        }
        for id in ids.values.sorted() {
            let (code, out) = try await J4Binary.run(["wait", id, "--redis", url, "--timeout", "60s"])
            #expect(code == 0, "\(out)")
        }
        let stats = try await sink.stats()
        var figures: [String] = []
        for (port, id) in ids.sorted(by: { $0.key < $1.key }) {
            let s = try await J4Binary.summary(id, url: url)
            let started = s["started"] as? Int ?? -1
            // Each run's keys are on its node, and nowhere else.
            let exists = try await runTool(["redis-cli", "-p", String(port), "exists", RunKeys(run: id).ctl]).1
            #expect(exists.contains("1"), "run \(id) on \(port)")
            figures.append("\(id)@\(port): started \(started), at the sink \(stats.by_run[id] ?? 0)")
            #expect(s["state"] as? String == "finished" && s["target"] as? Int == 300 && started == 300, "\(s)")
            #expect(stats.by_run[id] == 300)
        }
        print("figures redis cluster: " + figures.joined(separator: "; "))
        await c.close()
    }
}
