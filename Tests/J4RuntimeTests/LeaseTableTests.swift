import Testing

@testable import J4Runtime

/// The lease table: which shards may produce load, which to claim with, which to hand back.
/// Times are ms from a fixed origin.
@Suite("Lease table")
struct LeaseTableTests {
    let origin = ContinuousClock.now
    func at(_ ms: Int64) -> ContinuousClock.Instant { origin + .milliseconds(ms) }

    @Test("claims go out with every lease trusted when the claim is sent, not only those trusted until the tick starts")
    func forClaim() {
        var t = LeaseTable()
        // TTL 1 s, margin 100 ms: trusted 900 ms after the renewal was sent. A claim sent at
        // 800 ms for a tick starting at 1000 ms: the lease is trusted now, and the claim
        // renews it. Skipping it (the rule before) left the tick unclaimed for that shard.
        _ = t.apply(held: [(5, "x"), (6, "y")], lost: [], cap: 2, validUntil: at(900))
        #expect(t.forClaim(at: at(800)).map(\.shard) == [5, 6])
        #expect(t.forClaim(at: at(900)).isEmpty, "a lease whose trust has ended is never claimed with")
    }

    @Test("which shards produce load, and which VUs may loop", arguments: [
        // (shard, now, covers: arrival-rate load may run, trusts: a VU may loop)
        (0, Int64(500), true, true),
        (1, 200, true, true),
        (1, 250, false, false),
        (2, 50, true, true),
        (2, 100, false, false),
        (3, 5000, true, false),  // handed back: its granted ticks are still this worker's, its VUs are not
        (9, 0, false, false),  // never held
    ])
    func coverage(shard: Int, nowMs: Int64, covers: Bool, trusts: Bool) {
        var t = LeaseTable()
        _ = t.apply(held: [(0, "a"), (1, "b"), (2, "c"), (3, "d")], lost: [], cap: 8, validUntil: at(100))
        _ = t.apply(held: [(0, "a")], lost: [], cap: 8, validUntil: at(1000))
        _ = t.apply(held: [(1, "b")], lost: [], cap: 8, validUntil: at(250))
        t.granted([3], tick: 4)
        t.cap = 3
        #expect(t.shedToCap().map(\.shard) == [3])
        #expect(t.covers(shard, at: at(nowMs)) == covers)
        #expect(t.trusts(shard, at: at(nowMs)) == trusts)
    }

    @Test("a reply: lost leases go (unless handed back), renewals keep the token, new tokens are fresh")
    func apply() {
        var t = LeaseTable()
        #expect(t.apply(held: [(0, "a"), (1, "b"), (2, "c")], lost: [], cap: 3, validUntil: at(100)) == [0, 1, 2])
        t.cap = 2
        #expect(t.shedToCap().map(\.shard) == [2])
        // Shard 1 lost, shard 2 (handed back) reported lost too, shard 0 renewed, shard 4 new,
        // shard 5 taken back under a new token.
        let fresh = t.apply(held: [(0, "a"), (4, "e")], lost: [1, 2], cap: 2, validUntil: at(300))
        #expect(fresh == [4])
        #expect(t.leases[1] == nil)
        #expect(t.leases[2]?.handedOff == true, "a handed-back lease stays until its granted ticks are over")
        #expect(t.leases[0]?.validUntil == at(300) && t.leases[0]?.token == "a")
        #expect(t.held.map(\.shard) == [0, 4])
        #expect(t.apply(held: [(0, "z")], lost: [], cap: 2, validUntil: at(400)) == [0], "a new token is a new lease")
        #expect(t.leases[0]?.token == "z")
    }

    @Test("a late reply never shortens trust")
    func noShortening() {
        var t = LeaseTable()
        _ = t.apply(held: [(0, "a")], lost: [], cap: 1, validUntil: at(500))
        _ = t.apply(held: [(0, "a")], lost: [], cap: 1, validUntil: at(300))
        #expect(t.leases[0]?.validUntil == at(500))
        t.renewedByClaim([(0, "a")], renewed: [0], validUntil: at(200))
        #expect(t.leases[0]?.validUntil == at(500))
    }

