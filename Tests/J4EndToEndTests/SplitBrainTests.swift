import Foundation
import Glibc
import J4Core
import J4Redis
import J4Runtime
import J4TestSupport
import Testing

/// Three network namespaces on this machine: A and B, each joined to a router R by a veth
/// pair. R forwards between A and B until `cut()`, so A and B reach each other only
/// through it; both reach R's own addresses (where the sink listens) all along.
struct Partition {
    /// `ip`, or `sudo` when not root (with `-n ip` before the arguments): namespaces need root.
    let ip: String
    let ipPrefix: [String]
    let a: String, b: String, r: String
    /// The second octet: 10.net.1.0/24 is A's link to R, 10.net.2.0/24 is B's.
    let net: Int
    var addressA: String { "10.\(net).1.2" }
    var addressB: String { "10.\(net).2.2" }
    /// R's address on A's link: the sink's, reached by A directly and by B through R's
    /// own routing (local delivery, no forwarding).
    var router: String { "10.\(net).1.1" }

    static func create() async throws -> Partition {
        let tag = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        let root = getuid() == 0
        let p = Partition(ip: root ? try which("ip") : try which("sudo"), ipPrefix: root ? [] : ["-n", try which("ip")], a: "j4a\(tag)", b: "j4b\(tag)", r: "j4r\(tag)", net: Int.random(in: 100...199))
        let ra = "j4ra\(tag)", aa = "j4aa\(tag)", rb = "j4rb\(tag)", bb = "j4bb\(tag)"
        let steps: [[String]] = [
            ["netns", "add", p.a], ["netns", "add", p.b], ["netns", "add", p.r],
            ["link", "add", ra, "type", "veth", "peer", "name", aa], ["link", "set", ra, "netns", p.r], ["link", "set", aa, "netns", p.a],
            ["link", "add", rb, "type", "veth", "peer", "name", bb], ["link", "set", rb, "netns", p.r], ["link", "set", bb, "netns", p.b],
            ["-n", p.r, "addr", "add", "10.\(p.net).1.1/24", "dev", ra], ["-n", p.r, "addr", "add", "10.\(p.net).2.1/24", "dev", rb],
            ["-n", p.a, "addr", "add", "\(p.addressA)/24", "dev", aa], ["-n", p.b, "addr", "add", "\(p.addressB)/24", "dev", bb],
            ["-n", p.r, "link", "set", ra, "up"], ["-n", p.r, "link", "set", rb, "up"], ["-n", p.r, "link", "set", "lo", "up"],
            ["-n", p.a, "link", "set", aa, "up"], ["-n", p.a, "link", "set", "lo", "up"],
            ["-n", p.b, "link", "set", bb, "up"], ["-n", p.b, "link", "set", "lo", "up"],
            ["-n", p.a, "route", "add", "default", "via", "10.\(p.net).1.1"],
            ["-n", p.b, "route", "add", "default", "via", "10.\(p.net).2.1"],
        ]
        for step in steps {
            let (code, out) = try await J4Binary.run(p.ipPrefix + step, binary: p.ip)
            guard code == 0 else {
                await p.destroy()
                throw TestSupportError(description: "ip \(step.joined(separator: " ")) exited \(code) (network namespaces need root): \(out)")
            }
        }
        try await p.forwarding(true)
        return p
    }

    /// R's IPv4 forwarding (per network namespace): off cuts every link between A and B.
    func forwarding(_ on: Bool) async throws {
        let (code, out) = try await J4Binary.run(ipPrefix + ["netns", "exec", r, "sh", "-c", "echo \(on ? 1 : 0) > /proc/sys/net/ipv4/ip_forward"], binary: ip)
        guard code == 0 else { throw TestSupportError(description: "could not set forwarding in \(r): \(out)") }
    }

    func cut() async throws { try await forwarding(false) }
    func heal() async throws { try await forwarding(true) }

    /// Starts `binary ARGS…` inside namespace `ns`.
    func start(in ns: String, _ binary: String, _ arguments: [String]) throws -> ChildProcess {
        try J4Binary.start(ipPrefix + ["netns", "exec", ns, binary] + arguments, binary: ip)
    }

    /// Runs `binary ARGS…` inside namespace `ns` to the end.
    func run(in ns: String, _ binary: String, _ arguments: [String]) async throws -> (code: Int32, output: String) {
        try await J4Binary.run(ipPrefix + ["netns", "exec", ns, binary] + arguments, binary: ip)
    }

    func destroy() async {
        for ns in [a, b, r] { _ = try? await J4Binary.run(ipPrefix + ["netns", "del", ns], binary: ip) }
    }
}

