import Foundation
import J4Core

/// A threshold's verdict on a run's merged metrics.
public struct ThresholdResult: Sendable, Codable, Equatable {
    /// The threshold as written.
    public var threshold: String
    /// The measured value (ms, percent or per second); nil when there was no data.
    public var value: Double?
    /// Whether it held. No data is a failure at the end of a run.
    public var ok: Bool
    /// Whether it aborts the run when it fails.
    public var abortOnFail: Bool

    /// The value with its unit, or `no data`.
    public var shown: String {
        guard let value else { return "no data" }
        guard let t = Threshold.parse(threshold) else { return String(format: "%.3f", value) }
        switch t.metric {
        case .quantile, .max, .avg: return String(format: "%.2fms", value)
        case .errors, .dropped, .checks: return String(format: "%.2f%%", value)
        case .rate: return String(format: "%.2f/s", value)
        }
    }
}

/// Evaluates thresholds on a run's merged totals (the `totals` hash: counters and
/// histogram buckets of every worker, merged by Redis).
public enum ThresholdEvaluator {
    /// The verdict of each threshold. `durationS` is the run's length so far (for `rate`).
    public static func evaluate(_ thresholds: [Threshold], totals: [String: String], durationS: Double?) -> [ThresholdResult] {
        thresholds.map { t in
            let v = value(t, totals: totals, durationS: durationS)
            return ThresholdResult(threshold: t.text, value: v, ok: v.map { t.comparison.holds($0, t.limit) } ?? false, abortOnFail: t.abortOnFail)
        }
    }

    /// What `t` measures in `totals`, nil when there is no data for it.
    public static func value(_ t: Threshold, totals: [String: String], durationS: Double?) -> Double? {
        func n(_ f: MetricField) -> Double { Double(totals[f.name] ?? "0") ?? 0 }
        func percent(_ part: Double, _ whole: Double) -> Double? { whole > 0 ? 100 * part / whole : nil }
        let subject = t.subject.map(MetricField.clean)
        switch t.metric {
        case .quantile, .max, .avg:
            let prefix: String
            if let subject {
                let step = MetricField.step(subject)
                prefix = totals.keys.contains { if case .histogramBucket(step, _) = MetricField($0) { true } else { false } } ? step : MetricField.custom(subject)
            } else {
                prefix = MetricField.iterationHistogram
            }
            let (histogram, sumUs, maxUs) = histogramOf(prefix, totals)
            let count = histogram.values.reduce(0, +)
            guard count > 0 else { return nil }
            switch t.metric {
            case .quantile(let q): return LatencyBuckets.quantile(q, of: histogram).map { Double(min($0, maxUs ?? $0)) / 1000 }
            case .max: return maxUs.map { Double($0) / 1000 }
            default: return Double(sumUs) / Double(count) / 1000
            }
        case .errors:
            if let subject {
                let (histogram, _, _) = histogramOf(MetricField.step(subject), totals)
                return percent(n(.stepFailed(subject)), Double(histogram.values.reduce(0, +)))
            }
            return percent(n(.failed), n(.ok) + n(.failed))
        case .dropped:
            return percent(n(.dropped), n(.started) + n(.dropped))
        case .checks:
            var pass = 0.0, fail = 0.0
            for (key, text) in totals {
                guard case .check(let name, let passed) = MetricField(key), subject == nil || name == subject, let v = Double(text) else { continue }
                if passed { pass += v } else { fail += v }
            }
            return percent(pass, pass + fail)
        case .rate:
            guard let durationS, durationS > 0 else { return nil }
            return n(.started) / durationS
        }
    }

    /// The buckets, sum and maximum (µs) of the histogram stored under `prefix` (`lat` for
    /// iterations, `s:<step>` for a step, `x:<name>` for a custom metric).
    public static func histogramOf(_ prefix: String, _ totals: [String: String]) -> (buckets: [Int64: Int64], sumUs: Int64, maxUs: Int64?) {
        var buckets: [Int64: Int64] = [:]
        let iterations = prefix == MetricField.iterationHistogram
        for (key, text) in totals {
            guard let v = Int64(text) else { continue }
            switch MetricField(key) {
            case .latencyBucket(let b) where iterations: buckets[b] = v
            case .histogramBucket(prefix, let b) where !iterations: buckets[b] = v
            default: break
            }
        }
        let sum = Int64(totals[(iterations ? MetricField.latencySum : .histogramSum(prefix)).name] ?? "0") ?? 0
        let maxUs = totals[MetricField.maximum(prefix).name].flatMap { Int64($0) }.flatMap { $0 < 0 ? nil : $0 }
        return (buckets, sum, maxUs)
    }
}
