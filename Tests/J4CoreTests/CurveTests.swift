import J4Core
import Testing

/// Builds a valid definition from a compact description; fails the test on any problem.
func definition(
    model: String = "arrival-rate", start: Double = 0, stages: [(String, Double, String?, String?)],
    tick: String = "1s", shards: Int = 16
) throws -> RunDefinition {
    var st: [JSONValue] = []
    for (d, t, curve, every) in stages {
        var o: [String: JSONValue] = ["duration": .string(d), "target": t.rounded() == t ? .int(Int64(t)) : .double(t)]
        if let curve { o["curve"] = .string(curve) }
        if let every { o["every"] = .string(every) }
        st.append(.object(o))
    }
    return try RunDefinition.parse(.object([
        "name": "t", "scenario": "http", "model": .string(model),
        "start": start.rounded() == start ? .int(Int64(start)) : .double(start),
        "stages": .array(st), "tick": .string(tick), "shards": .int(Int64(shards)),
    ]))
}

@Suite("Curve: exact totals")
struct CurveTotalTests {
    struct Row: CustomTestStringConvertible, Sendable {
        var note: String
        var start: Double
        var stages: [(String, Double, String?, String?)]
        var tick: String
        var total: Int64
        var testDescription: String { note }
    }

    static let rows: [Row] = [
        // Constant 200/s for 10 s: the simplest hold.
        Row(note: "200/s × 10s", start: 200, stages: [("10s", 200, nil, nil)], tick: "1s", total: 2000),
        // Ramp 0 → 100 over 10 s (500) then hold 100 for 10 s (1000).
        Row(note: "ramp then hold", start: 0, stages: [("10s", 100, nil, nil), ("10s", 100, nil, nil)], tick: "1s", total: 1500),
        // An odd rate with a tick that does not divide the duration: 7/s × 10.05 s = 70.35 → 71.
        Row(note: "odd rate, ragged last tick", start: 7, stages: [("10050ms", 7, nil, nil)], tick: "300ms", total: 71),
        // 1/3 of an iteration per second is not a thousandth: 0.333/s × 30 s = 9.99 → 10.
        Row(note: "fractional rate", start: 0.333, stages: [("30s", 0.333, nil, nil)], tick: "100ms", total: 10),
        // 0.5/s for 3 s = 1.5 → 2.
        Row(note: "half an iteration per second", start: 0.5, stages: [("3s", 0.5, nil, nil)], tick: "1s", total: 2),
        // Ramp down 100 → 0 over 7 s = 350.
        Row(note: "ramp down", start: 100, stages: [("7s", 0, nil, nil)], tick: "700ms", total: 350),
        // Steps 0 → 90 in 3 steps of 10 s: 30·10 + 60·10 + 90·10 = 1800.
        Row(note: "step", start: 0, stages: [("30s", 90, "step", "10s")], tick: "1s", total: 1800),
        // Steps with a short last step: 25 s in 10 s steps: 30·10 + 60·10 + 90·5 = 1350.
        Row(note: "step, short last step", start: 0, stages: [("25s", 90, "step", "10s")], tick: "1s", total: 1350),
        // Exponential 10 → 80 over 3 steps of 1 s: 20 + 40 + 80 = 140.
        Row(note: "exponential doubling", start: 10, stages: [("3s", 80, "exponential", "1s")], tick: "1s", total: 140),
        // Many stages: 1 s each of 1, 2, 3 … ramps; total is the sum of trapezoids.
        Row(note: "ramp 0→10 then 10→0", start: 0, stages: [("10s", 10, nil, nil), ("10s", 0, nil, nil)], tick: "1s", total: 100),
    ]

    @Test("total is ceil(A(T)) and the plan's last value", arguments: rows)
    func total(_ row: Row) throws {
        let d = try definition(start: row.start, stages: row.stages, tick: row.tick)
        let curve = Curve(d)
        #expect(curve.totalIterations == row.total)
        #expect(curve.firstIteration(ofTick: curve.tickCount) == row.total)
        // The ticks' shares add up to the total, whatever the tick.
        var sum: Int64 = 0
        for n in 0..<curve.tickCount {
            let share = curve.firstIteration(ofTick: n + 1) - curve.firstIteration(ofTick: n)
            #expect(share >= 0)
            sum += share
        }
        #expect(sum == row.total)
    }

