import Foundation
import J4Core
import J4Redis
import J4Runtime
import J4TestSupport
import Testing

/// Redis loses writes J4 already acted on: a restart from an older snapshot (or an AOF
/// fsynced once a second), a replica promoted before it had the last writes. Each is a new
/// server process with a new run_id; claim.lua's barrier keeps every lost grant's tick from
/// being granted again.
@Suite("Redis loses acknowledged writes: the barrier (a real redis-server restarted from an older snapshot)")
struct DataLossTests {
    @Test("restarted from a snapshot taken before a grant, within that tick: another worker is refused the tick (barrier), and a redis_changed event says why")
    func olderSnapshot() async throws {
        let r = try await StartedRun.make(shards: 2)
        let a = try await r.client.acquire(r.c, worker: "A", nonce: "na", take: true, held: [])
        // The snapshot knows A's leases (3 s TTL) but not what A is granted next.
        _ = try await r.c.send(["SAVE"])
        let n = try await r.nextTick()
        let granted = try await r.client.claim(r.c, worker: "A", tick: n, shards: a.held.map { ($0.key, $0.value.token) })
        #expect(granted.code == "ok" && granted.statuses.values.allSatisfy { $0 == .granted }, "\(granted)")

        await r.redis.kill(SIGKILL)
        try await r.redis.restart()
        let c = r.redis.connect()  // a new connection: the old one's next call reports the broken pipe
        #expect(try await c.send(["EXISTS", r.client.keys.claims(tick: n)]).int == 0, "the grant was lost with the restart")
        // A's leases, as the snapshot has them, expire; B takes the shards while tick n is
        // still claimable (10 s ticks) and A may still be running it.
        var b: LeaseReply?
        try await waitFor("B to take A's expired leases", timeout: .seconds(8), every: .milliseconds(100)) {
            let reply = try await r.client.acquire(c, worker: "B", nonce: "nb", take: true, held: [])
            b = reply
            return reply.held.count == 2
        }
        let bTokens = try #require(b).held.map { ($0.key, $0.value.token) }
        let again = try await r.client.claim(c, worker: "B", tick: n, shards: bTokens)
        #expect(again.code == "barrier", "tick \(n) granted twice: \(again)")
        let barrier = Int64(try await c.send(["HGET", r.client.keys.ctl, "barrier_tick"]).string ?? "") ?? -1
        #expect(barrier > n, "the barrier covers the lost grant's tick: \(barrier)")
        let events = try await c.send(["XRANGE", r.client.keys.events, "-", "+"]).array ?? []
        #expect(events.contains { "\($0)".contains("redis_changed") }, "\(events)")
        await r.redis.stop()
    }

    @Test("the run's first claim on its server passes (the epoch was recorded at submit); a plain reconnect to the same server sets no barrier")
    func sameServer() async throws {
        let r = try await StartedRun.make(shards: 2)
        #expect(try await r.ctl("redis_epoch")?.split(separator: ":").map(\.count) == [40, 40], "run_id:master_replid")
        let a = try await r.client.acquire(r.c, worker: "A", nonce: "na", take: true, held: [])
        let tokens = a.held.map { ($0.key, $0.value.token) }
        let n = try await r.nextTick()
        #expect(try await r.client.claim(r.c, worker: "A", tick: n, shards: tokens).code == "ok")
        _ = try await r.c.send(["CLIENT", "KILL", "TYPE", "normal"])  // every client reconnects
        #expect(try await r.client.claim(r.c, worker: "A", tick: n, shards: tokens).code == "ok")
        #expect(try await r.ctl("barrier_tick") == nil)
        await r.redis.stop()
    }
}
