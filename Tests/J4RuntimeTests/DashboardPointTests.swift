import J4Core
@testable import J4Runtime
import Testing

/// What the dashboard makes of what it read: which seconds a point re-reads, when it reads
/// next, the point itself (workers and their leases, events, target, stage) and a run's row.
@Suite("Dashboard points")
struct DashboardPointTests {
    /// A run of 10/s rising to 30/s over 4 s then 30/s for 6 s, tick 700 ms, started at 100.35 s.
    static func info(_ state: RunState = .running, startMs: Int64? = 100_350, finishedMs: Int64? = nil, thresholds: String = "") throws -> RunInfo {
        let definition = try RunDefinition.parse(text: """
            name: shop
            scenario: http
            model: arrival-rate
            start: 10
            stages: [{ duration: 4s, target: 30 }, { duration: 6s, target: 30 }]
            tick: 700ms
            shards: 3
            \(thresholds)
            params: { request: { url: "http://127.0.0.1:9/" } }
            """, format: .yaml)
        let curve = Curve(definition)
        return RunInfo(id: "r1", state: state, definition: definition, startMs: startMs, ticks: curve.tickCount, stopTick: curve.tickCount,
                       granted: 0, submittedMs: 100_000, finishedMs: finishedMs, generation: 1, hash: "h")
    }

    @Test("the seconds a point re-reads: the 6 whole seconds before the last, never before the run's first; an ended run's last 6; none folded unless all are", arguments: [
        (Int64(10_500), Int64?.none, Int64?.none, Int64?.none, ClosedRange<Int64>?.none),
        (10_500, 9_000, nil, nil, nil),           // the run's first second is not over yet
        (11_999, 9_000, nil, nil, 9...9),
        (20_999, 9_000, nil, nil, 13...18),
        (20_000, 17_400, nil, nil, 17...18),
        (20_000, 0, nil, nil, 13...18),
        (100_000, 9_000, 15_400, nil, 10...15),   // ended long ago: its end, not now
        (15_900, 9_000, 15_400, nil, 9...14),     // ended a moment ago: not the second still going
        (16_000, 9_000, 16_000, nil, 10...15),    // ended on a second's boundary
        (20_999, 9_000, nil, 16, 16...18),        // seconds below 16 folded into their minute
        (20_999, 9_000, nil, 30, 18...18),
    ])
    func window(nowMs: Int64, startMs: Int64?, endMs: Int64?, folded: Int64?, expected: ClosedRange<Int64>?) {
        #expect(DashboardPoint.window(nowMs: nowMs, startMs: startMs, endMs: endMs, folded: folded) == expected)
    }

    @Test("the next read is 50 ms into the next server second", arguments: [
        (Int64(1_000), Duration.milliseconds(1050)), (1_001, .milliseconds(1049)), (1_500, .milliseconds(550)), (1_999, .milliseconds(51)),
    ])
    func nextRead(nowMs: Int64, pause: Duration) {
        #expect(DashboardHub.untilNextRead(nowMs: nowMs) == pause)
    }

    @Test("a point: workers with their shards and lease expiry (one waiting without a lease, one holding leases after it left the set), events without type and at, the curve's target and stage, seconds from tick 0")
    func point() throws {
        let info = try Self.info()
        let summary = RunSummary.make(info: info, totals: ["started": "40"], workers: 2, nowMs: 103_000)
        let p = DashboardPoint.make(
            info: info, summary: summary, nowMs: 103_000,
            seconds: [(unix: 100, fields: ["started": "5", "ok": "4", "failed": "1"]), (unix: 101, fields: ["started": "12"])],
            owners: ["0": "w1|t1", "2": "w0|t2", "1": "w1|t3", "x": "w9|t"],
            leases: ["0": 105_000, "1": 105_100, "2": 104_900],
            heartbeats: ["w0": 102_900, "w2": 102_800],
            events: [(id: "103-0", fields: ["type": "takeover", "at": "102500", "worker": "w1", "shard": "1"]), (id: "101-0", fields: ["type": "started"])])
        #expect(p.workers.map(\.id) == ["w0", "w1", "w2"])
        #expect(p.workers[0].leases == [.init(shard: 2, expires_ms: 104_900)] && p.workers[0].heartbeat_ms == 102_900)
        #expect(p.workers[1].leases.map(\.shard) == [0, 1] && p.workers[1].heartbeat_ms == nil)
        #expect(p.workers[2].leases.isEmpty)
        #expect(p.events.map(\.type) == ["takeover", "started"] && p.events[0].at_ms == 102_500 && p.events[0].fields == ["worker": "w1", "shard": "1"])
        #expect(p.events[1].at_ms == nil && p.events[1].id == "101-0")
        // 2.65 s in: stage 1 of 2, the ramp at 10 + 20 × 2.65 / 4 = 23.25/s.
        #expect(p.stage == [1, 2] && p.elapsed_s == 2.65 && p.length_s == 10 && p.target == 23.25)
        #expect(p.seconds.map(\.t) == [0, 1] && p.seconds[0].failed == 1 && p.seconds[1].started == 12)
        #expect(p.seconds.allSatisfy { $0.target > 10 && $0.target < 30 })
        #expect(p.summary.started == 40 && p.state == "running")
    }

