import Foundation
import J4Redis
import Testing

@Suite("Redis URLs")
struct EndpointTests {
    @Test("URLs people write", arguments: [
        ("redis://127.0.0.1:6379", RedisEndpoint(address: .tcp(host: "127.0.0.1", port: 6379))),
        ("redis://localhost", RedisEndpoint(address: .tcp(host: "localhost", port: 6379))),
        ("redis://:s3cret@10.0.0.1:7000/2", RedisEndpoint(address: .tcp(host: "10.0.0.1", port: 7000), password: "s3cret", database: 2)),
        ("redis://j4worker:p%40ss@redis:6379", RedisEndpoint(address: .tcp(host: "redis", port: 6379), user: "j4worker", password: "p@ss")),
        ("redis://[::1]:6380", RedisEndpoint(address: .tcp(host: "::1", port: 6380))),
        ("unix:///tmp/redis.sock", RedisEndpoint(address: .unix(path: "/tmp/redis.sock"))),
        ("unix:///tmp/redis.sock?db=3", RedisEndpoint(address: .unix(path: "/tmp/redis.sock"), database: 3)),
        ("redis-sentinel://s1:26379,s2:26380,[::1]/j4main", RedisEndpoint(address: .sentinel(nodes: [.init(host: "s1", port: 26379), .init(host: "s2", port: 26380), .init(host: "::1", port: 26379)], master: "j4main"))),
        ("redis-sentinel://j4worker:pw@s1/j4main/2", RedisEndpoint(address: .sentinel(nodes: [.init(host: "s1", port: 26379)], master: "j4main"), user: "j4worker", password: "pw", database: 2)),
        ("redis-cluster://n1:7000,n2", RedisEndpoint(address: .cluster(nodes: [.init(host: "n1", port: 7000), .init(host: "n2", port: 6379)]))),
    ])
    func parses(url: String, expected: RedisEndpoint) throws {
        #expect(try RedisEndpoint(url: url) == expected)
    }

    @Test("bad URLs say what is expected", arguments: [
        "http://x:1", "redis://host:99999", "redis://:6379", "unix://relative.sock", "redis://h:1/x",
        "redis-sentinel://s1:26379", "redis-sentinel://s1:26379/", "redis-sentinel:///j4main", "redis-sentinel://s1:0/m",
        "redis-cluster://n1:7000/2", "redis-cluster://",
    ])
    func refuses(url: String) {
        let error = #expect(throws: RedisError.self) { try RedisEndpoint(url: url) }
        #expect("\(error!)".contains("expected redis://"))
    }

    @Test("a password is never printed")
    func redaction() throws {
        let e = try RedisEndpoint(url: "redis://user:hunter2@h:1")
        #expect(!e.description.contains("hunter2"))
        #expect(e.description == "redis://user:***@h:1")
        #expect(!RedisEndpoint.redact("redis://u:hunter2@h:99999").contains("hunter2"))
        let error = #expect(throws: RedisError.self) { try RedisEndpoint(url: "redis://u:hunter2@h:99999") }
        #expect(!"\(error!)".contains("hunter2"))
        let sentinel = try RedisEndpoint(url: "redis-sentinel://j4:hunter2@s1:26379,s2:26379/j4main")
        #expect(sentinel.description == "redis-sentinel://j4:***@s1:26379,s2:26379/j4main")
    }
}

@Suite("Redis Cluster slots")
struct ClusterSlotTests {
    @Test("key slots as Redis computes them, hash tags included", arguments: [
        ("123456789", 0x31C3 % 16384), ("foo", 12182), ("bar", 5061),
        ("{user1000}.following", 3443), ("{user1000}.followers", 3443),
        // An empty tag hashes the whole key; the first "{" opens the tag (CRC16-XMODEM, computed apart).
        ("foo{}{bar}", 8363), ("foo{{bar}}zap", 4015),
    ])
    func slots(key: String, slot: Int) {
        #expect(ClusterSlots.slot(of: key) == slot)
    }

