import Foundation
import J4Core
import J4Redis

/// The end-of-run (or so-far) summary merged from every worker's metrics in Redis.
///
/// For arrival-rate runs, `target == started + dropped + unclaimed + lost` holds once every
/// worker has left the run: each iteration of the curve is either never granted (unclaimed),
/// or granted and then started or dropped by its worker, or granted to a worker that was
/// killed before it reported it (lost; some of those may have reached the target). While the
/// run is live, granted iterations not reported yet are `pending` instead of lost.
public struct RunSummary: Sendable, Codable {
    /// Latency percentiles in milliseconds, from the intended start of each iteration.
    public struct Latency: Sendable, Codable {
        public var p50: Double?, p90: Double?, p95: Double?, p99: Double?, max: Double?, mean: Double?
    }
    /// One step of a scenario, over the whole cluster.
    public struct Step: Sendable, Codable {
        /// Times it ran.
        public var count: Int64
        /// Times it threw.
        public var failed: Int64
        /// Failures by error class.
        public var errors: [String: Int64]
        /// Its duration in milliseconds.
        public var latency_ms: Latency
    }
    /// One check: how often it held.
    public struct Check: Sendable, Codable {
        public var pass: Int64, fail: Int64
    }
    /// A custom duration histogram (such as message delivery time).
    public struct Trend: Sendable, Codable {
        /// Values recorded.
        public var count: Int64
        /// In milliseconds.
        public var latency_ms: Latency
    }
    public var run: String
    public var name: String
    public var state: String
    public var model: String
    public var scenario: String
    /// Iterations the curve asked for (arrival-rate; up to the stop for stopped runs) or the peak VUs.
    public var target: Int64
    public var started: Int64
    public var dropped: Int64
    public var unclaimed: Int64
    /// Granted to a worker that never reported them (killed with them in flight or unflushed);
    /// 0 while the run is live.
    public var lost: Int64
    /// Granted and not reported yet (until the run has settled).
    public var pending: Int64
    /// True once the run has ended and every worker has had time to report: `lost` is final.
    public var settled: Bool
    public var ok: Int64
    public var failed: Int64
    /// Error class → count.
    public var errors: [String: Int64]
    public var latency_ms: Latency
    /// Scenario steps by name.
    public var steps: [String: Step]
    /// Checks by name.
    public var checks: [String: Check]
    /// Custom counters by name.
    public var counters: [String: Int64]
    /// Custom duration histograms by name.
    public var trends: [String: Trend]
    /// Each threshold of the definition with its value and verdict.
    public var thresholds: [ThresholdResult]
    /// Workers that reported metrics.
    public var workers: Int
    /// Seconds from tick 0 to the end (or to now).
    public var duration_s: Double?

    enum CodingKeys: String, CodingKey {
        case run, name, state, model, scenario, target, started, dropped, unclaimed, lost, pending, settled, ok, failed, errors, latency_ms, steps, checks, counters, trends, thresholds, workers, duration_s
    }

    /// Reads the run's ctl and totals and builds its summary.
    /// `workersDone`: the caller knows every worker has left (`j4 run`, after its own workers).
    public static func load(_ run: String, on c: RedisConnection, workersDone: Bool = false) async throws -> RunSummary? {
        guard let info = try await RunStore.info(run, on: c) else { return nil }
        return try await load(info, on: c, workersDone: workersDone).summary
    }

    /// The summary of the run of `info`, read with the commands `extra` in the same
    /// pipeline: the summary, Redis' clock and the replies to `extra`.
    public static func load(_ info: RunInfo, on c: RedisConnection, with extra: [[String]] = [], workersDone: Bool = false) async throws
        -> (summary: RunSummary, nowMs: Int64?, extra: [RedisValue]) {
        let keys = RunKeys(run: info.id)
        let replies = try await c.pipeline([["HGETALL", keys.totals], ["HLEN", keys.flushSeqs], ["TIME"]] + extra)
        let nowMs = replies[2].timeMs
        let summary = make(info: info, totals: replies[0].hash ?? [:], workers: Int(replies[1].int ?? 0), nowMs: nowMs, workersDone: workersDone)
        return (summary, nowMs, Array(replies.dropFirst(3)))
    }

