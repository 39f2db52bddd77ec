/// Why an iteration granted to this worker was not started. Each is counted as `dropped` in
/// the run's metrics and in the tick's `<n>:d`; the worker logs the counts by reason.
public enum DropReason: String, CaseIterable, Sendable {
    /// The worker had no sample of Redis' clock, so it could not place the iteration in time.
    case noClock = "no clock"
    /// The process woke more than the late tolerance after the iteration's intended start (a
    /// takeover mid-tick, a stalled process, an overloaded machine). Late is dropped, not bunched.
    case late
    /// The run was aborted (or failed) while its tick was firing.
    case aborted
    /// The tick is at or past the run's stop tick, or past the last tick of a worker leaving.
    case stopped
    /// The shard's lease is no longer trusted here: it may be another worker's by now.
    case lease
    /// The run's `maxInFlight` iterations are already in flight on this worker.
    case maxInFlight
    /// The worker's `--max-vus` cap.
    case maxVUs = "max-vus"
    /// The worker's `--max-rate` cap.
    case maxRate = "max-rate"
}

/// The decision to start one arrival-rate iteration, or drop it and why.
///
/// It is taken once per iteration, when the worker wakes for it, from facts that do not
/// depend on how the wake-up went: the iteration's intended start (its place on the curve,
/// always inside its tick), how late the process is against that start, the run's stop and
/// the worker's leave tick, the lease of its shard and the in-flight count. In particular an
/// iteration intended for the last instant of its tick is started when the process wakes a
/// little after the tick's end: it is late by the wake-up, not by the tick.
///
/// The worker's caps (`--max-vus`, `--max-rate`) are counters with side effects and are
/// checked after an admission, by the caller.
public struct Admission: Sendable, Equatable {
    /// How far behind its intended start an iteration may still start: max(20 ms, tick / 10).
    public let lateTolerance: Duration
    /// The run's `maxInFlight`.
    public let maxInFlight: Int

    /// The rule for a run with tick length `tick` and `maxInFlight`.
    public init(tick: Duration, maxInFlight: Int) {
        lateTolerance = Admission.lateTolerance(tick: tick)
        self.maxInFlight = maxInFlight
    }

    /// max(20 ms, tick / 10).
    public static func lateTolerance(tick: Duration) -> Duration { max(.milliseconds(20), tick / 10) }

    /// What the worker knows of the iteration's tick and shard when it wakes for it.
    public struct Facts: Sendable, Equatable {
        /// The iteration's tick.
        public var tick: Int64
        /// The local instant of its intended start (nil: no clock sample yet).
        public var intendedAt: ContinuousClock.Instant?
        /// Now, on the monotonic clock.
        public var now: ContinuousClock.Instant
        /// The first tick not to run (the run's stop tick).
        public var stopTick: Int64
        /// The last tick this worker runs when it is leaving (nil: not leaving).
        public var leaveTick: Int64?
        /// The run was aborted, or the firing task cancelled.
        public var aborted: Bool
        /// The shard's lease is trusted here now (``LeaseTable/covers(_:at:)``).
        public var leaseTrusted: Bool
        /// Iterations in flight on this worker for this run.
        public var inFlight: Int

        /// The facts, named.
        public init(
            tick: Int64, intendedAt: ContinuousClock.Instant?, now: ContinuousClock.Instant, stopTick: Int64, leaveTick: Int64?, aborted: Bool,
            leaseTrusted: Bool, inFlight: Int
        ) {
            self.tick = tick
            self.intendedAt = intendedAt
            self.now = now
            self.stopTick = stopTick
            self.leaveTick = leaveTick
            self.aborted = aborted
            self.leaseTrusted = leaseTrusted
            self.inFlight = inFlight
        }
    }

    /// nil to start the iteration, else why it is dropped. The reasons are tried in the order
    /// a user would look for them: the clock, the run's state, the tick, the lease, lateness,
    /// then the in-flight bound.
    public func decide(_ f: Facts) -> DropReason? {
        guard let at = f.intendedAt else { return .noClock }
        if f.aborted { return .aborted }
        if f.tick >= f.stopTick { return .stopped }
        if let last = f.leaveTick, f.tick > last { return .stopped }
        guard f.leaseTrusted else { return .lease }
        if at.duration(to: f.now) > lateTolerance { return .late }
        if f.inFlight >= maxInFlight { return .maxInFlight }
        return nil
    }
}
