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
    /// Granted and not reported yet (live runs only).
    public var pending: Int64
    public var ok: Int64
    public var failed: Int64
    /// Error class → count.
    public var errors: [String: Int64]
    public var latency_ms: Latency
    /// Workers that reported metrics.
    public var workers: Int
    /// Seconds from tick 0 to the end (or to now).
    public var duration_s: Double?

    enum CodingKeys: String, CodingKey {
        case run, name, state, model, scenario, target, started, dropped, unclaimed, lost, pending, ok, failed, errors, latency_ms, workers, duration_s
    }

    /// Reads the run's ctl and totals and builds its summary.
    public static func load(_ run: String, on c: RedisConnection) async throws -> RunSummary? {
        guard let info = try await RunStore.info(run, on: c) else { return nil }
        let keys = RunKeys(run: run)
        let replies = try await c.pipeline([["HGETALL", keys.totals], ["HLEN", keys.flushSeqs], ["TIME"]])
        let totals = replies[0].hash ?? [:]
        let workers = Int(replies[1].int ?? 0)
        var nowMs: Int64?
        if let t = replies[2].array, t.count == 2, let s = t[0].int, let us = t[1].int { nowMs = s * 1000 + us / 1000 }
        return make(info: info, totals: totals, workers: workers, nowMs: nowMs)
    }

    /// The summary from already-read data.
    public static func make(info: RunInfo, totals: [String: String], workers: Int, nowMs: Int64?) -> RunSummary {
        let d = info.definition
        let curve = info.curve
        func v(_ k: String) -> Int64 { totals[k].flatMap { Int64($0) } ?? 0 }
        var errors: [String: Int64] = [:]
        var histogram: [Int64: Int64] = [:]
        for (k, value) in totals {
            if k.hasPrefix("err:") { errors[String(k.dropFirst(4))] = Int64(value) ?? 0 }
            if k.hasPrefix("lat:"), let b = Int64(k.dropFirst(4)) { histogram[b] = Int64(value) ?? 0 }
        }
        let target: Int64
        var unclaimed: Int64 = 0, lost: Int64 = 0, pending: Int64 = 0
        if d.model == .arrivalRate {
            target = curve.firstIteration(ofTick: min(info.stopTick, info.ticks))
            unclaimed = max(0, target - info.granted)
            let unreported = max(0, info.granted - v("started") - v("dropped"))
            if info.state.isLive { pending = unreported } else { lost = unreported }
        } else {
            target = curve.peakVUs
        }
        func ms(_ us: Int64?) -> Double? { us.map { (Double($0) / 1000 * 1000).rounded() / 1000 } }
        let count = histogram.values.reduce(0, +)
        let latency = Latency(
            p50: ms(LatencyBuckets.quantile(0.50, of: histogram)), p90: ms(LatencyBuckets.quantile(0.90, of: histogram)),
            p95: ms(LatencyBuckets.quantile(0.95, of: histogram)), p99: ms(LatencyBuckets.quantile(0.99, of: histogram)),
            max: totals["max:lat"].flatMap { Int64($0) }.flatMap { $0 < 0 ? nil : ms($0) },
            mean: count > 0 ? ms(v("lat_sum_us") / count) : nil)
        var duration: Double?
        if let start = info.startMs, let end = info.finishedMs ?? nowMs {
            duration = max(0, Double(end - start) / 1000)
        }
        return RunSummary(
            run: info.id, name: d.name, state: info.state.rawValue, model: d.model.rawValue, scenario: d.scenario,
            target: target, started: v("started"), dropped: v("dropped"), unclaimed: unclaimed, lost: lost, pending: pending,
            ok: v("ok"), failed: v("failed"), errors: errors, latency_ms: latency, workers: workers, duration_s: duration)
    }

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
        if let duration_s { lines.append("  duration .... \(String(format: "%.1fs", duration_s))") }
        return lines.joined(separator: "\n")
    }
}
