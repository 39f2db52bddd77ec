/// The leases one worker holds in one run, and every decision taken from them: which shards
/// may produce load now, which to claim a tick with, which to hand back, which to forget.
/// Pure: the clock is a parameter, so each rule is a row in a table test.
///
/// ## Trust
///
/// A lease confirmed by a reply to a request *sent* at local instant `s` is trusted until
/// `s + TTL − margin` on the monotonic clock. Redis set its expiry to (its time when the
/// script ran) + TTL, which is later than `s` on any clock that agrees on durations, so a
/// shard whose lease cannot be confirmed stops producing load before Redis would give it to
/// another worker, whether or not Redis can be reached.
///
/// A lease handed back on purpose (leaving, shedding) is no longer renewed or claimed with,
/// but the ticks already granted with it still run here: a grant is this worker's alone.
///
/// In a `vus` run a lease over the fair share is first *drained*: still renewed, no longer
/// claimed with, while its VUs finish their current iteration; only then is it handed back,
/// so that no VU number runs on two workers at once.
public struct LeaseTable: Sendable, Equatable {
    /// One lease.
    public struct Lease: Sendable, Equatable {
        /// The token acquire.lua gave it.
        public var token: String
        /// Trusted until this instant (see the type's notes).
        public var validUntil: ContinuousClock.Instant
        /// The last tick claimed with it (-1: none).
        public var claimedThrough: Int64 = -1
        /// Handed back: no longer renewed or claimed with; its granted ticks still run.
        public var handedOff = false
        /// Over the fair share in a `vus` run: renewed, not claimed with, handed back once
        /// its VUs have ended.
        public var draining = false

        /// A lease just acquired.
        public init(token: String, validUntil: ContinuousClock.Instant, claimedThrough: Int64 = -1, handedOff: Bool = false, draining: Bool = false) {
            self.token = token
            self.validUntil = validUntil
            self.claimedThrough = claimedThrough
            self.handedOff = handedOff
            self.draining = draining
        }
    }

    /// Shard → lease.
    public private(set) var leases: [Int: Lease] = [:]
    /// This worker's fair share of the run's shards, as Redis last said.
    public var cap = Int.max

    /// An empty table.
    public init() {}

    /// The leases to renew: those not handed back (draining ones included), by shard.
    public var held: [(shard: Int, token: String)] {
        leases.filter { !$0.value.handedOff }.sorted { $0.key < $1.key }.map { ($0.key, $0.value.token) }
    }

    /// How many leases count towards the fair share: neither handed back nor draining.
    public var heldCount: Int { leases.values.count { !$0.handedOff && !$0.draining } }

    /// True while fewer leases are held than the fair share.
    public var wantsMore: Bool { heldCount < cap }

    /// The shards to claim a tick with, at `now`: every lease not handed back and trusted now.
    /// Not "trusted until the tick starts": the claim itself renews each lease Redis still
    /// holds, and claim.lua fences one that lapsed, so a lease near the end of its trust is
    /// claimed with, not skipped (skipping it left the tick unclaimed for that shard).
    public func forClaim(at now: ContinuousClock.Instant) -> [(shard: Int, token: String)] {
        leases.filter { !$0.value.handedOff && !$0.value.draining && $0.value.validUntil > now }.sorted { $0.key < $1.key }.map { ($0.key, $0.value.token) }
    }

    /// True when load of `shard` granted to this worker may run at `now`: its lease is trusted,
    /// or was handed back on purpose (its granted ticks are still this worker's alone).
    public func covers(_ shard: Int, at now: ContinuousClock.Instant) -> Bool {
        guard let lease = leases[shard] else { return false }
        return lease.handedOff || lease.validUntil > now
    }

    /// True when `shard`'s lease is being given up (draining or handed back): none of its
    /// VUs may start or be extended here, even for a tick already granted.
    public func isGoingBack(_ shard: Int) -> Bool {
        guard let lease = leases[shard] else { return false }
        return lease.draining || lease.handedOff
    }

    /// True when `shard`'s lease is held (not handed back; draining counts) and trusted at
    /// `now`: a VU of that shard may go on running.
    public func trusts(_ shard: Int, at now: ContinuousClock.Instant) -> Bool {
        guard let lease = leases[shard] else { return false }
        return !lease.handedOff && lease.validUntil > now
    }

    /// Applies a lease reply (acquire or renew) confirmed by a request sent when `validUntil`
    /// was `sent + TTL − margin`: `lost` shards are forgotten (unless handed back), `held`
    /// ones renewed, new tokens added. Returns the shards newly acquired.
    public mutating func apply(held reply: [(shard: Int, token: String)], lost: [Int], cap: Int, validUntil: ContinuousClock.Instant) -> [Int] {
        var fresh: [Int] = []
        for shard in lost where leases[shard]?.handedOff != true { leases[shard] = nil }
        for (shard, token) in reply {
            if var lease = leases[shard], lease.token == token, !lease.handedOff {
                lease.validUntil = max(lease.validUntil, validUntil)
                leases[shard] = lease
            } else {
                leases[shard] = Lease(token: token, validUntil: validUntil)
                fresh.append(shard)
            }
        }
        self.cap = cap
        return fresh.sorted()
    }