/// A `--name value` option's value in a text (the ha overlay's files), as a number.
func overlaySetting(_ file: String, _ pattern: String) throws -> Int {
    let text = try String(contentsOfFile: repositoryFile(file), encoding: .utf8)
    guard let r = text.range(of: pattern + #" *[0-9]+"#, options: .regularExpression),
          let value = Int(text[r].split(separator: " ").last ?? "") else {
        throw TestSupportError(description: "\(file) sets no \(pattern)")
    }
    return value
}

extension EndToEndTests {
    @Test("Sentinel split brain: the primary and one worker are cut off from the rest, a replica is promoted; with the ha overlay's write quorum and the barrier no iteration reaches the server twice")
    func sentinelSplitBrain() async throws {
        // The ha overlay's settings, read from its files: the primary needs a replica within
        // the lag to take writes, and the Sentinels wait down-after before they promote one.
        let minReplicas = try overlaySetting("deploy/k8s/overlays/ha/start-redis.sh", "--min-replicas-to-write")
        let maxLag = try overlaySetting("deploy/k8s/overlays/ha/start-redis.sh", "--min-replicas-max-lag")
        let downAfter = try overlaySetting("deploy/k8s/overlays/ha/sentinel.yaml", "down-after-milliseconds j4main")
        let net = try await Partition.create()
        var processes: [ChildProcess] = []
        let dir = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("j4-split-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        do {
            try await splitBrain(net, dir, &processes, minReplicas: minReplicas, maxLag: maxLag, downAfter: downAfter)
        } catch {
            for p in processes { p.send(SIGKILL) }
            await net.destroy()
            throw error
        }
        for p in processes { p.send(SIGKILL) }
        await net.destroy()
    }

    func splitBrain(_ net: Partition, _ dir: URL, _ processes: inout [ChildProcess], minReplicas: Int, maxLag: Int, downAfter: Int) async throws {
        let redis = try which("redis-server"), cli = try which("redis-cli")
        let quorum = ["--min-replicas-to-write", String(minReplicas), "--min-replicas-max-lag", String(maxLag)]
        func data(_ ns: String, _ host: String, _ port: Int, _ extra: [String]) throws -> ChildProcess {
            let d = dir.appendingPathComponent("r\(port)")
            try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
            return try net.start(in: ns, redis, ["--port", String(port), "--bind", host, "--save", "", "--appendonly", "no",
                                                 "--maxmemory-policy", "noeviction", "--dir", d.path, "--replica-announce-ip", host,
                                                 "--protected-mode", "no"] + quorum + extra)
        }
        // A: the primary (and, below, a supervisor and a worker). B: two replicas, three
        // Sentinels, a supervisor and two workers. R: the sink.
        processes.append(try data(net.a, net.addressA, 6379, []))
        for port in [6380, 6381] { processes.append(try data(net.b, net.addressB, port, ["--replicaof", net.addressA, "6379"])) }
        let sentinelPorts = [26379, 26380, 26381]
        for port in sentinelPorts {
            let conf = dir.appendingPathComponent("sentinel-\(port).conf")
            try """
                port \(port)
                bind \(net.addressB)
                protected-mode no
                dir \(dir.path)
                sentinel monitor j4main \(net.addressA) 6379 2
                sentinel down-after-milliseconds j4main \(downAfter)
                sentinel failover-timeout j4main 10000
                sentinel parallel-syncs j4main 1

                """.write(to: conf, atomically: true, encoding: .utf8)
            processes.append(try net.start(in: net.b, redis, [conf.path, "--sentinel"]))
        }
        func primaryAddress() async -> [String] {
            let (_, out) = (try? await net.run(in: net.b, cli, ["-h", net.addressB, "-p", "26379", "SENTINEL", "get-master-addr-by-name", "j4main"])) ?? (1, "")
            return out.split(separator: "\n").map(String.init)
        }
        func primary() async -> String { await primaryAddress().first ?? "" }
        func primaryPort() async -> String { await primaryAddress().dropFirst().first ?? "" }
        try await waitFor("the Sentinels to see both replicas", timeout: .seconds(30), every: .milliseconds(200)) {
            let (_, out) = try await net.run(in: net.b, cli, ["-h", net.addressB, "-p", "26379", "SENTINEL", "replicas", "j4main"])
            return out.split(separator: "\n").filter { $0 == "ip" }.count >= 2
        }
        // The primary takes writes once both replicas have acknowledged within the lag.
        try await waitFor("the primary to hear from both replicas", timeout: .seconds(30), every: .milliseconds(100)) {
            let (_, out) = try await net.run(in: net.a, cli, ["-h", net.addressA, "-p", "6379", "INFO", "replication"])
            return out.contains("min_slaves_good_slaves:2")
        }
        let url = "redis-sentinel://" + sentinelPorts.map { "\(net.addressB):\($0)" }.joined(separator: ",") + "/j4main"
        let accessLog = dir.appendingPathComponent("access.log").path
        let (sink, sinkPort) = try await J4Binary.startListening(net.ipPrefix + ["netns", "exec", net.r, J4Binary.path, "sink", "--host", "0.0.0.0", "--port", "0", "--access-log", accessLog], binary: net.ip)
        processes.append(sink)
        // A supervisor on each side: the one cut off with the old primary keeps publishing
        // the plan there for as long as that primary takes writes.
        processes.append(try net.start(in: net.a, J4Binary.path, ["supervisor", "--redis", url, "--id", "sa"]))
        processes.append(try net.start(in: net.b, J4Binary.path, ["supervisor", "--redis", url, "--id", "sb"]))
        processes.append(try net.start(in: net.a, J4Binary.path, ["worker", "--redis", url, "--id", "wa"]))
        for id in ["wb1", "wb2"] { processes.append(try net.start(in: net.b, J4Binary.path, ["worker", "--redis", url, "--id", id])) }
        let file = try holdDefinition(rate: 100, seconds: 40, shards: 12, target: "http://\(net.router):\(sinkPort)/")
        let (submitCode, submitted) = try await net.run(in: net.b, J4Binary.path, ["submit", file, "--redis", url])
        let run = submitted.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(submitCode == 0, "\(submitted)")
        // Every worker sends before the cut: A's worker holds shards on A's primary.
        try await waitFor("all three workers at the sink", timeout: .seconds(20)) {
            Set(((try? AccessLine.read(accessLog)) ?? []).map(\.worker)).isSuperset(of: ["wa", "wb1", "wb2"])
        }
        try await net.cut()
        let cutAt = Date().timeIntervalSince1970 * 1000
        try await waitFor("the Sentinels to promote a replica", timeout: .seconds(40), every: .milliseconds(200)) {
            let p = await primary()
            return !p.isEmpty && p != net.addressA
        }
        let promotedAt = Date().timeIntervalSince1970 * 1000
        // B's side goes on without A; then the partition heals and A's primary becomes a replica.
        try await waitFor("B's workers to carry the load for 5 s after the promotion", timeout: .seconds(30)) {
            ((try? AccessLine.read(accessLog)) ?? []).contains { $0.arrivedMs > promotedAt + 5000 && $0.worker != "wa" }
        }
        try await net.heal()
        let healedAt = Date().timeIntervalSince1970 * 1000
        let (waitCode, waitOutput) = try await net.run(in: net.b, J4Binary.path, ["wait", run, "--redis", url, "--timeout", "90s"])
        #expect(waitCode == 0, "\(waitOutput)")
        let (statusCode, statusText) = try await net.run(in: net.b, J4Binary.path, ["status", run, "--json", "--redis", url])
        #expect(statusCode == 0, "\(statusText)")
        let summary = (try? JSONSerialization.jsonObject(with: Data(statusText.utf8))) as? [String: Any] ?? [:]
        let promoted = await primary(), promotedPort = await primaryPort()
        let (_, events) = try await net.run(in: net.b, cli, ["-h", promoted, "-p", promotedPort, "XRANGE", RunKeys(run: run).events, "-", "+"])
        sink.send(SIGTERM)
        _ = await sink.wait()

        let lines = ((try? AccessLine.read(accessLog)) ?? [])
        let iterations = Dictionary(grouping: lines, by: \.iteration)
        let twice = iterations.filter { $0.value.count > 1 }
        let byTickShard = Dictionary(grouping: lines, by: { "\($0.tick)/\($0.shard)" }).mapValues { Set($0.map(\.worker)) }
        let shared = byTickShard.filter { $0.value.count > 1 }
        let fromA = lines.filter { $0.worker == "wa" }
        let aCutOff = fromA.filter { $0.arrivedMs > cutAt && $0.arrivedMs < healedAt }
        let start = lines.map(\.arrivedMs).min() ?? 0
        let perSecond = (0..<44).map { s in lines.filter { Int(($0.arrivedMs - start) / 1000) == s }.count }
        let target = summary["target"] as? Int ?? -1, started = summary["started"] as? Int ?? -1
        print("figures split brain (cut at \(Int((cutAt - start) / 1000)) s, promoted \(String(format: "%.1f", (promotedAt - cutAt) / 1000)) s later, healed \(String(format: "%.1f", (healedAt - cutAt) / 1000)) s after the cut): per second at the sink \(perSecond); A's worker sent \(aCutOff.count) while cut off, the last \(String(format: "%.1f", ((aCutOff.map(\.arrivedMs).max() ?? cutAt) - cutAt) / 1000)) s after the cut; at the sink \(lines.count), \(twice.count) iterations twice, \(shared.count) (tick, shard) from two workers; target \(target) started \(started) dropped \(summary["dropped"] ?? "?") unclaimed \(summary["unclaimed"] ?? "?") lost \(summary["lost"] ?? "?")")
        #expect(twice.isEmpty, "iterations at the sink twice: \(twice.keys.sorted().prefix(10))")
        #expect(shared.isEmpty, "(tick, shard) from two workers: \(shared.prefix(10))")
        // The promoted primary set the barrier, and B's side carried the load after it.
        #expect(events.contains("redis_changed"), "\(events.suffix(2000))")
        #expect(lines.contains { $0.arrivedMs > promotedAt + 4000 && $0.worker != "wa" })
        #expect(summary["state"] as? String == "finished", "\(statusText)")
        // A's primary refused writes once it had heard from no replica for the lag: A's
        // worker got no grant there after that, so while cut off it stopped sending within
        // two ticks and its lease TTL (3 s) of that.
        let lastA = (aCutOff.map(\.arrivedMs).max() ?? cutAt) - cutAt
        #expect(lastA < Double(maxLag + 1 + 2 + 3) * 1000, "A's worker sent until \(lastA) ms after the cut")
    }
}
