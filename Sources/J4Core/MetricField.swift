/// One field of a run's metric hashes (`m:<second>` and `totals`), and the rule by which
/// flush.lua merges the workers' values of it: the one place that spells the field grammar.
/// Workers write fields (``name``), readers parse them (``init(_:)``); names inside fields
/// (steps, checks, counters, error classes) never contain `:` (``MetricField/clean(_:)``).
///
/// | field | holds | merged by flush.lua |
/// |---|---|---|
/// | `started`, `ok`, `failed`, `dropped` | iterations | added |
/// | `err:<class>` | failed iterations of an error class | added |
/// | `lat:<bucket>`, `lat_sum_us` | iteration latency: buckets, sum (µs) | added |
/// | `<h>:h:<bucket>`, `<h>:sum` | histogram `<h>`: a step's `s:<step>`, a custom one's `x:<name>` | added |
/// | `max:<h>` (`max:lat` for iterations) | a histogram's largest value (µs) | maximum |
/// | `max:w:<worker>` | 1: that worker flushed in the second | maximum |
/// | `s:<step>:f`, `s:<step>:e:<class>` | failed calls of a step, by error class | added |
/// | `k:<check>:p`, `k:<check>:f` | passed and failed checks | added |
/// | `c:<name>` | a custom counter | added |
/// | `t:<n>:s`, `t:<n>:d` | started and dropped of tick n | added to the ticks hash as `<n>:s`, `<n>:d` |
/// | `slow:<member>` | one of the slowest iterations (value: its latency, µs) | into the `slow` zset, 20 kept |
public enum MetricField: Hashable, Sendable {
    case started, ok, failed, dropped
    case error(String)
    case latencyBucket(Int64)
    case latencySum
    case histogramBucket(String, Int64)
    case histogramSum(String)
    case maximum(String)
    case activeWorker(String)
    case stepFailed(String)
    case stepError(String, String)
    case check(String, passed: Bool)
    case counter(String)
    case tickStarted(Int64)
    case tickDropped(Int64)
    case slow(String)

    /// The histogram of iteration latency, as a prefix (`max:lat`, thresholds' subject).
    public static let iterationHistogram = "lat"
    /// The histogram prefix of step `name`.
    public static func step(_ name: String) -> String { "s:" + name }
    /// The histogram prefix of the custom duration metric `name`.
    public static func custom(_ name: String) -> String { "x:" + name }

    /// The field's name in the hashes.
    public var name: String {
        switch self {
        case .started: "started"
        case .ok: "ok"
        case .failed: "failed"
        case .dropped: "dropped"
        case .error(let c): "err:" + c
        case .latencyBucket(let b): "lat:\(b)"
        case .latencySum: "lat_sum_us"
        case .histogramBucket(let h, let b): "\(h):h:\(b)"
        case .histogramSum(let h): h + ":sum"
        case .maximum(let h): "max:" + h
        case .activeWorker(let w): "max:w:" + w
        case .stepFailed(let s): "s:\(s):f"
        case .stepError(let s, let c): "s:\(s):e:\(c)"
        case .check(let k, let passed): "k:\(k):" + (passed ? "p" : "f")
        case .counter(let c): "c:" + c
        case .tickStarted(let n): "t:\(n):s"
        case .tickDropped(let n): "t:\(n):d"
        case .slow(let m): "slow:" + m
        }
    }

    /// The field a name stands for; nil for a name outside the grammar.
    public init?(_ name: String) {
        let p = name.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        switch (p[0], p.count) {
        case ("started", 1): self = .started
        case ("ok", 1): self = .ok
        case ("failed", 1): self = .failed
        case ("dropped", 1): self = .dropped
        case ("lat_sum_us", 1): self = .latencySum
        case ("err", 2): self = .error(p[1])
        case ("lat", 2):
            guard let b = Int64(p[1]) else { return nil }
            self = .latencyBucket(b)
        case ("c", 2): self = .counter(p[1])
        case ("k", 3) where p[2] == "p" || p[2] == "f": self = .check(p[1], passed: p[2] == "p")
        case ("s", 3) where p[2] == "f": self = .stepFailed(p[1])
        case ("s", 4) where p[2] == "e": self = .stepError(p[1], p[3])
        case ("s", 3) where p[2] == "sum", ("x", 3) where p[2] == "sum": self = .histogramSum(p[0] + ":" + p[1])
        case ("s", 4) where p[2] == "h", ("x", 4) where p[2] == "h":
            guard let b = Int64(p[3]) else { return nil }
            self = .histogramBucket(p[0] + ":" + p[1], b)
        case ("max", 3) where p[1] == "w": self = .activeWorker(p[2])
        case ("max", 2) where p[1] == "lat": self = .maximum("lat")
        case ("max", 3) where p[1] == "s" || p[1] == "x": self = .maximum(p[1] + ":" + p[2])
        case ("t", 3) where p[2] == "s" || p[2] == "d":
            guard let n = Int64(p[1]) else { return nil }
            self = p[2] == "s" ? .tickStarted(n) : .tickDropped(n)
        case ("slow", _) where p.count >= 2: self = .slow(String(name.dropFirst(5)))
        default: return nil
        }
    }

    /// True for the fields flush.lua keeps as a maximum rather than a sum (`max:*`).
    public var keepsMaximum: Bool {
        switch self {
        case .maximum, .activeWorker: true
        default: false
        }
    }

    /// flush.lua's merge of a worker's `value` into what a hash holds (`current`, nil when
    /// the field is absent) for a field of the `m:<second>` and `totals` hashes.
    public static func merge(_ name: String, current: Int64?, value: Int64) -> Int64 {
        name.hasPrefix("max:") ? max(current ?? -1, value) : (current ?? 0) + value
    }

    /// A name as it may stand inside a field: at most 64 printable ASCII characters, `:`
    /// and anything else replaced by `_`; `_` when empty.
    public static func clean(_ name: String) -> String {
        // Most names are clean already: checked byte by byte, returned as they are.
        let utf8 = name.utf8
        if !utf8.isEmpty, utf8.count <= 64, utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7f && $0 != UInt8(ascii: ":") }) { return name }
        let cleaned = String(name.prefix(64).map { c -> Character in
            c.isASCII && !c.isNewline && c != ":" && (c.asciiValue ?? 0) >= 0x20 && (c.asciiValue ?? 0) < 0x7f ? c : "_"
        })
        return cleaned.isEmpty ? "_" : cleaned
    }
}
