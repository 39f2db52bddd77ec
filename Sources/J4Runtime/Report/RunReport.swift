import Foundation
import J4Core
import J4Redis

/// Everything `j4 report` shows about a run: its summary, per-second series of the whole
/// cluster (merged in Redis), per-step series, and its events.
public struct RunReport: Sendable, Codable {
    /// One second of the run, merged over every worker; or, for the older part of a long
    /// run (folded by the supervisor), a minute or the part of one the run covers.
    public struct Second: Sendable, Codable, Equatable {
        /// Seconds from tick 0 to the entry's start.
        public var t: Int64
        /// Unix second of the entry's start.
        public var unix: Int64
        /// How many seconds the entry covers: 1, or up to 60 for a folded minute. Counts are
        /// over the whole entry; divide by this for per-second rates.
        public var seconds: Int64
        /// What the curve asked for: iterations per second (arrival-rate) or VUs (vus).
        public var target: Double
        public var started: Int64
        public var ok: Int64
        public var failed: Int64
        public var dropped: Int64
        /// Failed iterations by error class.
        public var errors: [String: Int64]
        /// Iteration latency in this second (ms).
        public var p50: Double?, p95: Double?, p99: Double?, max: Double?
        /// Workers that reported metrics for this second.
        public var workers: Int
    }
    /// One second (or folded minute, as in ``Second``) of one step.
    public struct StepSecond: Sendable, Codable, Equatable {
        public var t: Int64
        public var seconds: Int64
        public var count: Int64
        public var failed: Int64
        public var p95: Double?
    }
    /// One event of the run.
    public struct Event: Sendable, Codable, Equatable {
        /// Seconds from tick 0 (negative before it).
        public var t: Double
        public var type: String
        /// The event's other fields.
        public var fields: [String: String]
    }

    /// One of the slowest iterations, with its trace id to look it up in Jaeger or Tempo.
    public struct Slow: Sendable, Codable, Equatable {
        public var trace_id: String
        public var worker: String
        public var vu: Int64
        public var iteration: Int64
        /// Unix ms of its intended (arrival-rate) or actual (vus) start.
        public var at_ms: Int64
        public var latency_ms: Double
    }

    public var summary: RunSummary
    /// The 20 slowest iterations of the run, slowest first.
    public var slowest: [Slow]
    public var series: [Second]
    public var steps: [String: [StepSecond]]
    public var events: [Event]

    /// Reads the run's summary, its per-second hashes from tick 0 to its end (or now) and its
    /// events; nil when there is no such run.
    public static func load(_ run: String, on c: RedisConnection) async throws -> RunReport? {
        guard let info = try await RunStore.info(run, on: c), let summary = try await RunSummary.load(run, on: c) else { return nil }
        let keys = RunKeys(run: run)
        var series: [Second] = []
        var steps: [String: [StepSecond]] = [:]
        if let startMs = info.startMs {
            let first = startMs / 1000
            let nowMs = Int64(Date().timeIntervalSince1970 * 1000)
            let last = min(max(first, ((info.finishedMs ?? nowMs) + 999) / 1000), first + 7 * 86_400)
            // Seconds below the cursor were folded into their minutes (Compaction). A fold while
            // they are read (a live run) would leave a hole: then they are read again.
            func cursor() async throws -> Int64 { min(last + 1, Int64(try await c.send(["HGET", keys.ctl, "compacted_s"]).string ?? "") ?? first) }
            var folded = try await cursor()
            for _ in 0..<3 {
                let read = try await loadSeries(keys: keys, first: first, last: last, folded: folded, startMs: startMs, curve: info.curve, on: c)
                let now = try await cursor()
                (series, steps) = read
                if now == folded { break }
                folded = now
            }
        }
        let start = Double(info.startMs ?? 0)
        let events: [Event] = try await c.send(["XRANGE", keys.events, "-", "+"]).streamEntries.compactMap { e in
            let f = e.fields
            guard let type = f["type"] else { return nil }
            let at = Double(f["at"] ?? "") ?? start
            return Event(t: (at - start) / 1000, type: type, fields: f.filter { $0.key != "type" && $0.key != "at" })
        }
        let slowReply = try await c.send(["ZREVRANGE", keys.slow, "0", "19", "WITHSCORES"]).array ?? []
        var slowest: [Slow] = []
        for i in stride(from: 0, to: slowReply.count - 1, by: 2) {
            let p = (slowReply[i].string ?? "").split(separator: " ").map(String.init)
            guard p.count == 5, let us = slowReply[i + 1].string.flatMap(Double.init) else { continue }
            slowest.append(Slow(trace_id: p[0], worker: p[1], vu: Int64(p[2]) ?? -1, iteration: Int64(p[3]) ?? -1, at_ms: Int64(p[4]) ?? 0, latency_ms: us / 1000))
        }
        return RunReport(summary: summary, slowest: slowest, series: series, steps: steps, events: events)
    }

