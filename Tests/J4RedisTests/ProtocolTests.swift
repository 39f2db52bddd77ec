import Foundation
import J4Core
import J4Redis
import J4Runtime
import J4TestSupport
import Synchronization
import Testing

/// A run stored in a real Redis and started, ready for lease and claim calls.
struct StartedRun {
    let redis: EmbeddedRedis
    let c: RedisConnection
    let run: String
    let client: RunClient
    let curve: Curve
    let startMs: Int64
    let tickMs: Int64

    /// 100/s for 60 s in 10 s ticks (long ticks, so "now" and "next" do not move under a test),
    /// on a new redis-server or on `redis`.
    static func make(shards: Int = 8, tick: String = "10s", duration: String = "60s", redis: EmbeddedRedis? = nil) async throws -> StartedRun {
        let server: EmbeddedRedis
        if let redis { server = redis } else { server = try await EmbeddedRedis.start() }
        let c = server.connect()
        let d = try RunDefinition.parse(text: """
            name: proto
            scenario: http
            model: arrival-rate
            start: 100
            stages: [{ duration: \(duration), target: 100 }]
            tick: \(tick)
            shards: \(shards)
            """, format: .yaml)
        let run = try await RunStore.submit(d, on: c)
        let client = RunClient(run: run)
        let curve = Curve(d)
        let values = (0...curve.tickCount).map { curve.planValue(tick: $0) }
        let plan = try await client.plan(c, holder: "sup", token: "t1", ttlMs: 60_000, leadMs: 0, generation: 1, from: 0, values: values)
        let startMs = plan.startMs!
        // Tick 0 begins on the next whole second of Redis' clock. Until then "next" is tick 0,
        // and a test that read it just before the start would see it move under its claims
        // (found by CI): wait for the start, so that "now" and "next" stay put for a whole tick.
        try await waitFor("the run's start on Redis' clock", timeout: .seconds(5), every: .milliseconds(5)) {
            try await c.send(["TIME"]).timeMs! >= startMs
        }
        return StartedRun(redis: server, c: c, run: run, client: client, curve: curve, startMs: startMs, tickMs: d.tickMs)
    }

    /// The tick that can be claimed as "next" now.
    func nextTick() async throws -> Int64 {
        let now = try await c.send(["TIME"]).timeMs!
        return now < startMs ? 0 : (now - startMs) / tickMs + 1
    }

    func ctl(_ field: String) async throws -> String? {
        try await c.send(["HGET", client.keys.ctl, field]).string
    }
}

@Suite("Lease and claim protocol (Lua on a real redis-server)")
struct ProtocolTests {
    @Test("a claim is a heartbeat: it extends the caller's unexpired leases by the TTL, never another's")
    func claimRenews() async throws {
        let r = try await StartedRun.make(shards: 2)
        let a = try await r.client.acquire(r.c, worker: "A", nonce: "na", take: true, held: [])
        let tokens = a.held.map { ($0.key, $0.value.token) }.sorted { $0.0 < $1.0 }
        let before = try await r.c.send(["ZSCORE", r.client.keys.leases, "0"]).string.flatMap { Int64($0) } ?? 0
        // A stale token for shard 1: fenced and not extended.
        let claim = try await r.client.claim(r.c, worker: "A", tick: try await r.nextTick(), shards: [tokens[0], (1, "stale")])
        let after0 = try await r.c.send(["ZSCORE", r.client.keys.leases, "0"]).string.flatMap { Int64($0) } ?? 0
        let after1 = try await r.c.send(["ZSCORE", r.client.keys.leases, "1"]).string.flatMap { Int64($0) } ?? 0
        #expect(claim.code == "ok")
        #expect(claim.renewed == [0])
        #expect(claim.statuses[1] == .fenced)
        #expect(after0 == claim.nowMs + 3000 && after0 >= before)
        #expect(after1 == a.held[1]!.expiryMs)
        let live = try await r.c.send(["ZSCORE", r.client.keys.workers, "A"]).string.flatMap { Int64($0) }
        #expect(live == claim.nowMs)
    }