    /// The summary from already-read data.
    public static func make(info: RunInfo, totals: [String: String], workers: Int, nowMs: Int64?, workersDone: Bool = false) -> RunSummary {
        // Ended, and every worker has had time to report: finished and stopped runs are ended
        // by the supervisor a grace after their last tick; an abort takes effect at once, so
        // its workers get that grace from the abort.
        let grace = max(2000, 2 * info.definition.tickMs)
        let settled = !info.state.isLive
            && (workersDone || info.state == .finished || info.state == .stopped || (nowMs ?? 0) >= (info.finishedMs ?? 0) + grace)
        let d = info.definition
        let curve = info.curve
        func v(_ f: MetricField) -> Int64 { totals[f.name].flatMap { Int64($0) } ?? 0 }
        var errors: [String: Int64] = [:]
        for (k, value) in totals { if case .error(let c) = MetricField(k) { errors[c] = Int64(value) ?? 0 } }
        let target: Int64
        var unclaimed: Int64 = 0, lost: Int64 = 0, pending: Int64 = 0
        if d.model == .arrivalRate {
            // While the run goes, the target so far: through the current tick.
            var through = min(info.stopTick, info.ticks)
            if info.state.isLive, let start = info.startMs, let nowMs {
                through = min(through, max(0, (nowMs - start) / d.tickMs + 1))
            }
            target = curve.firstIteration(ofTick: through)
            unclaimed = max(0, target - info.granted)
            let unreported = max(0, info.granted - v(.started) - v(.dropped))
            if settled { lost = unreported } else { pending = unreported }
        } else {
            target = curve.peakVUs
        }
        let (histogram, sumUs, maxUs) = ThresholdEvaluator.histogramOf(MetricField.iterationHistogram, totals)
        let latency = latencyOf(histogram, sumUs: sumUs, maxUs: maxUs)
        let (steps, checks, counters, trends) = scenarioMetrics(totals)
        // From tick 0 to the last tick's end (finished, stopped), to the abort, or to now; the
        // supervisor's grace before it marks a run finished is not part of it.
        var duration: Double?
        if let start = info.startMs {
            let scheduledEnd = start + min(min(info.stopTick, info.ticks) * d.tickMs, curve.durationMs)
            let end: Int64?
            switch info.state {
            case .finished, .stopped: end = scheduledEnd
            case .aborted, .failed: end = info.finishedMs ?? nowMs
            case .pending, .running, .stopping: end = nowMs.map { min($0, scheduledEnd) }
            }
            if let end { duration = max(0, Double(end - start) / 1000) }
        }
        return RunSummary(
            run: info.id, name: d.name, state: info.state.rawValue, model: d.model.rawValue, scenario: d.scenario,
            target: target, started: v(.started), dropped: v(.dropped), unclaimed: unclaimed, lost: lost, pending: pending, settled: settled,
            ok: v(.ok), failed: v(.failed), errors: errors, latency_ms: latency,
            steps: steps, checks: checks, counters: counters, trends: trends,
            thresholds: ThresholdEvaluator.evaluate(d.thresholds, totals: totals, durationS: duration),
            workers: workers, duration_s: duration)
    }

    static func latencyOf(_ histogram: [Int64: Int64], sumUs: Int64, maxUs: Int64?) -> Latency {
        // A bucket is reported by its middle; no percentile is reported above the true maximum.
        func ms(_ us: Int64?) -> Double? { us.map { Double(min($0, (maxUs ?? -1) >= 0 ? maxUs! : $0)) / 1000 } }
        let count = histogram.values.reduce(0, +)
        return Latency(
            p50: ms(LatencyBuckets.quantile(0.50, of: histogram)), p90: ms(LatencyBuckets.quantile(0.90, of: histogram)),
            p95: ms(LatencyBuckets.quantile(0.95, of: histogram)), p99: ms(LatencyBuckets.quantile(0.99, of: histogram)),
            max: maxUs.flatMap { $0 < 0 ? nil : ms($0) },
            mean: count > 0 ? ms(sumUs / count) : nil)
    }

