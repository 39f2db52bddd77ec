/// A pass/fail criterion of a run, written like k6's: `p99 < 250ms`, `p95(login) < 100ms`,
/// `max(checkout) <= 2s`, `avg < 50ms`, `errors < 1%`, `errors(login) < 0.5%`,
/// `dropped < 1%`, `checks > 99%`, `checks(cart holds the product) >= 99.9%`, `rate >= 95`.
public struct Threshold: Sendable, Hashable {
    /// What is measured.
    public enum Metric: Sendable, Hashable {
        /// A latency quantile, 0 < q < 1 (`p99` is 0.99, `p99.9` is 0.999).
        case quantile(Double)
        /// The largest latency.
        case max
        /// The mean latency.
        case avg
        /// Failed iterations (or failed calls of a step), in percent.
        case errors
        /// Dropped iterations, in percent of started + dropped.
        case dropped
        /// Checks passed, in percent.
        case checks
        /// Started iterations per second, over the run.
        case rate
    }
    /// A comparison.
    public enum Comparison: String, Sendable, Hashable, CaseIterable {
        case less = "<", lessOrEqual = "<=", greater = ">", greaterOrEqual = ">="

        /// Whether `value` (left) compared with `limit` (right) holds.
        public func holds(_ value: Double, _ limit: Double) -> Bool {
            switch self {
            case .less: return value < limit
            case .lessOrEqual: return value <= limit
            case .greater: return value > limit
            case .greaterOrEqual: return value >= limit
            }
        }
    }

    /// The text as written.
    public var text: String
    public var metric: Metric
    /// A step, custom duration metric (trend) or check name; nil: the iterations.
    public var subject: String?
    public var comparison: Comparison
    /// The limit: milliseconds for latencies, percent for errors, dropped and checks,
    /// iterations per second for rate.
    public var limit: Double
    /// Abort the run as soon as this threshold fails while it runs.
    public var abortOnFail = false
    /// How long after the start before an abort may happen (data needs time to settle).
    public var delayAbortEvalMs: Int64 = 0

    /// True for metrics measured in milliseconds.
    public var isLatency: Bool {
        switch metric {
        case .quantile, .max, .avg: return true
        default: return false
        }
    }

    /// The accepted forms, for error messages.
    public static let forms = "METRIC[(NAME)] OP VALUE with METRIC p50..p99.9, max, avg (with ms, s or us), errors, dropped, checks (with %), or rate (per second), and OP <, <=, > or >=, e.g. \"p99(login) < 250ms\""

    /// Parses `text`; nil when it is not one of the ``forms``.
    public static func parse(_ text: String) -> Threshold? {
        let s = text.trimmingCharacters(in: .whitespaces)
        guard let m = s.wholeMatch(of: /([a-z]+[0-9]*(?:\.[0-9]+)?)\s*(?:\(([^()]{1,64})\))?\s*(<=|>=|<|>)\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|us|%|\/s)?/) else { return nil }
        let name = String(m.1)
        let subject = m.2.map { String($0).trimmingCharacters(in: .whitespaces) }
        guard let comparison = Comparison(rawValue: String(m.3)), let number = Double(m.4) else { return nil }
        let unit = m.5.map(String.init)
        let metric: Metric
        switch name {
        case "max": metric = .max
        case "avg": metric = .avg
        case "errors": metric = .errors
        case "dropped": metric = .dropped
        case "checks": metric = .checks
        case "rate": metric = .rate
        default:
            guard name.hasPrefix("p"), let p = Double(name.dropFirst()), p > 0, p < 100 else { return nil }
            metric = .quantile((p * 1000).rounded() / 100_000)  // 99.9 → 0.999 exactly as written
        }
        var limit = number
        switch metric {
        case .quantile, .max, .avg:
            switch unit {
            case nil, "ms": break
            case "s": limit *= 1000
            case "us": limit /= 1000
            default: return nil
            }
        case .errors, .dropped, .checks:
            guard unit == nil || unit == "%" else { return nil }
            guard limit <= 100 else { return nil }
        case .rate:
            guard unit == nil || unit == "/s", subject == nil else { return nil }
        }
        if metric == .dropped, subject != nil { return nil }
        return Threshold(text: s, metric: metric, subject: subject?.isEmpty == true ? nil : subject, comparison: comparison, limit: limit)
    }
}