    @Test("one grant per (tick, shard) with concurrent claimers; a retry gets the same answer; never more than the tick's target")
    func concurrentClaims() async throws {
        let r = try await StartedRun.make()
        let a = try await r.client.acquire(r.c, worker: "A", nonce: "na", take: true, held: [])
        #expect(a.held.count == 8)
        let tokens = a.held.map { ($0.key, $0.value.token) }.sorted { $0.0 < $1.0 }
        let n = try await r.nextTick()

        // Eight connections claim the same tick at once: one with A's tokens repeated (a retry),
        // the others as impostors with tokens of their own.
        let replies = try await withThrowingTaskGroup(of: (String, ClaimReply).self) { group in
            for i in 0..<8 {
                group.addTask {
                    let conn = r.redis.connect("claimer-\(i)")
                    let who = i % 2 == 0 ? "A" : "B\(i)"
                    let pairs = i % 2 == 0 ? tokens : tokens.map { ($0.0, "forged-\(i)") }
                    return (who, try await r.client.claim(conn, worker: who, tick: n, shards: pairs))
                }
            }
            var all: [(String, ClaimReply)] = []
            for try await x in group { all.append(x) }
            return all
        }
        for (who, reply) in replies {
            #expect(reply.code == "ok")
            let expected: ClaimReply.Status = who == "A" ? .granted : .fenced
            #expect(reply.statuses.values.allSatisfy { $0 == expected }, "\(who): \(reply.statuses)")
        }
        // Granted once: exactly the tick's target, not four times it.
        let target = r.curve.firstIteration(ofTick: n + 1) - r.curve.firstIteration(ofTick: n)
        #expect(try await r.ctl("granted") == String(target))
        #expect(try await r.c.send(["HLEN", r.client.keys.claims(tick: n)]) == .integer(8))
        await r.redis.stop()
    }

    @Test("a stale token is refused after the shard moved; the new owner cannot get a grant twice")
    func staleToken() async throws {
        let r = try await StartedRun.make(shards: 4)
        let a = try await r.client.acquire(r.c, worker: "A", nonce: "na", take: true, held: [])
        let aTokens = a.held.map { ($0.key, $0.value.token) }
        let n = try await r.nextTick()
        let first = try await r.client.claim(r.c, worker: "A", tick: n, shards: aTokens)
        #expect(first.statuses.values.allSatisfy { $0 == .granted })
        // A hands its leases back; B takes them with fresh tokens.
        #expect(try await r.client.release(r.c, worker: "A", reason: "shutdown", shards: aTokens) == 4)
        let b = try await r.client.acquire(r.c, worker: "B", nonce: "nb", take: true, held: [])
        #expect(b.held.count == 4)
        #expect(Set(b.held.values.map(\.token)).isDisjoint(with: aTokens.map(\.1)))
        // A's old tokens: fenced. B on the tick A already has: taken. B on the next tick: granted.
        let stale = try await r.client.claim(r.c, worker: "A", tick: n, shards: aTokens)
        #expect(stale.statuses.values.allSatisfy { $0 == .fenced })
        let bTokens = b.held.map { ($0.key, $0.value.token) }
        let taken = try await r.client.claim(r.c, worker: "B", tick: n, shards: bTokens)
        #expect(taken.statuses.values.allSatisfy { $0 == .taken })
        // A renew with stale tokens reports them all lost and never revives them.
        let renew = try await r.client.renew(r.c, worker: "A", held: aTokens)
        #expect(renew.held.isEmpty && Set(renew.lost) == Set(aTokens.map(\.0)))
        await r.redis.stop()
    }

    @Test("an expired lease cannot claim or be renewed; another worker takes it over")
    func expiredLease() async throws {
        let r = try await StartedRun.make(shards: 2)
        let a = try await r.client.acquire(r.c, worker: "A", nonce: "na", take: true, held: [])
        let aTokens = a.held.map { ($0.key, $0.value.token) }
        // Expire shard 0's lease (as if A had stalled past its TTL).
        try await r.c.send(["ZADD", r.client.keys.leases, "XX", "1", "0"])
        let n = try await r.nextTick()
        let claim = try await r.client.claim(r.c, worker: "A", tick: n, shards: aTokens)
        #expect(claim.statuses[0] == .fenced && claim.statuses[1] == .granted)
        let renew = try await r.client.renew(r.c, worker: "A", held: aTokens)
        #expect(renew.lost == [0] && renew.held.keys.sorted() == [1])
        let b = try await r.client.acquire(r.c, worker: "B", nonce: "nb", take: true, held: [])
        #expect(b.held.keys.sorted() == [0])
        let events = try await r.c.send(["XRANGE", r.client.keys.events, "-", "+"]).array ?? []
        #expect(events.contains { $0.array?.last?.hash?["type"] == "takeover" && $0.array?.last?.hash?["from"] == "A" })
        await r.redis.stop()
    }