    /// A claim made with `pairs` renewed the leases in `renewed` (those Redis still held).
    public mutating func renewedByClaim(_ pairs: [(shard: Int, token: String)], renewed: Set<Int>, validUntil: ContinuousClock.Instant) {
        for (shard, token) in pairs where renewed.contains(shard) {
            if var lease = leases[shard], lease.token == token, !lease.handedOff {
                lease.validUntil = max(lease.validUntil, validUntil)
                leases[shard] = lease
            }
        }
    }

    /// What a new fair share asks of the lease loop.
    public enum ShareChange: Sendable, Equatable {
        /// Nothing: the worker holds its share (or is leaving, or the reply had no cap).
        case none
        /// Below the share (a worker died or left): acquire now.
        case room
        /// Above the share (a worker joined): shed the excess now.
        case over
    }

    /// Takes the fair share a claim reply carried (nil: none) and says what it asks for at
    /// once, rather than at the next renewal, which claims that keep every lease fresh may put
    /// off by two thirds of a TTL. A worker that is leaving neither takes nor sheds.
    public mutating func noteShare(_ cap: Int?, leaving: Bool) -> ShareChange {
        guard let cap else { return .none }
        self.cap = cap
        if leaving { return .none }
        return heldCount < cap ? .room : heldCount > cap ? .over : .none
    }

    /// Tick `n` was granted for `shards`.
    public mutating func granted(_ shards: some Sequence<Int>, tick n: Int64) {
        for shard in shards {
            guard var lease = leases[shard] else { continue }
            lease.claimedThrough = max(lease.claimedThrough, n)
            leases[shard] = lease
        }
    }

    /// Sheds the leases above the fair share, the highest shards first, and returns them.
    /// Arrival-rate (`drain` false): they are marked handed back and go back to Redis at
    /// once, so others can claim the ticks after those already granted here. VUs (`drain`
    /// true): they are marked draining, and go back with ``handOff(_:)`` once their VUs end.
    public mutating func shedToCap(drain: Bool = false) -> [(shard: Int, token: String)] {
        let active = leases.filter { !$0.value.handedOff && !$0.value.draining }.keys.sorted()
        guard active.count > cap else { return [] }
        var out: [(shard: Int, token: String)] = []
        for shard in active.suffix(active.count - cap) {
            guard var lease = leases[shard] else { continue }
            if drain { lease.draining = true } else { lease.handedOff = true }
            leases[shard] = lease
            out.append((shard, lease.token))
        }
        return out
    }

    /// Marks the leases of `shards` handed back (those not already) and returns them.
    public mutating func handOff(_ shards: some Sequence<Int>) -> [(shard: Int, token: String)] {
        var out: [(shard: Int, token: String)] = []
        for shard in shards {
            guard var lease = leases[shard], !lease.handedOff else { continue }
            lease.handedOff = true
            leases[shard] = lease
            out.append((shard, lease.token))
        }
        return out.sorted { $0.shard < $1.shard }
    }

    /// Marks every lease handed back and returns those that were not already.
    public mutating func handOffAll() -> [(shard: Int, token: String)] { handOff(Array(leases.keys)) }

    /// Forgets handed-back leases whose last granted tick ended before `currentTick − 1`.
    public mutating func forgetSettled(currentTick: Int64) {
        for (shard, lease) in leases where lease.handedOff && lease.claimedThrough < currentTick - 1 {
            leases[shard] = nil
        }
    }
}

/// When the lease loop next calls Redis, and whether it may skip a renewal. Pure.
public enum LeaseCadence {
    /// True when this cycle's renewal may be skipped: the tick loop is claiming (each claim
    /// renews the leases it is made with), every lease stays trusted past the next cycle,
    /// and the last cycle did renew. Never before the run has started or a tick has been
    /// claimed: then no claim renews anything, and the renewal is also how a worker learns
    /// that the run has started and what its fair share is (skipping it there left a
    /// worker with a 10 s TTL unaware of the start until tick 6).
    public static func mayRelyOnClaims(
        table: LeaseTable, now: ContinuousClock.Instant, interval: Duration, claiming: Bool, taking: Bool, leaving: Bool, renewedLastCycle: Bool
    ) -> Bool {
        guard claiming, !taking, !leaving, renewedLastCycle, !table.held.isEmpty else { return false }
        return table.leases.values.allSatisfy { $0.handedOff || $0.validUntil - now > interval + .milliseconds(100) }
    }

    /// How long to wait before the next cycle: a third of the TTL; 200 ms while the worker
    /// holds less than its fair share (for its first 15 cycles), and 250 ms while the run
    /// has not started, so that tick 0's start is known in time whatever the TTL.
    public static func wait(interval: Duration, hungry: Bool, started: Bool) -> Duration {
        if hungry { return min(interval, .milliseconds(200)) }
        if !started { return min(interval, .milliseconds(250)) }
        return interval
    }

    /// For a worker below its fair share: how long after an acquire reply (Redis' clock
    /// `nowMs`) the earliest lease held now runs out (`nextExpiryMs`), plus 10 ms so that it
    /// has run out on Redis' clock when the next acquire arrives. The lease loop asks again
    /// then if that is sooner than its cadence: a worker that holds no shard sends no claim,
    /// so without it a dead worker's shard waited up to a third of a TTL more for a taker.
    /// Nil when there is nothing to wait for (at its share, leaving, or no expiry given).
    public static func untilNextExpiry(nextExpiryMs: Int64?, nowMs: Int64, wantsMore: Bool) -> Duration? {
        guard wantsMore, let next = nextExpiryMs else { return nil }
        return .milliseconds(max(0, next - nowMs) + 10)
    }
}