    @Test("an ended run's point: no target, no stage, elapsed to its end; a pending run's: nothing elapsed")
    func endedAndPending() throws {
        let ended = try Self.info(.aborted, finishedMs: 106_350)
        let p = DashboardPoint.make(info: ended, summary: RunSummary.make(info: ended, totals: [:], workers: 0, nowMs: 200_000), nowMs: 200_000,
                                    seconds: [], owners: [:], leases: [:], heartbeats: [:], events: [])
        #expect(p.target == 0 && p.stage == nil && p.elapsed_s == 6 && p.workers.isEmpty)
        let pending = try Self.info(.pending, startMs: nil)
        let q = DashboardPoint.make(info: pending, summary: RunSummary.make(info: pending, totals: [:], workers: 0, nowMs: 99_000), nowMs: 99_000,
                                    seconds: [], owners: [:], leases: [:], heartbeats: [:], events: [])
        #expect(q.target == 0 && q.stage == nil && q.elapsed_s == 0 && q.start_ms == nil)
    }

    @Test("a run's row: target now and achieved over the last seconds while live, peak target and average rate once ended; threshold status")
    func row() throws {
        let live = try Self.info(thresholds: "thresholds: [\"p99 < 1s\"]")
        let summary = RunSummary.make(info: live, totals: ["started": "50", "lat:1000": "50", "ok": "50"], workers: 1, nowMs: 104_350)
        let r = DashboardRunRow.make(info: live, summary: summary, recentStarted: [20, 22, 24, 26], nowMs: 104_350)
        #expect(r.target == 30 && r.achieved == 23 && r.thresholds == "passed" && r.state == "running")
        let ended = try Self.info(.finished, finishedMs: 112_000)
        let s = RunSummary.make(info: ended, totals: ["started": "250"], workers: 1, nowMs: 120_000)
        let e = DashboardRunRow.make(info: ended, summary: s, recentStarted: [], nowMs: 120_000)
        #expect(e.target == 30 && e.achieved == 25 && e.thresholds == "none")
        let failing = try Self.info(.finished, finishedMs: 112_000, thresholds: "thresholds: [\"errors < 1%\"]")
        let f = DashboardRunRow.make(info: failing, summary: RunSummary.make(info: failing, totals: ["started": "10", "failed": "5"], workers: 1, nowMs: 120_000),
                                     recentStarted: [], nowMs: 120_000)
        #expect(f.thresholds == "failed")
    }

    @Test("runs in the list: live ones first, then the newest")
    func order() {
        func row(_ run: String, _ state: String, _ at: Int64) -> DashboardRunRow {
            DashboardRunRow(run: run, name: run, state: state, scenario: "http", model: "vus", submitted_ms: at, target: 0, achieved: 0, started: 0, failed: 0, thresholds: "none")
        }
        let rows = [row("a", "finished", 5), row("b", "running", 1), row("c", "aborted", 9), row("d", "pending", 3), row("e", "stopping", 3)]
        #expect(DashboardRunRow.ordered(rows).map(\.run) == ["d", "e", "b", "c", "a"])
    }
}