    @Test("acquire tells a worker below its share when the next lease held now runs out; at its share, or on renew, it says nothing")
    func nextExpiry() async throws {
        let r = try await StartedRun.make(shards: 2)
        let a = try await r.client.acquire(r.c, worker: "A", nonce: "na", take: true, held: [])
        #expect(a.held.count == 2 && a.nextExpiryMs == nil)
        // Shard 1 renewed later than shard 0 (by a claim): the earliest expiry is shard 0's.
        try await waitFor("Redis' clock past the acquire", timeout: .seconds(5), every: .milliseconds(2)) { try await r.c.send(["TIME"]).timeMs! > a.nowMs }
        let claim = try await r.client.claim(r.c, worker: "A", tick: try await r.nextTick(), shards: [(1, a.held[1]!.token)])
        #expect(claim.code == "ok" && claim.renewed == [1])
        let expiry1 = try await r.c.send(["ZSCORE", r.client.keys.leases, "1"]).string.flatMap { Int64($0) } ?? 0
        #expect(expiry1 > a.held[0]!.expiryMs)
        let b = try await r.client.acquire(r.c, worker: "B", nonce: "nb", take: true, held: [])
        #expect(b.held.isEmpty && b.cap == 1)
        #expect(b.nextExpiryMs == a.held[0]!.expiryMs, "\(String(describing: b.nextExpiryMs)) vs \(a.held)")
        // Not asked to take, or at its share: nothing.
        #expect(try await r.client.renew(r.c, worker: "B", held: []).nextExpiryMs == nil)
        #expect(try await r.client.acquire(r.c, worker: "A", nonce: "na", take: true, held: a.held.map { ($0.key, $0.value.token) }).nextExpiryMs == nil)
        await r.redis.stop()
    }

    @Test("fair share: cap = ceil(S / live workers); the first worker is told to shed, and what it hands back is announced on j4:signals")
    func fairShare() async throws {
        let r = try await StartedRun.make(shards: 8)
        let heard = Mutex<[String]>([])
        let subscriber = RedisSubscriber(endpoint: r.redis.endpoint, channel: GlobalKeys.signals, clientName: "test-signals") { text in
            heard.withLock { $0.append(text) }
        }
        defer { subscriber.close() }
        try await waitFor("the subscription", timeout: .seconds(5), every: .milliseconds(10)) { subscriber.subscribeCount > 0 }
        let a = try await r.client.acquire(r.c, worker: "A", nonce: "na", take: true, held: [])
        #expect(a.held.count == 8 && a.cap == 8)
        let b = try await r.client.acquire(r.c, worker: "B", nonce: "nb", take: true, held: [])
        #expect(b.held.isEmpty && b.cap == 4 && b.liveWorkers == 2)
        _ = try await r.client.acquire(r.c, worker: "C", nonce: "nc", take: true, held: [])
        let renew = try await r.client.renew(r.c, worker: "A", held: a.held.map { ($0.key, $0.value.token) })
        #expect(renew.cap == 3 && renew.held.count == 8)
        let shed = a.held.sorted { $0.key < $1.key }.suffix(5).map { ($0.key, $0.value.token) }
        #expect(try await r.client.release(r.c, worker: "A", reason: "shed", shards: shed) == 5)
        // A second hand-back of the same leases releases nothing and says nothing.
        #expect(try await r.client.release(r.c, worker: "A", reason: "shed", shards: shed) == 0)
        try await waitFor("the release signal", timeout: .seconds(10), every: .milliseconds(10)) { !heard.withLock { $0 }.isEmpty }
        #expect(heard.withLock { $0 } == ["\(r.run) released 5"])
        let b2 = try await r.client.acquire(r.c, worker: "B", nonce: "nb", take: true, held: [])
        let c2 = try await r.client.acquire(r.c, worker: "C", nonce: "nc", take: true, held: [])
        #expect(b2.held.count == 3 && c2.held.count == 2)
        await r.redis.stop()
    }

