import J4Core
import Synchronization

/// Counts a worker's iterations per second (server clock) until they are flushed to Redis.
///
/// Only counters and histogram buckets are kept, never raw samples, so memory does not grow
/// with the length of a run: what is flushed is dropped.
public final class MetricsRecorder: Sendable {
    struct Second {
        var counters: [String: Int64] = [:]
        var latency: [Int64: Int64] = [:]
        var latencySumUs: Int64 = 0
        var latencyMaxUs: Int64 = -1
    }
    private let seconds = Mutex<[Int64: Second]>([:])

    /// An empty recorder.
    public init() {}

    /// Adds `n` to counter `name` of `second`.
    public func add(_ name: String, _ n: Int64 = 1, second: Int64) {
        guard n != 0 else { return }
        seconds.withLock { $0[second, default: Second()].counters[name, default: 0] += n }
    }

    /// Records a finished iteration: ok or failed (with its error class), and its latency.
    public func finished(second: Int64, ok: Bool, errorClass: String?, latencyUs: Int64) {
        let bucket = LatencyBuckets.bucket(ofMicros: latencyUs)
        seconds.withLock { all in
            var s = all[second, default: Second()]
            s.counters[ok ? "ok" : "failed", default: 0] += 1
            if let errorClass { s.counters["err:" + errorClass, default: 0] += 1 }
            s.latency[bucket, default: 0] += 1
            s.latencySumUs += latencyUs
            s.latencyMaxUs = max(s.latencyMaxUs, latencyUs)
            all[second] = s
        }
    }

    /// Takes everything recorded so far, as flush fields per second, oldest first.
    public func drain() -> [(second: Int64, fields: [(String, Int64)])] {
        let taken = seconds.withLock { all in
            defer { all.removeAll() }
            return all
        }
        return taken.keys.sorted().map { sec in
            let s = taken[sec]!
            var fields = s.counters.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
            for (b, n) in s.latency.sorted(by: { $0.key < $1.key }) { fields.append(("lat:\(b)", n)) }
            if s.latencyMaxUs >= 0 {
                fields.append(("lat_sum_us", s.latencySumUs))
                fields.append(("max:lat", s.latencyMaxUs))
            }
            return (sec, fields)
        }
    }
}