    /// Steps (`s:<name>:…`), checks (`k:<name>:p|f`), counters (`c:<name>`) and trends
    /// (`x:<name>:…`) from a run's totals.
    public static func scenarioMetrics(_ totals: [String: String]) -> ([String: Step], [String: Check], [String: Int64], [String: Trend]) {
        var hist: [String: [Int64: Int64]] = [:]
        var sums: [String: Int64] = [:], maxes: [String: Int64] = [:]
        var failed: [String: Int64] = [:], stepErrors: [String: [String: Int64]] = [:]
        var checks: [String: Check] = [:], counters: [String: Int64] = [:]
        for (key, text) in totals {
            guard let value = Int64(text), let field = MetricField(key) else { continue }
            switch field {
            case .counter(let name):
                counters[name] = value
            case .check(let name, let passed):
                var c = checks[name] ?? Check(pass: 0, fail: 0)
                if passed { c.pass = value } else { c.fail = value }
                checks[name] = c
            case .histogramBucket(let h, let b):
                hist[h, default: [:]][b] = value
            case .histogramSum(let h):
                sums[h] = value
            case .stepFailed(let name):
                failed[name] = value
            case .stepError(let name, let c):
                stepErrors[name, default: [:]][c] = value
            case .maximum(let h) where h != MetricField.iterationHistogram:
                maxes[h] = value
            default:
                break
            }
        }
        var steps: [String: Step] = [:], trends: [String: Trend] = [:]
        for (prefix, h) in hist {
            let name = String(prefix.dropFirst(2))
            let latency = latencyOf(h, sumUs: sums[prefix] ?? 0, maxUs: maxes[prefix])
            let count = h.values.reduce(0, +)
            if prefix == MetricField.step(name) {
                steps[name] = Step(count: count, failed: failed[name] ?? 0, errors: stepErrors[name] ?? [:], latency_ms: latency)
            } else {
                trends[name] = Trend(count: count, latency_ms: latency)
            }
        }
        return (steps, checks, counters, trends)
    }

    /// True when every threshold held (and when there are none).
    public var thresholdsPassed: Bool { thresholds.allSatisfy(\.ok) }

    /// Pretty JSON with sorted keys.
    public var json: String {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: (try? e.encode(self)) ?? Data(), as: UTF8.self)
    }

    /// A k6-like block of text for people.
    public var text: String {
        func f(_ v: Double?) -> String { v.map { String(format: "%.2fms", $0) } ?? "-" }
        var lines = [
            "run \(run) (\(name)) \(state): \(scenario), \(model)",
            "  target ...... \(target)\(model == "vus" ? " VUs at peak" : " iterations")",
            "  started ..... \(started)",
            "  dropped ..... \(dropped)",
            "  unclaimed ... \(unclaimed)",
        ]
        if lost > 0 { lines.append("  lost ........ \(lost) (granted to a worker killed before it reported them)") }
        if pending > 0 { lines.append("  pending ..... \(pending) (granted, not reported yet)") }
        lines += [
            "  ok .......... \(ok)",
            "  failed ...... \(failed)",
            "  latency ..... p50=\(f(latency_ms.p50)) p90=\(f(latency_ms.p90)) p95=\(f(latency_ms.p95)) p99=\(f(latency_ms.p99)) max=\(f(latency_ms.max)) mean=\(f(latency_ms.mean))",
            "  workers ..... \(workers)",
        ]
        if !errors.isEmpty {
            lines.append("  errors ...... " + errors.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
        }
        for (name, step) in steps.sorted(by: { $0.key < $1.key }) {
            let l = step.latency_ms
            lines.append("  step \(name) ... n=\(step.count) failed=\(step.failed) p50=\(f(l.p50)) p95=\(f(l.p95)) p99=\(f(l.p99)) max=\(f(l.max))"
                + (step.errors.isEmpty ? "" : " errors: " + step.errors.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")))
        }
        for (name, c) in checks.sorted(by: { $0.key < $1.key }) {
            let total = c.pass + c.fail
            lines.append("  check \(name) ... \(total == 0 ? "-" : String(format: "%.2f%%", 100 * Double(c.pass) / Double(total))) (\(c.pass) of \(total))")
        }
        for (name, n) in counters.sorted(by: { $0.key < $1.key }) { lines.append("  counter \(name) ... \(n)") }
        for (name, t) in trends.sorted(by: { $0.key < $1.key }) {
            let l = t.latency_ms
            lines.append("  trend \(name) ... n=\(t.count) p50=\(f(l.p50)) p95=\(f(l.p95)) p99=\(f(l.p99)) max=\(f(l.max)) mean=\(f(l.mean))")
        }
        if let duration_s { lines.append("  duration .... \(String(format: "%.1fs", duration_s))") }
        if !thresholds.isEmpty {
            lines.append("  thresholds .. " + (thresholdsPassed ? "all passed" : "\(thresholds.filter { !$0.ok }.count) of \(thresholds.count) FAILED"))
            for t in thresholds { lines.append("    \(t.ok ? "✓" : "✗") \(t.threshold) ... \(t.shown)") }
        }
        return lines.joined(separator: "\n")
    }
}