    @Test("claims only for now and next, never past stop; stop at the next boundary unless it is granted; abort")
    func windowsAndStop() async throws {
        let r = try await StartedRun.make(shards: 2)
        let a = try await r.client.acquire(r.c, worker: "A", nonce: "na", take: true, held: [])
        let pairs = a.held.map { ($0.key, $0.value.token) }
        let n = try await r.nextTick()
        #expect(try await r.client.claim(r.c, worker: "A", tick: n + 1, shards: pairs).code == "early")
        if n >= 2 { #expect(try await r.client.claim(r.c, worker: "A", tick: n - 2, shards: pairs).code == "past") }
        // The next tick (n) is granted before the stop: the stop cannot take it back, so the
        // run ends one boundary later and F(stop_tick) still covers every grant.
        #expect(try await r.client.claim(r.c, worker: "A", tick: n, shards: pairs).code == "ok")
        #expect(try await r.ctl("claimed_tick") == String(n))
        // Claim records name the worker; the tick's grant is in the per-tick accounting.
        let record = try await r.c.send(["HGETALL", r.client.keys.claims(tick: n)]).hash ?? [:]
        #expect(record == Dictionary(uniqueKeysWithValues: pairs.map { (String($0.0), "A|" + $0.1) }))
        let g = try await r.c.send(["HGET", r.client.keys.ticks, "\(n):g"]).int
        #expect(g == r.curve.firstIteration(ofTick: n + 1) - r.curve.firstIteration(ofTick: n))
        let (state, stopTick) = try await r.client.stop(r.c, mode: "stop", who: "test")
        #expect(state == .stopping && stopTick == n + 1)
        #expect(try await r.client.claim(r.c, worker: "A", tick: n, shards: pairs).code == "ok")  // a retry
        try await r.c.send(["HSET", r.client.keys.ctl, "stop_tick", String(n)])
        #expect(try await r.client.claim(r.c, worker: "A", tick: n, shards: pairs).code == "stopped")
        // A stopping run still renews leases but hands out no new ones.
        let renewed = try await r.client.acquire(r.c, worker: "A", nonce: "na", take: true, held: pairs)
        #expect(renewed.state == .stopping && renewed.held.count == 2)
        let (aborted, _) = try await r.client.abort(r.c, who: "test", reason: "because")
        #expect(aborted == .aborted)
        #expect(try await r.client.claim(r.c, worker: "A", tick: n, shards: pairs).code == "aborted")
        let renew = try await r.client.renew(r.c, worker: "A", held: pairs)
        #expect(renew.state == .aborted && renew.held.isEmpty)
        await r.redis.stop()
    }

    @Test("stop and abort with the next tick not yet granted end the run at the next boundary, and say so on j4:signals")
    func stopAtNextBoundary() async throws {
        let r = try await StartedRun.make(shards: 2)
        let heard = Mutex<[String]>([])
        let subscriber = RedisSubscriber(endpoint: r.redis.endpoint, channel: GlobalKeys.signals, clientName: "test-signals") { text in
            heard.withLock { $0.append(text) }
        }
        defer { subscriber.close() }
        try await waitFor("the subscription", timeout: .seconds(5), every: .milliseconds(10)) { subscriber.subscribeCount > 0 }
        let n = try await r.nextTick()
        let (state, stopTick) = try await r.client.stop(r.c, mode: "stop", who: "test")
        #expect(state == .stopping && stopTick == n)
        let a = try await r.client.acquire(r.c, worker: "A", nonce: "na", take: true, held: [])
        #expect(try await r.client.claim(r.c, worker: "A", tick: n, shards: a.held.map { ($0.key, $0.value.token) }).code == "stopped")
        let (aborted, abortTick) = try await r.client.abort(r.c, who: "test", reason: "because")
        #expect(aborted == .aborted && abortTick == n)
        try await waitFor("both signals", timeout: .seconds(10), every: .milliseconds(10)) { heard.withLock { $0.count } >= 2 }
        #expect(heard.withLock { $0 } == ["\(r.run) stopping \(n)", "\(r.run) aborted \(n)"])
        let events = try await r.c.send(["XRANGE", r.client.keys.events, "-", "+"]).array ?? []
        let types = events.compactMap { $0.array?.last?.hash?["type"] }
        #expect(types.contains("stop") && types.contains("aborted"))
        await r.redis.stop()
    }

    @Test("plan: fenced per run; frozen ticks are never rewritten")
    func planFence() async throws {
        let r = try await StartedRun.make(shards: 2)
        let fenced = try await r.client.plan(r.c, holder: "other", token: "x", ttlMs: 5000, leadMs: 0, generation: 1, from: 0, values: [999])
        #expect(fenced.code == "fenced")
        let n = try await r.nextTick()
        let before = try await r.c.send(["HGET", r.client.keys.plan, String(n)]).int
        _ = try await r.client.plan(r.c, holder: "sup", token: "t1", ttlMs: 60_000, leadMs: 0, generation: 1, from: n, values: [7, 8, 9])
        #expect(try await r.c.send(["HGET", r.client.keys.plan, String(n)]).int == before)  // frozen
        // n is "next" (frozen); n + 1 and later may change.
        #expect(try await r.c.send(["HGET", r.client.keys.plan, String(n + 1)]).int == 8)
        #expect(try await r.c.send(["HGET", r.client.keys.plan, String(n + 2)]).int == 9)
        await r.redis.stop()
    }

    @Test("plan: values computed before a scale landed are not written (the plan cannot go backwards)")
    func planStale() async throws {
        let r = try await StartedRun.make(shards: 2)
        let n = try await r.nextTick()
        // A supervisor reads the run at generation 1 and stalls; `j4 scale` lands meanwhile.
        _ = try await r.c.evalScript(Scripts.scale, keys: [r.client.keys.ctl, r.client.keys.plan, r.client.keys.events], args: ["300000", "test"])
        #expect(try await r.ctl("gen") == "2")
        let scaled = try await r.c.send(["HGET", r.client.keys.plan, String(n + 3)]).int
        #expect(scaled != nil && scaled != 7)
        // The stalled supervisor writes its old plan: refused, nothing changed.
        let stale = try await r.client.plan(r.c, holder: "sup", token: "t1", ttlMs: 60_000, leadMs: 0, generation: 1, from: n + 1, values: [7, 7, 7, 7])
        #expect(stale.code == "stale")
        #expect(try await r.c.send(["HGET", r.client.keys.plan, String(n + 3)]).int == scaled)
        // Computed from the current generation, it is written.
        let fresh = try await r.client.plan(r.c, holder: "sup", token: "t1", ttlMs: 60_000, leadMs: 0, generation: 2, from: n + 1, values: [7, 7, 7, 7])
        #expect(fresh.code == "ok")
        #expect(try await r.c.send(["HGET", r.client.keys.plan, String(n + 3)]).int == 7)
        await r.redis.stop()
    }

    @Test("resign: a supervisor gives up its hold at once, and only its own")
    func resign() async throws {
        let r = try await StartedRun.make(shards: 2)
        #expect(try await r.client.plan(r.c, holder: "next", token: "n1", ttlMs: 60_000, leadMs: 0, generation: 1, from: 0, values: []).code == "fenced")
        #expect(try await r.client.resign(r.c, holder: "next", token: "n1") == false, "not its hold")
        #expect(try await r.client.resign(r.c, holder: "sup", token: "other-term") == false, "another term of the same supervisor")
        #expect(try await r.client.resign(r.c, holder: "sup", token: "t1"))
        #expect(try await r.client.plan(r.c, holder: "next", token: "n1", ttlMs: 60_000, leadMs: 0, generation: 1, from: 0, values: []).code == "ok")
        let events = try await r.c.send(["XRANGE", r.client.keys.events, "-", "+"]).array ?? []
        let change = events.compactMap { $0.array?.last?.hash }.last { $0["type"] == "supervisor" }
        #expect(change?["holder"] == "next" && change?["previous"] == "sup")
        await r.redis.stop()
    }

    @Test("flush: a retried sequence number is counted once; max fields keep the maximum")
    func flushDedup() async throws {
        let r = try await StartedRun.make(shards: 2)
        let fields: [(String, Int64)] = [("started", 5), ("ok", 4), ("err:timeout", 1), ("max:lat", 900), ("t:3:s", 5), ("t:3:d", 1)]
        #expect(try await r.client.flush(r.c, worker: "A", seq: 1, second: 100, fields: fields))
        #expect(try await !r.client.flush(r.c, worker: "A", seq: 1, second: 100, fields: fields))
        #expect(try await r.client.flush(r.c, worker: "B", seq: 1, second: 100, fields: [("started", 2), ("max:lat", 300)]))
        let totals = try await r.c.send(["HGETALL", r.client.keys.totals]).hash ?? [:]
        #expect(totals == ["started": "7", "ok": "4", "err:timeout": "1", "max:lat": "900"])
        // Per-tick fields go to the ticks hash only, once per sequence number too.
        #expect(try await r.c.send(["HGETALL", r.client.keys.ticks]).hash == ["3:s": "5", "3:d": "1"])
        await r.redis.stop()
    }

    @Test("leader lease: one holder; a resign hands it over")
    func leader() async throws {
        let redis = try await EmbeddedRedis.start()
        let c = redis.connect()
        func call(_ op: String, _ who: String, _ token: String) async throws -> [RedisValue] {
            try await c.evalScript(Scripts.leader, keys: [GlobalKeys.leader], args: [op, who, token, "5000"]).array ?? []
        }
        #expect(try await call("acquire", "s1", "a").first == .integer(1))
        let refused = try await call("acquire", "s2", "b")
        #expect(refused.first == .integer(0) && refused[1].string == "s1")
        #expect(try await call("renew", "s2", "b").first == .integer(0))
        #expect(try await call("resign", "s1", "a").first == .integer(1))
        #expect(try await call("acquire", "s2", "b").first == .integer(1))
        await redis.stop()
    }

    @Test("reap: dead workers and expired leases leave the live sets, with events")
    func reap() async throws {
        let r = try await StartedRun.make(shards: 2)
        _ = try await r.client.acquire(r.c, worker: "A", nonce: "na", take: true, held: [])
        try await r.c.send(["ZADD", r.client.keys.workers, "1", "A"])
        try await r.c.send(["ZADD", r.client.keys.leases, "XX", "1", "0"])
        let (dead, expired) = try await r.client.reap(r.c)
        #expect(dead == 1 && expired == 1)
        #expect(try await r.c.send(["HEXISTS", r.client.keys.owners, "0"]) == .integer(0))
        #expect(try await r.c.send(["ZSCORE", r.client.keys.workers, "A"]) == .null)
        await r.redis.stop()
    }

    @Test("submit is idempotent on (run id, definition); another definition under the same id is refused")
    func submitIdempotent() async throws {
        let redis = try await EmbeddedRedis.start()
        let c = redis.connect()
        let d1 = try RunDefinition.parse(text: "name: a\nscenario: http\nmodel: arrival-rate\nstages: [{duration: 1s, target: 1}]\n", format: .yaml)
        var d2 = d1
        d2.name = "b"
        #expect(try await RunStore.submit(d1, on: c, runID: "fixed-id") == "fixed-id")
        #expect(try await RunStore.submit(d1, on: c, runID: "fixed-id") == "fixed-id")
        await #expect(throws: RedisError.self) { try await RunStore.submit(d2, on: c, runID: "fixed-id") }
        #expect(try await RunStore.info("fixed-id", on: c)?.definition == d1)
        await redis.stop()
    }
}

@Suite("Live scaling (scale.lua on a real redis-server)")
struct ScaleProtocolTests {
    @Test("scale.lua rewrites the plan exactly as the Swift curve computes it", arguments: [Int64(300_000), 1_333, 0, 9_999_999_999])
    func planMatchesCurve(targetMilli: Int64) async throws {
        let r = try await StartedRun.make()
        let (code, k) = try await r.client.scale(r.c, targetMilli: targetMilli, who: "test")
        #expect(code == "ok")
        let info = try #require(try await RunStore.info(r.run, on: r.c))
        #expect(info.scales == [Curve.Scale(fromTick: k, targetMilli: targetMilli)])
        let curve = info.curve
        let plan = try await r.c.send(["HGETALL", r.client.keys.plan]).hash ?? [:]
        for n in k...min(k + 20, curve.tickCount) {
            #expect(plan[String(n)].flatMap { Int64($0) } == curve.firstIteration(ofTick: n), "tick \(n)")
        }
        #expect(try await r.c.send(["HGET", r.client.keys.ctl, "gen"]).int == 2)
        await r.redis.stop()
    }

    @Test("a run that is not running cannot be scaled")
    func notRunning() async throws {
        let r = try await StartedRun.make()
        _ = try await r.client.stop(r.c, mode: "stop", who: "t")
        #expect(try await r.client.scale(r.c, targetMilli: 1000, who: "t").code == "not_running")
        await r.redis.stop()
    }
}
