/// How long a connection waits before it tries again after failures: exponential from
/// `min`, doubling with each failure in a row, capped at `max`, then scaled by a jitter in
/// [0.5, 1] so that many clients cut off at once do not come back in step.
public struct Backoff: Sendable, Equatable {
    /// The wait after the first failure (before jitter).
    public let min: Duration
    /// The longest wait (before jitter).
    public let max: Duration

    public init(min: Duration, max: Duration) {
        self.min = min
        self.max = max
    }

    /// The wait after `failures` failures in a row (at least 1), with `jitter` in [0.5, 1].
    public func delay(afterFailures failures: Int, jitter: Double) -> Duration {
        let doublings = Swift.min(Swift.max(failures, 1) - 1, 16)
        return Swift.min(min * (1 << doublings), max) * jitter
    }
}
