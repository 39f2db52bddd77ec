import J4Core
import Synchronization

/// Counts a worker's iterations, steps, checks and custom metrics per second (server clock)
/// until they are flushed to Redis.
///
/// Only counters and histogram buckets are kept, never raw samples, so memory does not grow
/// with the length of a run: what is flushed is dropped.
package final class MetricsRecorder: Sendable {
    struct Histogram {
        var buckets: [Int64: Int64] = [:]
        var sumUs: Int64 = 0
        var maxUs: Int64 = -1

        mutating func add(_ micros: Int64) {
            buckets[LatencyBuckets.bucket(ofMicros: micros), default: 0] += 1
            sumUs += micros
            maxUs = max(maxUs, micros)
        }
    }
    struct Second {
        var counters: [String: Int64] = [:]
        /// Iteration latency (``MetricField`` `lat:<b>`, `lat_sum_us`, `max:lat`).
        var latency = Histogram()
        /// Step and custom histograms by prefix (``MetricField`` `<prefix>:h:<b>`, `<prefix>:sum`, `max:<prefix>`).
        var histograms: [String: Histogram] = [:]
    }
    private let seconds = Mutex<[Int64: Second]>([:])
    /// The slowest iterations since the last drain: (latency µs, member).
    private let slowest = Mutex<[(Int64, String)]>([])
    /// How many of the slowest iterations each drain keeps.
    static let slowKept = 5

    /// An empty recorder.
    public init() {}

    /// Adds `n` to the counter `field` of `second`.
    public func add(_ field: MetricField, _ n: Int64 = 1, second: Int64) {
        guard n != 0 else { return }
        seconds.withLock { $0[second, default: Second()].counters[field.name, default: 0] += n }
    }

    /// Records one value (µs) in the histogram `prefix` of `second`.
    public func observe(_ prefix: String, micros: Int64, second: Int64) {
        seconds.withLock { $0[second, default: Second()].histograms[prefix, default: Histogram()].add(max(0, micros)) }
    }

    /// Records a finished iteration: ok or failed (with its error class), and its latency.
    public func finished(second: Int64, ok: Bool, errorClass: String?, latencyUs: Int64) {
        // In place: copying a Second out and back would copy its dictionaries each time.
        seconds.withLock { all in
            all[second, default: Second()].counters[(ok ? MetricField.ok : .failed).name, default: 0] += 1
            if let errorClass { all[second, default: Second()].counters[MetricField.error(MetricField.clean(errorClass)).name, default: 0] += 1 }
            all[second, default: Second()].latency.add(max(0, latencyUs))
        }
    }

    /// Notes an iteration among the slowest if it is: `member` names it (trace id, worker,
    /// VU, iteration, time).
    public func noteSlow(latencyUs: Int64, member: @autoclosure () -> String) {
        slowest.withLock { s in
            // Every iteration comes here: the least is found without building an array.
            if s.count >= MetricsRecorder.slowKept, let least = s.min(by: { $0.0 < $1.0 })?.0, latencyUs <= least { return }
            s.append((latencyUs, member()))
            if s.count > MetricsRecorder.slowKept {
                s.sort { $0.0 > $1.0 }
                s.removeLast(s.count - MetricsRecorder.slowKept)
            }
        }
    }

    /// Takes what was recorded for seconds before `before` (everything when nil), as flush
    /// fields per second, oldest first. A worker leaves the current second for its next flush,
    /// so that it flushes once per second, not twice (one Redis call less per second).
    public func drain(before: Int64? = nil) -> [(second: Int64, fields: [(String, Int64)])] {
        let taken = seconds.withLock { all -> [Int64: Second] in
            guard let before else {
                defer { all.removeAll() }
                return all
            }
            var out: [Int64: Second] = [:]
            for key in all.keys where key < before { out[key] = all.removeValue(forKey: key) }
            return out
        }
        var out = drainSeconds(taken)
        // The slowest iterations ride with the first second's fields; with none, they wait.
        guard !out.isEmpty else { return out }
        let slow = slowest.withLock { s in
            defer { s.removeAll() }
            return s
        }
        out[0].fields += slow.map { (MetricField.slow($0.1).name, $0.0) }
        return out
    }

    private func drainSeconds(_ taken: [Int64: Second]) -> [(second: Int64, fields: [(String, Int64)])] {
        taken.keys.sorted().map { sec in
            let s = taken[sec]!
            var fields = s.counters.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
            if s.latency.maxUs >= 0 {
                for (b, n) in s.latency.buckets.sorted(by: { $0.key < $1.key }) { fields.append((MetricField.latencyBucket(b).name, n)) }
                fields.append((MetricField.latencySum.name, s.latency.sumUs))
                fields.append((MetricField.maximum(MetricField.iterationHistogram).name, s.latency.maxUs))
            }
            for (prefix, h) in s.histograms.sorted(by: { $0.key < $1.key }) {
                for (b, n) in h.buckets.sorted(by: { $0.key < $1.key }) { fields.append((MetricField.histogramBucket(prefix, b).name, n)) }
                fields.append((MetricField.histogramSum(prefix).name, h.sumUs))
                fields.append((MetricField.maximum(prefix).name, h.maxUs))
            }
            return (sec, fields)
        }
    }

    /// A duration in whole microseconds (never negative).
    public static func micros(_ d: Duration) -> Int64 {
        let (s, atto) = d.components
        return max(0, s * 1_000_000 + atto / 1_000_000_000_000)
    }
}
