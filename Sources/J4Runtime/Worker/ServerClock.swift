import Synchronization

/// Maps Redis' clock (the only clock for ticks and leases) to this process' monotonic clock.
///
/// Each script reply carries Redis' time; the sample is taken at the midpoint of the round
/// trip. A new sample replaces the anchor when its round trip is no worse than twice the
/// anchor's, or when the anchor is older than 5 s, so one slow reply cannot skew the map.
public final class ServerClock: Sendable {
    struct Anchor {
        var instant: ContinuousClock.Instant
        var serverMs: Double
        var rtt: Duration
    }
    private let anchor = Mutex<Anchor?>(nil)

    /// A clock with no sample yet.
    public init() {}

    /// Records that a request sent at `sent` and answered at `received` saw Redis at `serverMs`.
    public func observe(sent: ContinuousClock.Instant, received: ContinuousClock.Instant, serverMs: Int64) {
        let rtt = sent.duration(to: received)
        let mid = sent.advanced(by: rtt / 2)
        anchor.withLock { a in
            if let current = a, rtt > current.rtt * 2 + .milliseconds(1), current.instant.duration(to: mid) < .seconds(5) { return }
            a = Anchor(instant: mid, serverMs: Double(serverMs), rtt: rtt)
        }
    }

    /// True once a sample has been recorded.
    public var isSynchronised: Bool { anchor.withLock { $0 != nil } }

    /// The local instant at which Redis' clock reads `serverMs`.
    public func instant(forServerMs serverMs: Double) -> ContinuousClock.Instant? {
        anchor.withLock { a in
            guard let a else { return nil }
            let deltaNs = (serverMs - a.serverMs) * 1_000_000
            return a.instant.advanced(by: .nanoseconds(Int64(deltaNs.rounded())))
        }
    }

    /// Redis' clock at local instant `instant`, in ms.
    public func serverMs(at instant: ContinuousClock.Instant) -> Double? {
        anchor.withLock { a in
            guard let a else { return nil }
            let d = a.instant.duration(to: instant)
            let (s, atto) = d.components
            return a.serverMs + Double(s) * 1000 + Double(atto) / 1e15
        }
    }
}
