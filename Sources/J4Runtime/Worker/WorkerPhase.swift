/// One worker's life in one run. Transitions go one way: `running` to `leaving` or
/// `aborted`, `leaving` to `aborted`; nothing comes back to `running`.
public enum WorkerPhase: Sendable, Equatable {
    /// Taking leases, claiming ticks, producing load.
    case running
    /// Leaving gracefully (SIGTERM, scale-in): nothing after `lastTick` is claimed or started;
    /// the leases go back to Redis at once, the ticks already granted still run here.
    case leaving(lastTick: Int64)
    /// Aborted, or the run failed: everything in flight is cancelled, nothing more claimed.
    case aborted

    /// The last tick a worker that starts leaving at `currentTick` still runs. Arrival-rate:
    /// the next tick too, since it may already be claimed (claims go out ahead of their tick)
    /// and others can only start on the tick after; VUs end with the current tick.
    public static func lastTick(leavingAt currentTick: Int64, arrivalRate: Bool) -> Int64 {
        arrivalRate ? currentTick + 1 : currentTick
    }

    /// This phase after a graceful leave asked for at `currentTick`.
    public func leaving(at currentTick: Int64, arrivalRate: Bool) -> WorkerPhase {
        guard case .running = self else { return self }
        return .leaving(lastTick: WorkerPhase.lastTick(leavingAt: currentTick, arrivalRate: arrivalRate))
    }

    /// The last tick this worker runs when leaving, else nil.
    public var leaveTick: Int64? {
        if case .leaving(let last) = self { return last }
        return nil
    }

    /// True once leaving or aborted.
    public var isLeaving: Bool { self != .running }

    /// True once aborted.
    public var isAborted: Bool { self == .aborted }

    /// True when tick `n` may still be claimed (or, for VUs, run) in this phase.
    public func mayRun(tick n: Int64) -> Bool {
        switch self {
        case .running: true
        case .leaving(let last): n <= last
        case .aborted: false
        }
    }
}