    /// The series from unix second `first` to `last`: the minutes below `folded` from their
    /// `m60` hashes, the seconds from it on from their own.
    static func loadSeries(keys: RunKeys, first: Int64, last: Int64, folded: Int64, startMs: Int64, curve: Curve, on c: RedisConnection) async throws
        -> ([Second], [String: [StepSecond]]) {
        var entries: [(unix: Int64, seconds: Int64, key: String)] = []
        var m = RunKeys.minuteStart(first)
        while m < folded {
            let from = max(m, first)
            if min(m + 60, folded) > from { entries.append((from, min(m + 60, folded) - from, keys.metrics(minuteOf: m))) }
            m += 60
        }
        if max(first, folded) <= last { entries += (max(first, folded)...last).map { ($0, 1, keys.metrics(second: $0)) } }
        var series: [Second] = []
        var steps: [String: [StepSecond]] = [:]
        for batch in stride(from: 0, to: entries.count, by: 500).map({ Array(entries[$0..<min($0 + 500, entries.count)]) }) {
            let replies = try await c.pipeline(batch.map { ["HGETALL", $0.key] })
            for (entry, reply) in zip(batch, replies) {
                let h = reply.hash ?? [:]
                let t = entry.unix - startMs / 1000
                series.append(second(t: t, unix: entry.unix, seconds: entry.seconds, target: target(unix: entry.unix, seconds: entry.seconds, startMs: startMs, curve: curve), h))
                for (name, step) in stepsOf(h) { steps[name, default: []].append(StepSecond(t: t, seconds: entry.seconds, count: step.count, failed: step.failed, p95: step.p95)) }
            }
        }
        return (series, steps)
    }

    /// What the curve asks for in the middle of the entry of `seconds` from unix second
    /// `unix`: iterations per second or VUs; 0 past the run's end.
    static func target(unix: Int64, seconds: Int64 = 1, startMs: Int64, curve: Curve) -> Double {
        let midMs = min(max(0, (unix - startMs / 1000) * 1000 + seconds * 500), curve.durationMs)
        return unix * 1000 < startMs + curve.durationMs ? Double(curve.targetMilli(atMs: midMs)) / 1000 : 0
    }

    static func second(t: Int64, unix: Int64, seconds: Int64 = 1, target: Double, _ h: [String: String]) -> Second {
        func v(_ f: MetricField) -> Int64 { Int64(h[f.name] ?? "0") ?? 0 }
        let (buckets, _, maxUs) = ThresholdEvaluator.histogramOf(MetricField.iterationHistogram, h)
        func q(_ x: Double) -> Double? { LatencyBuckets.quantile(x, of: buckets).map { Double(min($0, maxUs ?? $0)) / 1000 } }
        var errors: [String: Int64] = [:]
        for (k, value) in h { if case .error(let c) = MetricField(k) { errors[c] = Int64(value) ?? 0 } }
        return Second(t: t, unix: unix, seconds: seconds, target: target, started: v(.started), ok: v(.ok), failed: v(.failed), dropped: v(.dropped),
                      errors: errors, p50: q(0.5), p95: q(0.95), p99: q(0.99), max: maxUs.map { Double($0) / 1000 },
                      workers: h.keys.count { if case .activeWorker = MetricField($0) { true } else { false } })
    }

    static func stepsOf(_ h: [String: String]) -> [String: (count: Int64, failed: Int64, p95: Double?)] {
        let (steps, _, _, _) = RunSummary.scenarioMetrics(h)
        return steps.mapValues { ($0.count, $0.failed, $0.latency_ms.p95) }
    }

    /// The formats of `j4 report`.
    public static let formats = ["text", "json", "html", "junit"]

    /// The report in `format` (one of ``formats``), ending with a newline.
    public func rendered(_ format: String) -> String {
        switch format {
        case "json": return json + "\n"
        case "html": return html
        case "junit": return junit
        default: return text + "\n"
        }
    }

    /// Pretty JSON with sorted keys.
    public var json: String {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: (try? e.encode(self)) ?? Data(), as: UTF8.self)
    }

    /// k6-like text: the summary and the events.
    public var text: String {
        var lines = [summary.text]
        if !slowest.isEmpty {
            lines.append("  slowest iterations (trace id, worker, vu, iteration):")
            for s in slowest.prefix(10) { lines.append(String(format: "    %10.2fms  ", s.latency_ms) + "\(s.trace_id)  \(s.worker)  vu \(s.vu)  #\(s.iteration)") }
        }
        if !events.isEmpty {
            lines.append("  events:")
            for e in events {
                let rest = e.fields.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
                lines.append(String(format: "    %+8.3fs ", e.t) + e.type + (rest.isEmpty ? "" : " " + rest))
            }
        }
        return lines.joined(separator: "\n")
    }

    /// JUnit XML: one test case per threshold (none: one passing case for the run).
    public var junit: String {
        func x(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
                .replacingOccurrences(of: "\"", with: "&quot;")
        }
        let s = summary
        let failures = s.thresholds.filter { !$0.ok }.count
        var out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        out += "<testsuites name=\"j4\" tests=\"\(max(1, s.thresholds.count))\" failures=\"\(failures)\">\n"
        out += "  <testsuite name=\"\(x(s.name)) (\(x(s.run)))\" tests=\"\(max(1, s.thresholds.count))\" failures=\"\(failures)\" time=\"\(String(format: "%.3f", s.duration_s ?? 0))\">\n"
        if s.thresholds.isEmpty {
            out += "    <testcase classname=\"j4.\(x(s.name))\" name=\"run \(x(s.state))\"/>\n"
        }
        for t in s.thresholds {
            out += "    <testcase classname=\"j4.\(x(s.name)).thresholds\" name=\"\(x(t.threshold))\">"
            if t.ok {
                out += "<system-out>\(x(t.shown))</system-out></testcase>\n"
            } else {
                out += "<failure message=\"\(x(t.threshold)) failed: \(x(t.shown))\" type=\"threshold\">value \(x(t.shown))</failure></testcase>\n"
            }
        }
        out += "  </testsuite>\n</testsuites>\n"
        return out
    }
}
