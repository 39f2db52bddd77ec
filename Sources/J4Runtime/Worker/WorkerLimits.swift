import J4Core
import Synchronization

/// What one worker will do, whatever a run asks: where it may send load, and how much.
/// Set by the worker's own flags (`--allow-target`, `--max-rate`, `--max-vus`) or
/// environment, never by Redis, so a run definition cannot lift them.
public struct WorkerLimits: Sendable {
    /// Where load may go; nil sends it wherever a run says.
    public var allowlist: TargetAllowlist?
    /// Most iterations this worker starts per second, across its arrival-rate runs.
    public var maxRate: Int?
    /// Most VUs busy at once on this worker, across its runs: VUs running (`vus` model) and
    /// iterations in flight (arrival-rate, one VU each).
    public var maxVUs: Int?

    /// No limits.
    public static let none = WorkerLimits()

    /// Limits as given.
    public init(allowlist: TargetAllowlist? = nil, maxRate: Int? = nil, maxVUs: Int? = nil) {
        self.allowlist = allowlist
        self.maxRate = maxRate
        self.maxVUs = maxVUs
    }
}

/// The worker-wide counters behind ``WorkerLimits``' caps, shared by every run it serves.
final class WorkerCaps: Sendable {
    let limits: WorkerLimits
    /// Iterations started in the current second (the run's intended second).
    let window = Mutex<(second: Int64, count: Int)>((0, 0))
    let busyVUs = Atomic<Int>(0)

    init(_ limits: WorkerLimits) { self.limits = limits }

    /// Takes one start in `second`, or says the rate cap is reached.
    func takeStart(second: Int64) -> Bool {
        guard let max = limits.maxRate else { return true }
        return window.withLock { w in
            // A late start for an earlier second counts against the current one.
            if second > w.second { w = (second, 0) }
            guard w.count < max else { return false }
            w.count += 1
            return true
        }
    }

    /// Takes one VU slot, or says the VU cap is reached.
    func takeVU() -> Bool {
        guard let max = limits.maxVUs else { return true }
        while true {
            let now = busyVUs.load(ordering: .relaxed)
            guard now < max else { return false }
            if busyVUs.compareExchange(expected: now, desired: now + 1, ordering: .relaxed).exchanged { return true }
        }
    }

    /// Gives back a slot ``takeVU()`` took.
    func returnVU() {
        guard limits.maxVUs != nil else { return }
        busyVUs.subtract(1, ordering: .relaxed)
    }
}