    @Test("the total does not depend on the tick", arguments: ["100ms", "250ms", "300ms", "700ms", "1s", "1500ms", "10s"])
    func tickIndependent(tick: String) throws {
        let d = try definition(start: 0, stages: [("13s", 97, nil, nil), ("7s", 97, nil, nil), ("11s", 3, nil, nil)], tick: tick)
        // 97·13/2 + 97·7 + (97+3)·11/2 = 630.5 + 679 + 550 = 1859.5 → 1860
        #expect(Curve(d).totalIterations == 1860)
    }

    @Test("per-second counts of a ramp follow the curve")
    func rampSeconds() throws {
        let d = try definition(start: 0, stages: [("10s", 100, nil, nil), ("10s", 100, nil, nil)])
        let curve = Curve(d)
        // Second k of the ramp carries 5·(2k+1) iterations (area of a trapezoid), then 100/s.
        let expected: [Int64] = (0..<10).map { 5 * (2 * $0 + 1) } + Array(repeating: 100, count: 10)
        let actual = (0..<Int64(20)).map { curve.firstIteration(ofTick: $0 + 1) - curve.firstIteration(ofTick: $0) }
        #expect(actual == expected)
    }

    @Test("exact where floating point would be one off")
    func noFloatingPointCreep() throws {
        // 0.1/s in 100 ms ticks for 10 s: summing 0.01 a thousand times in Double drifts.
        let d = try definition(start: 0.1, stages: [("10s", 0.1, nil, nil)], tick: "100ms")
        let curve = Curve(d)
        #expect(curve.totalIterations == 1)
        #expect(curve.cumulative(atMs: 10_000) == Rational(1))
        #expect(curve.firstIteration(ofTick: 50) == 1)  // A(5 s) = 0.5 → iteration 0 is in the first half
    }
}

@Suite("Curve: VUs and timing")
struct CurveVUTests {
    @Test("V(n) follows the ramp and is 0 from the end on")
    func vus() throws {
        let d = try definition(model: "vus", start: 0, stages: [("10s", 20, nil, nil), ("5s", 20, nil, nil)])
        let curve = Curve(d)
        #expect((0..<Int64(16)).map { curve.vus(inTick: $0) } == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 20, 20, 20, 20, 0])
        #expect(curve.peakVUs == 20)
    }

    @Test("iteration g is placed at A⁻¹(g), inside the tick that owns it")
    func intendedStart() throws {
        let d = try definition(start: 0, stages: [("10s", 100, nil, nil)])
        let curve = Curve(d)
        for n in Int64(0)..<10 {
            for g in curve.firstIteration(ofTick: n)..<curve.firstIteration(ofTick: n + 1) {
                let t = curve.intendedStartMs(ofIteration: g, inTick: n)
                #expect(t >= Double(n * 1000) && t < Double((n + 1) * 1000))
                // A(t) = 5·t² (t in s) on this ramp, so t = sqrt(g/5).
                #expect(abs(t / 1000 - (Double(g) / 5).squareRoot()) < 0.001)
            }
        }
    }

    @Test("a tick's schedule agrees with A⁻¹ to a microsecond", arguments: [
        (0.0, 100.0, "10s", "linear", 0), (20_000, 20_000, "2s", "linear", 0), (5, 5_000, "4s", "exponential", 0), (1, 1, "5s", "linear", 0), (0, 3_000, "6s", "step", 0),
        // Solved in closed form: a ramp down to 0, a slow odd rate, a ramp between odd rates.
        (3_000, 0, "3s", "linear", 0), (0.7, 0.7, "9s", "linear", 0), (123.456, 7.89, "4s", "linear", 0),
        // Live scales (from tick 2 to 2,500/s, from tick 4 to 0.5/s) on a ramp.
        (100, 900, "7s", "linear", 2),
    ])
    func tickSchedule(start: Double, target: Double, duration: String, shape: String, scales: Int) throws {
        let d = try definition(start: start, stages: [(duration, target, shape == "linear" ? nil : shape, shape == "step" ? "1s" : nil)])
        let curve = Curve(d, scales: Array([Curve.Scale(fromTick: 2, targetMilli: 2_500_000), Curve.Scale(fromTick: 4, targetMilli: 500)].prefix(scales)))
        for n in Int64(0)..<curve.tickCount {
            var schedule = TickSchedule(curve: curve, tick: n)
            for g in curve.firstIteration(ofTick: n)..<curve.firstIteration(ofTick: n + 1) {
                let fast = schedule.startMs(ofIteration: g)
                let exact = curve.intendedStartMs(ofIteration: g, inTick: n)
                #expect(abs(fast - exact) < 0.002, "tick \(n), iteration \(g): \(fast) vs \(exact)")
                #expect(fast >= Double(n * 1000) && fast < Double((n + 1) * 1000))
            }
        }
    }

