import Foundation
import J4Core

/// What the dashboard's stream sends about a run each second (event `point`): where the run
/// stands, its last few seconds merged over the cluster, its summary so far, who holds which
/// shard until when, and its latest events. Built from data already read, so it is a pure
/// function of them and of the server's clock.
public struct DashboardPoint: Sendable, Codable {
    /// A worker of the run: its shards with their lease expiry, and its last heartbeat.
    public struct Worker: Sendable, Codable, Equatable {
        public struct Lease: Sendable, Codable, Equatable {
            public var shard: Int
            /// Server ms.
            public var expires_ms: Int64
        }
        public var id: String
        /// Server ms; nil when the worker holds leases but has left the run's worker set.
        public var heartbeat_ms: Int64?
        public var leases: [Lease]
    }
    /// One event of the run's stream.
    public struct Event: Sendable, Codable, Equatable {
        /// The stream entry's id (`ms-seq`), unique within the run.
        public var id: String
        public var at_ms: Int64?
        public var type: String
        public var fields: [String: String]
    }

    public var run: String
    public var state: String
    /// The server's clock when the point was read.
    public var now_ms: Int64
    /// Tick 0, once the run has started.
    public var start_ms: Int64?
    /// When it ended (server ms), once it has.
    public var finished_ms: Int64?
    public var elapsed_s: Double
    public var length_s: Double
    /// 1-based stage and the number of stages while the run is in one.
    public var stage: [Int]?
    /// The curve's target now: iterations per second or VUs; 0 once ended.
    public var target: Double
    /// The last few whole seconds, oldest first, re-read each time (a worker's metrics for a
    /// second can arrive a second or two late): a chart replaces each by its `unix`.
    public var seconds: [RunReport.Second]
    public var summary: RunSummary
    /// Each threshold's value as people read it (`12.34ms`, `0.50%`), in the summary's order.
    public var thresholds: [String]
    public var workers: [Worker]
    /// Newest first.
    public var events: [Event]

    /// The seconds a point re-reads when the server's clock says `nowMs`: the 6 before the one
    /// before now (whose metrics are still being flushed), from the run's first second on; for
    /// a run that ended at `endMs`, its last 6 seconds. None of the seconds folded into their
    /// minute (below `folded`) unless every one of them is.
    public static func window(nowMs: Int64, startMs: Int64?, endMs: Int64? = nil, folded: Int64? = nil) -> ClosedRange<Int64>? {
        guard let startMs else { return nil }
        var last = nowMs / 1000 - 2
        if let endMs { last = min(nowMs / 1000 - 1, (endMs + 999) / 1000 - 1) }
        guard last >= startMs / 1000 else { return nil }
        return min(last, max(startMs / 1000, last - 5, folded ?? .min))...last
    }

    /// The point of `info` with its `summary`, the hashes of the seconds of ``window(nowMs:startMs:)``
    /// (`unix → fields`), the run's `owners` (shard → `worker|token`), `leases` (shard → expiry
    /// ms), `heartbeats` (worker → ms) and events (stream entries, newest first).
    public static func make(
        info: RunInfo, summary: RunSummary, nowMs: Int64, seconds: [(unix: Int64, fields: [String: String])],
        owners: [String: String], leases: [String: Int64], heartbeats: [String: Int64], events: [(id: String, fields: [String: String])]
    ) -> DashboardPoint {
        let curve = info.curve
        let startMs = info.startMs
        let elapsedMs = info.elapsedMs(nowMs: nowMs)
        let series = seconds.map { entry in
            RunReport.second(t: entry.unix - (startMs ?? 0) / 1000, unix: entry.unix,
                             target: RunReport.target(unix: entry.unix, startMs: startMs ?? 0, curve: curve), entry.fields)
        }
        var byWorker: [String: [Worker.Lease]] = [:]
        for (shard, owner) in owners {
            guard let n = Int(shard) else { continue }
            let worker = String(owner.split(separator: "|").first ?? "")
            byWorker[worker, default: []].append(Worker.Lease(shard: n, expires_ms: leases[shard] ?? 0))
        }
        // A worker in the run's set without a lease is shown too: it is waiting for one.
        for (worker, _) in heartbeats where byWorker[worker] == nil { byWorker[worker] = [] }
        let workers = byWorker.map { Worker(id: $0.key, heartbeat_ms: heartbeats[$0.key], leases: $0.value.sorted { $0.shard < $1.shard }) }
            .sorted { $0.id < $1.id }
        let shownEvents = events.map { entry in
            Event(id: entry.id, at_ms: entry.fields["at"].flatMap { Int64($0) }, type: entry.fields["type"] ?? "?",
                  fields: entry.fields.filter { $0.key != "type" && $0.key != "at" })
        }
        return DashboardPoint(
            run: info.id, state: info.state.rawValue, now_ms: nowMs, start_ms: startMs, finished_ms: info.state.isLive ? nil : info.finishedMs,
            elapsed_s: Double(elapsedMs) / 1000, length_s: Double(curve.durationMs) / 1000, stage: info.stage(elapsedMs: elapsedMs).map { [$0.index, $0.of] },
            target: info.state.isLive && startMs != nil ? Double(curve.targetMilli(atMs: elapsedMs)) / 1000 : 0,
            seconds: series, summary: summary, thresholds: summary.thresholds.map(\.shown), workers: workers, events: shownEvents)
    }