    @Test("a claim renews only the leases Redis extended, with the same token")
    func renewedByClaim() {
        var t = LeaseTable()
        _ = t.apply(held: [(0, "a"), (1, "b"), (2, "c")], lost: [], cap: 3, validUntil: at(100))
        t.renewedByClaim([(0, "a"), (1, "old"), (2, "c")], renewed: [0, 1], validUntil: at(900))
        #expect(t.leases[0]?.validUntil == at(900))
        #expect(t.leases[1]?.validUntil == at(100), "the claim was made with another token")
        #expect(t.leases[2]?.validUntil == at(100), "Redis did not extend it")
    }

    @Test("shedding hands back the highest shards above the fair share", arguments: [
        ([0, 1, 2, 3, 4], 5, [Int]()),
        ([0, 1, 2, 3, 4], 3, [3, 4]),
        ([7, 2, 9], 1, [7, 9]),
        ([1], 0, [1]),
    ])
    func shed(shards: [Int], cap: Int, shed: [Int]) {
        var t = LeaseTable()
        _ = t.apply(held: shards.map { ($0, "t\($0)") }, lost: [], cap: cap, validUntil: at(100))
        #expect(t.shedToCap().map(\.shard) == shed)
        #expect(t.heldCount == min(shards.count, cap))
        #expect(t.shedToCap().isEmpty, "shedding twice hands back nothing more")
    }

    @Test("handed-back leases are forgotten once their last granted tick is over")
    func forget() {
        var t = LeaseTable()
        _ = t.apply(held: [(0, "a"), (1, "b"), (2, "c")], lost: [], cap: 3, validUntil: at(100))
        t.granted([0], tick: 5)
        t.granted([1], tick: 8)
        #expect(t.handOffAll().map(\.shard) == [0, 1, 2])
        #expect(t.handOffAll().isEmpty)
        t.forgetSettled(currentTick: 7)
        #expect(t.leases.keys.sorted() == [1], "tick 5 ended before tick 6; tick 8 has not run yet; shard 2 was never granted a tick")
        t.forgetSettled(currentTick: 10)
        #expect(t.leases.isEmpty)
    }