    @Test("constant rate spaces iterations evenly")
    func evenSpacing() throws {
        let d = try definition(start: 4, stages: [("1s", 4, nil, nil)])
        let curve = Curve(d)
        #expect((0..<Int64(4)).map { curve.intendedStartMs(ofIteration: $0, inTick: 0).rounded() } == [0, 250, 500, 750])
    }
}

@Suite("Striping")
struct StripingTests {
    @Test("shares of every shard add up to the range, and differ by at most one",
          arguments: [(Int64(0), Int64(2000), 16), (7, 8, 16), (5, 5, 3), (123, 4567, 64), (0, 3, 7), (999, 1003, 1)])
    func shares(lo: Int64, hi: Int64, shards: Int) {
        let s = Striping(shards: shards)
        let counts = (0..<shards).map { s.count(in: lo..<hi, shard: $0) }
        #expect(counts.reduce(0, +) == hi - lo)
        #expect((counts.max() ?? 0) - (counts.min() ?? 0) <= 1)
        for i in 0..<shards {
            let members = Array(s.members(of: lo..<hi, shard: i))
            #expect(Int64(members.count) == counts[i])
            #expect(members.allSatisfy { s.shard(of: $0) == i && (lo..<hi).contains($0) })
        }
    }

    @Test("a small target still spreads over all shards")
    func smallTarget() {
        let s = Striping(shards: 4)
        // Ticks of 1 iteration each go to shards 0, 1, 2, 3, 0 …
        #expect((Int64(0)..<8).map { g in (0..<4).first { s.count(in: g..<g + 1, shard: $0) == 1 }! } == [0, 1, 2, 3, 0, 1, 2, 3])
    }
}

@Suite("Curve: live scaling")
struct CurveScaleTests {
    @Test("a scale restarts the curve at F(k) with the new constant target")
    func scaleUp() throws {
        let d = try definition(start: 100, stages: [("20s", 100, nil, nil)])
        let curve = Curve(d, scales: [Curve.Scale(fromTick: 5, targetMilli: 300_000)])
        #expect((0...6).map { curve.firstIteration(ofTick: $0) } == [0, 100, 200, 300, 400, 500, 800])
        #expect(curve.totalIterations == 500 + 300 * 15)
        #expect(curve.targetMilli(atMs: 4999) == 100_000 && curve.targetMilli(atMs: 5000) == 300_000)
        // Intended starts in tick 5 are spaced for 300/s.
        #expect(abs(curve.intendedStartMs(ofIteration: 503, inTick: 5) - 5010) < 0.01)
    }

    @Test("scales chain; fractional rates stay exact; a ragged last tick counts to T")
    func chained() throws {
        let d = try definition(start: 10, stages: [("10500ms", 10, nil, nil)], tick: "1s")
        let curve = Curve(d, scales: [Curve.Scale(fromTick: 2, targetMilli: 2500), Curve.Scale(fromTick: 6, targetMilli: 1_333)])
        // F(2) = 20; then 2.5/s: F(6) = 20 + 10 = 30; then 1.333/s for 4.5 s = 5.9985 → 36.
        #expect(curve.firstIteration(ofTick: 6) == 30)
        #expect(curve.totalIterations == 36)
    }

    @Test("VUs follow a scale from its tick")
    func vus() throws {
        let d = try definition(model: "vus", start: 10, stages: [("10s", 10, nil, nil)])
        let curve = Curve(d, scales: [Curve.Scale(fromTick: 4, targetMilli: 25_000)])
        #expect((0..<Int64(11)).map { curve.vus(inTick: $0) } == [10, 10, 10, 10, 25, 25, 25, 25, 25, 25, 0])
    }
}