    static let node = RedisEndpoint.HostPort(host: "10.0.0.9", port: 7000)
    static func range(_ lo: Int64, _ hi: Int64, _ host: String, _ port: Int64) -> RedisValue {
        .array([.integer(lo), .integer(hi), .array([.bulk(Array(host.utf8)), .integer(port), .bulk(Array("id".utf8))])])
    }

    @Test("the slot map from a CLUSTER SLOTS reply", arguments: [
        // reply, (slot, owner) pairs to check, or the problem
        (RedisValue.array([range(0, 5460, "10.0.0.1", 7000), range(5461, 16383, "10.0.0.2", 7001)]), [(0, "10.0.0.1:7000"), (5460, "10.0.0.1:7000"), (5461, "10.0.0.2:7001"), (16383, "10.0.0.2:7001")], nil as String?),
        (.array([range(0, 100, "", 7002)]), [(0, "10.0.0.9:7002"), (101, "-")], nil),          // an empty host is the answering node's
        (.array([range(200, 100, "10.0.0.1", 7000), range(0, 16384, "10.0.0.1", 7000), range(5, 5, "10.0.0.3", 7003)]), [(5, "10.0.0.3:7003"), (6, "-")], nil),  // bad ranges skipped
        (.array([]), [], "no slots assigned"),
        (.error("ERR This instance has cluster support disabled"), [], "CLUSTER SLOTS gave"),
    ])
    func slotMap(reply: RedisValue, owners: [(Int, String)], problem: String?) {
        switch ClusterSlots.owners(fromSlotsReply: reply, answeredBy: Self.node) {
        case .success(let map):
            #expect(problem == nil)
            for (slot, owner) in owners { #expect((map[slot]?.description ?? "-") == owner, "slot \(slot)") }
        case .failure(let p):
            #expect(problem.map { p.text.hasPrefix($0) } == true, "\(p.text)")
        }
    }

    @Test("reconnect backoff: doubling from the minimum, capped, scaled by the jitter", arguments: [
        (1, 1.0, 50), (2, 1.0, 100), (3, 1.0, 200), (6, 1.0, 1600), (7, 1.0, 2000), (1000, 1.0, 2000),
        (1, 0.5, 25), (7, 0.5, 1000), (0, 1.0, 50),
    ])
    func backoff(failures: Int, jitter: Double, ms: Int64) {
        #expect(Backoff(min: .milliseconds(50), max: .seconds(2)).delay(afterFailures: failures, jitter: jitter) == .milliseconds(ms))
    }

    @Test("every key of a run, and of a pool, is in one slot")
    func oneSlotPerRun() {
        let k = RunKeys(run: "20261126-033308-0001")
        let keys = [k.ctl, k.leases, k.owners, k.workers, k.plan, k.events, k.claims(tick: 7), k.ticks, k.totals,
                    k.flushSeqs, k.metrics(second: 1_796_174_336), k.slow]
        #expect(Set(keys.map { ClusterSlots.slot(of: $0) }).count == 1)
        let p = PoolKeys(pool: "accounts")
        #expect(Set([p.meta, p.items, p.free, p.held, p.holders].map { ClusterSlots.slot(of: $0) }).count == 1)
    }
}

@Suite("Lua script contracts")
struct ScriptContractTests {
    static let luaDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("lua")

    /// Reads `-- KEYS[i] name:` and `-- ARGV[i] name:` / `-- ARGV[i...] a, b:` from a header.
    static func header(_ text: String) -> (keys: [String], args: [String], repeating: [String]) {
        var keys: [String] = [], args: [String] = [], repeating: [String] = []
        for line in text.split(separator: "\n") where line.hasPrefix("-- KEYS[") || line.hasPrefix("-- ARGV[") {
            guard let close = line.firstIndex(of: "]"), let colon = line.firstIndex(of: ":") else { continue }
            let index = line[line.index(line.startIndex, offsetBy: 8)..<close]
            let names = line[line.index(after: close)..<colon].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            if line.hasPrefix("-- KEYS[") {
                #expect(Int(index) == keys.count + 1, "KEYS out of order: \(line)")
                keys.append(names[0])
            } else if index.hasSuffix("...") {
                #expect(Int(index.dropLast(3)) == args.count + 1, "ARGV out of order: \(line)")
                repeating = names
            } else {
                #expect(Int(index) == args.count + 1, "ARGV out of order: \(line)")
                args.append(names[0])
            }
        }
        return (keys, args, repeating)
    }

