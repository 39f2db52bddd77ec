/// What one VU of a `vus` run does before each iteration: start it, wait for the next
/// tick's grant, or end.
///
/// A VU may iterate until its deadline, the end of the last tick granted to its shard here
/// with its number below V(n). The grant of the next tick extends the deadline; it is
/// claimed ahead of its tick, but a starved process or a slow round trip can bring it late.
/// A VU that reaches its deadline first does not end there: it waits, sending nothing, for
/// up to one tick, and goes on with the same setup (the same login, the same stream) when
/// the grant comes. Past its deadline it ends at once when its shard is going back, when the
/// worker leaves, when the current tick is at or past the run's stop, or when its shard's
/// lease is no longer trusted; and after the tick of waiting when no grant wanted it (the
/// curve went down, or the grant is later still). Before its deadline it iterates: the tick
/// it was granted runs. The decision rests on the VU's own deadline and the tick length
/// only, never on what was granted to its shard meanwhile: a VU created for one tick after
/// the next tick's grant was recorded is extended by that tick's firing, not ended.
public enum VUStep: Sendable, Equatable {
    /// Start an iteration now.
    case iterate
    /// Send nothing; look again at `until` at the latest (a grant may come before).
    case wait(until: ContinuousClock.Instant)
    /// End the VU: its teardown runs, its number is free.
    case end

    /// What the VU knows of itself, its shard and the run before an iteration.
    public struct Facts: Sendable, Equatable {
        /// Now, on the monotonic clock.
        public var now: ContinuousClock.Instant
        /// The end of the last tick granted to this VU (nil: none, or ended by the worker).
        public var deadline: ContinuousClock.Instant?
        /// The tick length.
        public var tick: Duration
        /// The run's tick at `now` (nil: no sample of Redis' clock).
        public var currentTick: Int64?
        /// The first tick not to run.
        public var stopTick: Int64
        /// The run was aborted or failed here.
        public var aborted: Bool
        /// The worker is leaving (SIGTERM, scale-in) or its shard is being handed back.
        public var leaving: Bool
        /// The shard's lease is trusted at `now`, and the VU's held pool items too.
        public var trusted: Bool

        public init(now: ContinuousClock.Instant, deadline: ContinuousClock.Instant?, tick: Duration, currentTick: Int64?,
                    stopTick: Int64, aborted: Bool, leaving: Bool, trusted: Bool) {
            self.now = now
            self.deadline = deadline
            self.tick = tick
            self.currentTick = currentTick
            self.stopTick = stopTick
            self.aborted = aborted
            self.leaving = leaving
            self.trusted = trusted
        }
    }

    /// The step for `facts`.
    public static func decide(_ f: Facts) -> VUStep {
        guard !f.aborted, f.trusted, let deadline = f.deadline else { return .end }
        if f.now < deadline { return .iterate }
        // Past the last granted tick: wait for the next grant unless nothing can come.
        guard !f.leaving, let n = f.currentTick, n < f.stopTick else { return .end }
        let lastWait = deadline + f.tick
        return f.now < lastWait ? .wait(until: lastWait) : .end
    }
}
