import Foundation
import J4Core
import J4Redis
import J4Runtime
import J4TestSupport
import Testing

/// Folding a long run's older state (compact_ticks.lua, compact_second.lua) on a real
/// redis-server: sums stay exact, late flushes land where a reader finds them.
@Suite("Compaction of a run's older state (Lua on a real redis-server)")
struct CompactionTests {
    func hash(_ r: StartedRun, _ key: String) async throws -> [String: String] {
        try await r.c.send(["HGETALL", key]).hash ?? [:]
    }

    @Test("settled ticks fold into sums and lose their plan field; a late flush of a folded tick adds to the sums; nothing at or above claimed_tick - 1 - keep is touched")
    func ticks() async throws {
        let r = try await StartedRun.make(shards: 3, tick: "100ms", duration: "60s")
        let keys = r.client.keys
        // 50 ticks granted, started and dropped (as claims and flushes would leave them).
        var fields: [String] = []
        for n in 0..<50 { fields += ["\(n):g", "\(n + 3)", "\(n):s", "\(n + 1)", "\(n):d", "2"] }
        _ = try await r.c.send(["HSET", keys.ticks] + fields)
        _ = try await r.c.send(["HSET", keys.ctl, "claimed_tick", "50"])
        func sum(_ what: String, _ range: Range<Int>) -> Int { range.reduce(0) { $0 + (what == "g" ? $1 + 3 : what == "s" ? $1 + 1 : 2) } }

        // At most max_ticks a call; then up to claimed_tick - 1 - keep = 39.
        #expect(try await r.client.compactTicks(r.c, keepTicks: 10, maxTicks: 7) == (7, 7))
        #expect(try await r.client.compactTicks(r.c, keepTicks: 10, maxTicks: 1000) == (39, 32))
        #expect(try await r.client.compactTicks(r.c, keepTicks: 10, maxTicks: 1000) == (39, 0))
        let t = try await hash(r, keys.ticks)
        #expect(t["settled:g"] == String(sum("g", 0..<39)) && t["settled:s"] == String(sum("s", 0..<39)) && t["settled:d"] == String(2 * 39))
        #expect(t["38:g"] == nil && t["39:g"] == "42" && t["49:s"] == "50")
        let plan = try await hash(r, keys.plan)
        #expect(plan["38"] == nil && plan["39"] != nil && plan["0"] == nil)
        #expect(try await r.ctl("compacted_tick") == "39")

        // A late flush: tick 5 (folded) goes to the sums, tick 45 (kept) to its own field.
        #expect(try await r.client.flush(r.c, worker: "A", seq: 1, second: 100, fields: [("t:5:s", 4), ("t:5:d", 1), ("t:45:s", 7)]))
        let after = try await hash(r, keys.ticks)
        #expect(after["settled:s"] == String(sum("s", 0..<39) + 4) && after["settled:d"] == String(2 * 39 + 1))
        #expect(after["45:s"] == String(46 + 7) && after["5:s"] == nil)
        // Every count is still there once: the sums over kept and folded ticks, plus the late flush.
        let total = { (w: String) in after.filter { $0.key.hasSuffix(":\(w)") }.values.reduce(0) { $0 + Int($1)! } }
        #expect(total("g") == sum("g", 0..<50) && total("s") == sum("s", 0..<50) + 4 + 7 && total("d") == 2 * 50 + 1)
        await r.redis.stop()
    }

    @Test("seconds older than keep fold into their minute (counts added, max kept), in order from the cursor; a late flush of a folded second goes to its minute; the report reads both")
    func seconds() async throws {
        let r = try await StartedRun.make(shards: 2, tick: "1s", duration: "60s")
        let keys = r.client.keys
        // Move the run's start 200 s back, as if it had been running that long, to a minute's
        // first second: the first minute then holds 60 seconds, every max below among them.
        // (Found by CI: started 54 s or more into a minute, the first minute held too few
        // seconds for its max, and the late flush of `first + 3` fell into the next minute.)
        let start = (r.startMs - 200_000) / 60_000 * 60_000
        _ = try await r.c.send(["HSET", keys.ctl, "start_ms", String(start)])
        let first = start / 1000
        // Seconds flushed up to the run's real start (now), as a worker would have.
        let flushed = r.startMs / 1000 - first
        var seq: Int64 = 0
        for s in first..<(first + flushed) {
            seq += 1
            #expect(try await r.client.flush(r.c, worker: "A", seq: seq, second: s, fields: [("started", 2), ("ok", 2), ("lat:1000", 2), ("max:lat", s % 7 * 100)]))
        }
        // The cursor starts at the run's first minute; a second elsewhere is refused.
        let minute = RunKeys.minuteStart(first)
        #expect(try await r.client.compactSecond(r.c, minute + 1, keepSeconds: 30) == (false, minute))
        var s = minute
        while true {
            let (folded, next) = try await r.client.compactSecond(r.c, s, keepSeconds: 30)
            if !folded { break }
            s = next
        }
        // Every second at least 30 s old is folded, and no younger one.
        let nowS = try await r.c.send(["TIME"]).array![0].int!
        #expect(s >= nowS - 31 && s <= nowS - 29, "cursor \(s), now \(nowS)")
        #expect(try await r.ctl("compacted_s") == String(s))
        #expect(try await r.c.send(["EXISTS", keys.metrics(second: s - 1)]) == .integer(0))
        #expect(try await r.c.send(["EXISTS", keys.metrics(second: s)]) == .integer(1))
        let m = try await hash(r, keys.metrics(minuteOf: first))
        let inFirst = min(minute + 60, s) - first
        #expect(m["started"] == String(2 * inFirst) && m["lat:1000"] == String(2 * inFirst))
        #expect(m["max:lat"] == "600")

        // A late flush of a folded second lands in its minute and creates no second hash.
        seq += 1
        #expect(try await r.client.flush(r.c, worker: "B", seq: 1, second: first + 3, fields: [("started", 5), ("max:lat", 9000)]))
        #expect(try await r.c.send(["EXISTS", keys.metrics(second: first + 3)]) == .integer(0))
        let late = try await hash(r, keys.metrics(minuteOf: first))
        #expect(late["started"] == String(2 * inFirst + 5) && late["max:lat"] == "9000")

        // The report: folded minutes and kept seconds together cover every flush once.
        let report = try #require(try await RunReport.load(r.run, on: r.c))
        #expect(report.series.reduce(0) { $0 + $1.started } == 2 * flushed + 5)
        #expect(report.series.contains { $0.seconds > 1 } && report.series.contains { $0.seconds == 1 })
        #expect(report.series.reduce(0) { $0 + $1.seconds } >= flushed)
        await r.redis.stop()
    }
}