    @Test("a claim reply's fair share: acquire when below it, shed at once when above it (not at the next renewal)", arguments: [
        // held, draining, cap in the reply, leaving → what the lease loop must do now
        (3, 0, Int?.none, false, LeaseTable.ShareChange.none),
        (3, 0, 3, false, .none),
        (3, 0, 4, false, .room),
        (4, 0, 3, false, .over),   // a worker joined: the harness found shedding put off to the next renewal
        (4, 1, 3, false, .none),   // one already draining does not count
        (4, 0, 3, true, .none),    // leaving: hands everything back anyway
        (0, 0, 2, false, .room),
    ])
    func share(held: Int, draining: Int, cap: Int?, leaving: Bool, change: LeaseTable.ShareChange) {
        var t = LeaseTable()
        _ = t.apply(held: (0..<held).map { ($0, "t\($0)") }, lost: [], cap: held, validUntil: at(100))
        if draining > 0 {
            t.cap = held - draining
            _ = t.shedToCap(drain: true)
        }
        #expect(t.noteShare(cap, leaving: leaving) == change)
        if let cap { #expect(t.cap == cap) }
    }

    @Test("a shard being given up (draining or handed back) keeps no VU, even for a tick already granted")
    func goingBack() {
        var t = LeaseTable()
        _ = t.apply(held: [(0, "a"), (1, "b"), (2, "c")], lost: [], cap: 3, validUntil: at(100))
        #expect(![0, 1, 2, 9].contains { t.isGoingBack($0) })
        t.cap = 2
        #expect(t.shedToCap(drain: true).map(\.shard) == [2])
        #expect(t.isGoingBack(2) && t.trusts(2, at: at(50)), "draining: still renewed and trusted, but going back")
        _ = t.handOff([1])
        #expect(t.isGoingBack(1) && !t.isGoingBack(0))
    }

    @Test("wanting more: fewer held than the fair share")
    func wantsMore() {
        var t = LeaseTable()
        #expect(t.wantsMore)
        _ = t.apply(held: [(0, "a"), (1, "b")], lost: [], cap: 2, validUntil: at(100))
        #expect(!t.wantsMore)
        t.cap = 3
        #expect(t.wantsMore)
    }
}

extension LeaseTableTests {
    @Test("VUs: a lease over the fair share drains (renewed, not claimed with) until its VUs end, then goes back")
    func drain() {
        var t = LeaseTable()
        _ = t.apply(held: [(0, "a"), (1, "b"), (2, "c")], lost: [], cap: 3, validUntil: at(1000))
        t.cap = 2
        #expect(t.shedToCap(drain: true).map(\.shard) == [2])
        #expect(t.held.map(\.shard) == [0, 1, 2], "a draining lease is still renewed")
        #expect(t.forClaim(at: at(0)).map(\.shard) == [0, 1], "and no longer claimed with")
        #expect(t.trusts(2, at: at(500)), "its VUs may finish their iteration")
        #expect(t.heldCount == 2 && !t.wantsMore && t.shedToCap(drain: true).isEmpty, "it no longer counts towards the fair share")
        #expect(t.handOff([2]).map(\.shard) == [2])
        #expect(t.held.map(\.shard) == [0, 1] && !t.trusts(2, at: at(500)))
        #expect(t.handOff([2]).isEmpty, "handed back once")
    }
}

extension LeaseTableTests {
    @Test("the lease loop skips a renewal only while claims renew the leases", arguments: [
        // (claiming, taking, leaving, renewed last cycle, lease trusted for ms, may skip)
        (true, false, false, true, Int64(5000), true),
        (false, false, false, true, 5000, false),  // the run has not started: found by the harness (10 s TTL, start learnt at tick 6)
        (true, true, false, true, 5000, false),  // taking more shards
        (true, false, true, true, 5000, false),  // leaving
        (true, false, false, false, 5000, false),  // skipped last cycle already
        (true, false, false, true, 1100, false),  // would not stay trusted past the next cycle (1 s + 100 ms)
        (true, false, false, true, 1101, true),
    ])
    func cadence(claiming: Bool, taking: Bool, leaving: Bool, renewed: Bool, trustedMs: Int64, skip: Bool) {
        var t = LeaseTable()
        _ = t.apply(held: [(0, "a")], lost: [], cap: 1, validUntil: at(trustedMs))
        #expect(LeaseCadence.mayRelyOnClaims(table: t, now: at(0), interval: .seconds(1), claiming: claiming, taking: taking, leaving: leaving, renewedLastCycle: renewed) == skip)
    }

    @Test("how long the lease loop waits", arguments: [
        // (interval ms, hungry, started, wait ms)
        (Int64(3333), false, true, Int64(3333)),
        (3333, true, true, 200),
        (3333, false, false, 250),  // a 10 s TTL still learns tick 0's start in time
        (333, false, false, 250),
        (150, false, false, 150),
    ])
    func wait(interval: Int64, hungry: Bool, started: Bool, waitMs: Int64) {
        #expect(LeaseCadence.wait(interval: .milliseconds(interval), hungry: hungry, started: started) == .milliseconds(waitMs))
    }

    @Test("a worker below its share comes back when the next lease held now runs out", arguments: [
        // (next expiry ms, reply's now ms, wants more, wait ms or nil)
        (Int64?(10_700), Int64(10_000), true, Int64?(710)),  // 10 ms past the expiry, on Redis' clock
        (10_001, 10_000, true, 11),
        (9_990, 10_000, true, 10),  // already past (a slow reply): at once, but not before it
        (nil, 10_000, true, nil),  // no expiry given (renew, or the run is stopping)
        (10_700, 10_000, false, nil),  // at its share, or leaving
    ])
    func untilNextExpiry(next: Int64?, now: Int64, wantsMore: Bool, waitMs: Int64?) {
        #expect(LeaseCadence.untilNextExpiry(nextExpiryMs: next, nowMs: now, wantsMore: wantsMore) == waitMs.map { .milliseconds($0) })
    }
}