    /// Compact JSON with sorted keys: one line, as an SSE `data:` field wants it.
    public var json: String { DashboardJSON.line(self) }
}

/// The row of one run in the dashboard's list (`GET /api/runs`).
public struct DashboardRunRow: Sendable, Codable, Equatable {
    public var run: String
    public var name: String
    public var state: String
    public var scenario: String
    public var model: String
    public var submitted_ms: Int64
    /// The curve's target now (started runs) or at its peak (pending and ended ones): per
    /// second or VUs.
    public var target: Double
    /// Started per second: over the last 5 whole seconds while live, over the whole run after.
    public var achieved: Double
    public var started: Int64
    public var failed: Int64
    /// `passed`, `failed`, or `none` when the run has no thresholds.
    public var thresholds: String

    /// The row of `info` with its `summary`, `recentStarted` (started in each of the last
    /// whole seconds read) at server time `nowMs`.
    public static func make(info: RunInfo, summary: RunSummary, recentStarted: [Int64], nowMs: Int64) -> DashboardRunRow {
        let curve = info.curve
        let live = info.state.isLive
        let target: Double
        if live, let start = info.startMs {
            target = Double(curve.targetMilli(atMs: max(0, min(nowMs - start, curve.durationMs)))) / 1000
        } else {
            target = Double(max(info.definition.startMilli, info.definition.stages.map(\.targetMilli).max() ?? 0)) / 1000
        }
        let achieved: Double
        if live {
            achieved = recentStarted.isEmpty ? 0 : Double(recentStarted.reduce(0, +)) / Double(recentStarted.count)
        } else {
            achieved = (summary.duration_s ?? 0) > 0 ? Double(summary.started) / summary.duration_s! : 0
        }
        return DashboardRunRow(
            run: info.id, name: info.definition.name, state: info.state.rawValue, scenario: info.definition.scenario,
            model: info.definition.model.rawValue, submitted_ms: info.submittedMs, target: target, achieved: achieved,
            started: summary.started, failed: summary.failed,
            thresholds: summary.thresholds.isEmpty ? "none" : (summary.thresholdsPassed ? "passed" : "failed"))
    }

    /// Live runs first, then the newest.
    public static func ordered(_ rows: [DashboardRunRow]) -> [DashboardRunRow] {
        rows.sorted { a, b in
            let la = RunState(rawValue: a.state)?.isLive ?? false, lb = RunState(rawValue: b.state)?.isLive ?? false
            return la != lb ? la : (a.submitted_ms != b.submitted_ms ? a.submitted_ms > b.submitted_ms : a.run < b.run)
        }
    }
}

/// JSON as the dashboard sends it.
enum DashboardJSON {
    /// One line, keys sorted.
    static func line(_ value: some Encodable) -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return String(decoding: (try? e.encode(value)) ?? Data("null".utf8), as: UTF8.self)
    }
}
