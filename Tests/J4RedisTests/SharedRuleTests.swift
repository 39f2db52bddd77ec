import J4Redis
import J4Runtime
import J4TestSupport
import Testing

/// The rules several scripts share (lua/lib), each checked once, row by row, on a real
/// redis-server: the scripts include the very same text.
@Suite("Shared Lua rules (lua/lib on a real redis-server)")
struct SharedRuleTests {
    /// Runs `snippet` followed by `body` with EVAL.
    static func eval(_ c: RedisConnection, _ snippet: String, _ body: String, keys: [String], args: [String]) async throws -> RedisValue {
        let text = try #require(LuaScript.library(snippet)) + "\n" + body
        return try await c.send(["EVAL", text, String(keys.count)] + keys + args)
    }

    @Test("the fence: a lease counts only for its exact worker|token, and only before its expiry")
    func fence() async throws {
        let redis = try await EmbeddedRedis.start()
        let c = redis.connect()
        // owner of shard 0 → "w1|7-a", expiry 1000 (Redis ms)
        _ = try await c.send(["HSET", "owners", "0", "w1|7-a"])
        _ = try await c.send(["ZADD", "leases", "1000", "0", "0", "1"])
        let rows: [(shard: String, worker: String, token: String, now: Int, holds: Bool, why: String)] = [
            ("0", "w1", "7-a", 999, true, "its own token, before expiry"),
            ("0", "w1", "7-a", 1000, false, "at expiry: gone"),
            ("0", "w1", "6-a", 500, false, "an older token of the same worker"),
            ("0", "w2", "7-a", 500, false, "another worker with the same token"),
            ("1", "w1", "7-a", 500, false, "a free shard (expiry 0, no owner)"),
            ("9", "w1", "7-a", 500, false, "a shard that does not exist"),
        ]
        for r in rows {
            let reply = try await Self.eval(c, "fence", "return holds_lease(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])) and 1 or 0",
                                            keys: ["owners", "leases"], args: [r.shard, r.worker, r.token, String(r.now)])
            #expect(reply.int == (r.holds ? 1 : 0), "\(r.why)")
        }
        await c.close()
        await redis.stop()
    }

    @Test("the fair share: ceil(shards / live workers), live = a heartbeat within one TTL, at least one")
    func fairShare() async throws {
        let redis = try await EmbeddedRedis.start()
        let c = redis.connect()
        let rows: [(heartbeats: [Int], shards: Int, now: Int, cap: Int, live: Int)] = [
            ([], 12, 10_000, 12, 1),                       // nobody yet: the caller alone
            ([10_000], 12, 10_000, 12, 1),
            ([10_000, 9_000, 7_001], 12, 10_000, 4, 3),    // a TTL of 3000: 7001 is live
            ([10_000, 9_000, 7_000], 12, 10_000, 4, 3),    // exactly one TTL ago still counts
            ([10_000, 9_000, 6_999], 12, 10_000, 6, 2),    // older: dead
            ([10_000, 10_000, 10_000, 10_000, 10_000], 7, 10_000, 2, 5),
            ([10_000, 10_000], 1, 10_000, 1, 2),
        ]
        for (i, r) in rows.enumerated() {
            let key = "workers:\(i)"
            for (w, t) in r.heartbeats.enumerated() { _ = try await c.send(["ZADD", key, String(t), "w\(w)"]) }
            let reply = try await Self.eval(c, "fair_share", "local cap, live = fair_share(KEYS[1], tonumber(ARGV[1]), 3000, tonumber(ARGV[2]))\nreturn {cap, live}",
                                            keys: [key], args: [String(r.shards), String(r.now)])
            #expect(reply.array?.map { $0.int } == [Int64(r.cap), Int64(r.live)], "row \(i): \(r)")
        }
        await c.close()
        await redis.stop()
    }

    @Test("the run's tick: Redis' clock decides it, but never below the highest granted tick minus one; claim, plan and scale include it")
    func runTick() async throws {
        let redis = try await EmbeddedRedis.start()
        let c = redis.connect()
        // start 1000, ticks of 300 ms
        let rows: [(now: Int, claimed: Int?, tick: Int, why: String)] = [
            (1000, nil, 0, "the first instant of tick 0, nothing granted"),
            (1299, nil, 0, "the last instant of tick 0"),
            (1300, nil, 1, "tick 1 begins"),
            (2500, 5, 5, "the clock agrees with the history: tick 5, and tick 5 granted"),
            (2250, 5, 4, "tick 4 with its next tick (5) already granted: the clock decides"),
            (1600, 5, 4, "the clock stepped back to tick 2: the run stays at tick 4, the one before the highest granted"),
            (-100_000, 9, 8, "a clock before the run's start"),
            (1000, -1, 0, "claimed_tick -1 (as HGET of a missing field gives after tonumber)"),
        ]
        for (i, r) in rows.enumerated() {
            let reply = try await Self.eval(c, "run_tick", "return run_tick(tonumber(ARGV[1]), 1000, 300, tonumber(ARGV[2]))",
                                            keys: [], args: [String(r.now), r.claimed.map(String.init) ?? ""])
            #expect(reply.int == Int64(r.tick), "row \(i) (\(r.why)): \(reply)")
        }
        for script in [Scripts.claim, Scripts.plan, Scripts.scale] {
            #expect(script.source.contains("local function run_tick("), "\(script.name)")
            #expect(!script.source.contains("math.floor((now - start) / tick)\n"), "\(script.name) computes the tick by hand")
        }
        await c.close()
        await redis.stop()
    }

    @Test("Redis' clock in ms, as TIME gives it; every script that reads the clock includes it")
    func now() async throws {
        let redis = try await EmbeddedRedis.start()
        let c = redis.connect()
        let t = try await c.send(["TIME"]).array ?? []
        let before = (t.first?.int ?? 0) * 1000 + (t.count > 1 ? (t[1].int ?? 0) / 1000 : 0)
        let ms = try await Self.eval(c, "now", "return now_ms()", keys: [], args: []).int ?? 0
        #expect(ms >= before && ms < before + 1000)
        for script in Scripts.all {
            #expect(!script.source.contains("-- @include"), "\(script.name): an include left unexpanded")
            if script.source.contains("now_ms()") { #expect(script.source.contains("local function now_ms()"), "\(script.name)") }
            #expect(!script.source.contains("redis.call('TIME')") || script.source.contains("local function now_ms()"), "\(script.name) reads the clock by hand")
        }
        #expect(Scripts.claim.source.contains("local function holds_lease(") && Scripts.claim.source.contains("local function fair_share("))
        await c.close()
        await redis.stop()
    }
}
