import Foundation
import J4Core
import J4Redis

/// What `j4 status RUN --watch` shows, read from Redis: the summary so far, the last 10
/// seconds merged over the cluster, leases by worker and the recent events.
public struct LiveView: Sendable {
    public var summary: RunSummary
    /// 1-based stage number and count; nil before the start or after the end.
    public var stage: (index: Int, of: Int)?
    /// Seconds since tick 0 and the run's length.
    public var elapsedS: Double
    public var lengthS: Double
    /// The curve's target now (per second or VUs).
    public var target: Double
    /// Over the last 10 whole seconds.
    public var achieved: Double
    public var p50: Double?, p95: Double?, p99: Double?
    public var errors: [String: Int64]
    public var dropped: Int64
    /// Worker → shards it leases.
    public var leases: [String: Int]
    /// Newest first: `HH:MM:SS.mmm type fields`.
    public var events: [String]

    /// Reads the view of `run`; nil when there is no such run.
    public static func load(_ run: String, on c: RedisConnection) async throws -> LiveView? {
        guard let info = try await RunStore.info(run, on: c), let summary = try await RunSummary.load(run, on: c) else { return nil }
        let keys = RunKeys(run: run)
        let nowMs = try await c.send(["TIME"]).timeMs ?? 0
        let curve = info.curve
        let elapsedMs = info.elapsedMs(nowMs: nowMs)
        let stage = info.stage(elapsedMs: elapsedMs)
        // The last 10 whole seconds, merged; fewer when older ones were folded into their
        // minute already (a supervisor with --detail under 10 s).
        let lastSecond = nowMs / 1000 - 1
        let folded = Int64(try await c.send(["HGET", keys.ctl, "compacted_s"]).string ?? "") ?? 0
        let window = min(lastSecond, max(lastSecond - 9, folded))...lastSecond
        let replies = try await c.pipeline(window.map { ["HGETALL", keys.metrics(second: $0)] } + [["HGETALL", keys.owners], ["XREVRANGE", keys.events, "+", "-", "COUNT", "8"]])
        var merged: [String: Int64] = [:]
        for reply in replies.prefix(window.count) {
            for (k, v) in reply.hash ?? [:] {
                guard let n = Int64(v) else { continue }
                merged[k] = MetricField.merge(k, current: merged[k], value: n)
            }
        }
        let totals = merged.mapValues(String.init)
        let (buckets, _, maxUs) = ThresholdEvaluator.histogramOf(MetricField.iterationHistogram, totals)
        func q(_ x: Double) -> Double? { LatencyBuckets.quantile(x, of: buckets).map { Double(min($0, maxUs ?? $0)) / 1000 } }
        var errors: [String: Int64] = [:]
        for (k, v) in merged { if case .error(let c) = MetricField(k) { errors[c] = v } }
        var leases: [String: Int] = [:]
        for (_, owner) in replies[window.count].hash ?? [:] { leases[String(owner.split(separator: "|").first ?? ""), default: 0] += 1 }
        let events = replies[window.count + 1].streamEntries.map { entry -> String in
            let f = entry.fields
            let rest = f.filter { $0.key != "type" && $0.key != "at" }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            return "\(clock(f["at"].flatMap { Int64($0) })) \(f["type"] ?? "?") \(rest)"
        }
        return LiveView(
            summary: summary, stage: stage, elapsedS: Double(elapsedMs) / 1000, lengthS: Double(curve.durationMs) / 1000,
            target: info.state.isLive ? Double(curve.targetMilli(atMs: elapsedMs)) / 1000 : 0,
            achieved: Double(merged[MetricField.started.name] ?? 0) / Double(window.count), p50: q(0.5), p95: q(0.95), p99: q(0.99),
            errors: errors, dropped: merged[MetricField.dropped.name] ?? 0, leases: leases, events: events)
    }

    /// `HH:MM:SS.mmm` (UTC) of a server time in ms.
    public static func clock(_ ms: Int64?) -> String {
        guard let ms else { return "--:--:--.---" }
        let day = ms % 86_400_000
        return String(format: "%02d:%02d:%02d.%03d", day / 3_600_000, day / 60_000 % 60, day / 1000 % 60, day % 1000)
    }

    /// The screen: a few lines, no wider than 100 columns.
    public var text: String {
        let s = summary
        func ms(_ v: Double?) -> String { v.map { String(format: "%.2fms", $0) } ?? "-" }
        let fraction = lengthS > 0 ? min(1, elapsedS / lengthS) : 0
        let width = 30
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
        let unit = s.model == "vus" ? " VUs" : "/s"
        var lines = [
            "\(s.run)  \(s.name)  \(s.scenario), \(s.model)  \(s.state.uppercased())" + (stage.map { "  stage \($0.index)/\($0.of)" } ?? ""),
            String(format: "%@ %3.0f%%  %.0fs of %.0fs, %.0fs left", bar, fraction * 100, elapsedS, lengthS, max(0, lengthS - elapsedS)),
            String(format: "target %.1f%@   achieved %.1f/s (last 10 s)   p50 %@  p95 %@  p99 %@", target, unit, achieved, ms(p50), ms(p95), ms(p99)),
            "started \(s.started)  ok \(s.ok)  failed \(s.failed)  dropped \(s.dropped)  unclaimed \(s.unclaimed)" + (s.lost > 0 ? "  lost \(s.lost)" : ""),
        ]
        if !errors.isEmpty { lines.append("errors (last 10 s): " + errors.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")) }
        lines.append("workers \(leases.count): " + leases.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value) shards" }.joined(separator: "  "))
        if !s.thresholds.isEmpty {
            lines.append("thresholds: " + s.thresholds.map { "\($0.ok ? "✓" : "✗") \($0.threshold) (\($0.shown))" }.joined(separator: "  "))
        }
        if !events.isEmpty {
            lines.append("recent events:")
            lines += events.map { "  " + $0 }
        }
        return lines.joined(separator: "\n")
    }

    /// One line, for `--watch` when standard output is not a terminal.
    public var line: String {
        String(format: "%@ %@ %.0fs/%.0fs target %.1f achieved %.1f/s p99 %@ started %lld failed %lld dropped %lld workers %d",
               summary.run, summary.state, elapsedS, lengthS, target, achieved, p99.map { String(format: "%.2fms", $0) } ?? "-",
               summary.started, summary.failed, summary.dropped, leases.count)
    }
}