    @Test("each descriptor matches its script's header", arguments: Scripts.all.map(\.name))
    func headerMatches(name: String) throws {
        let script = Scripts.all.first { $0.name == name }!
        let text = try String(contentsOf: Self.luaDirectory.appendingPathComponent("\(name).lua"), encoding: .utf8)
        let h = Self.header(text)
        #expect(h.keys == script.keys)
        #expect(h.args == script.args)
        #expect(h.repeating == script.repeating)
        // The embedded text is the file's text, each `-- @include lib/X.lua` line replaced by lua/lib/X.lua.
        var expanded: [String] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("-- @include ") {
                let path = Self.luaDirectory.appendingPathComponent(String(line.dropFirst("-- @include ".count)))
                expanded.append(try String(contentsOf: path, encoding: .utf8).trimmingCharacters(in: .newlines))
            } else {
                expanded.append(String(line))
            }
        }
        #expect(script.source.trimmingCharacters(in: .whitespacesAndNewlines) == expanded.joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines))
        // The body uses no key beyond the header's.
        let used = text.matches(of: /KEYS\[(\d+)\]/).compactMap { Int($0.1) }
        #expect((used.max() ?? 0) <= script.keys.count)
        for word in ["Reply:", "Errors:"] { #expect(text.contains("-- \(word)"), "\(name).lua has no \(word) line") }
    }

    @Test("docs/PROTOCOL.md's key reference lists every key, and its events table every event type the scripts write")
    func keyReference() throws {
        let readme = try String(contentsOf: Self.luaDirectory.deletingLastPathComponent().appendingPathComponent("docs/PROTOCOL.md"), encoding: .utf8)
        let k = RunKeys(run: "ID")
        let keys = [k.ctl, k.plan, k.leases, k.owners, k.workers, k.claims(tick: 0).replacingOccurrences(of: ":0", with: ":<n>"),
                    k.metrics(second: 0).replacingOccurrences(of: ":0", with: ":<second>"), k.metrics(minuteOf: 0).replacingOccurrences(of: ":0", with: ":<second>"), k.totals, k.flushSeqs, k.events, k.ticks,
                    GlobalKeys.runs, GlobalKeys.active, GlobalKeys.leader, GlobalKeys.signals]
            + { (p: PoolKeys) in [p.meta, p.items, p.free, p.held, p.holders] }(PoolKeys(pool: "NAME"))
        for key in keys { #expect(readme.contains("| `\(key)` |"), "the key table lacks \(key)") }
        let eventsTable = readme.components(separatedBy: "### Event types").last?.components(separatedBy: "\n## ").first ?? ""
        var types = 0
        for file in try FileManager.default.contentsOfDirectory(atPath: Self.luaDirectory.path) where file.hasSuffix(".lua") {
            let text = try String(contentsOf: Self.luaDirectory.appendingPathComponent(file), encoding: .utf8)
            for m in text.matches(of: /'type', '([a-z_]+)'/) {
                types += 1
                #expect(eventsTable.contains("| `\(m.1)`") || eventsTable.contains(", `\(m.1)` |"), "the events table lacks \(m.1) (from \(file))")
            }
        }
        #expect(types >= 12, "the scripts' XADD calls were not found")
    }

    @Test("every script in lua/ has a descriptor")
    func allDescribed() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.luaDirectory.path).filter { $0.hasSuffix(".lua") }.map { String($0.dropLast(4)) }
        #expect(Set(files) == Set(Scripts.all.map(\.name)))
    }

    @Test("a call with the wrong key or argument count is refused before it is sent")
    func counts() {
        #expect(throws: RedisError.self) { try Scripts.claim.check(keyCount: 9, argCount: 2) }
        #expect(throws: RedisError.self) { try Scripts.claim.check(keyCount: 10, argCount: 3) }
        #expect(throws: Never.self) { try Scripts.claim.check(keyCount: 10, argCount: 6) }
    }
}
