import J4Core
import J4Runtime
import Testing

@Suite("Thresholds on merged metrics")
struct ThresholdEvaluationTests {
    /// Adds flush fields the way flush.lua does: HINCRBY, and the maximum for max: fields.
    static func merge(_ recorders: [MetricsRecorder]) -> [String: String] {
        var totals: [String: Int64] = [:]
        for r in recorders {
            for (_, fields) in r.drain() {
                for (k, v) in fields {
                    totals[k] = k.hasPrefix("max:") ? max(totals[k] ?? -1, v) : (totals[k] ?? 0) + v
                }
            }
        }
        return totals.mapValues(String.init)
    }

    @Test("the p99 merged from three workers' histograms is the p99 of one histogram of all the values")
    func mergedQuantiles() throws {
        var generator = SystemRandomNumberGenerator()
        let workers = (0..<3).map { _ in MetricsRecorder() }
        let all = MetricsRecorder()
        for i in 0..<30_000 {
            // A long tail: mostly 1 to 20 ms, some up to 2 s.
            let us = Int64.random(in: 1_000...20_000, using: &generator) * (i % 97 == 0 ? 100 : 1)
            workers[i % 3].finished(second: Int64(i % 10), ok: true, errorClass: nil, latencyUs: us)
            all.finished(second: 0, ok: true, errorClass: nil, latencyUs: us)
        }
        let merged = Self.merge(workers), single = Self.merge([all])
        for text in ["p50 < 1s", "p90 < 1s", "p99 < 1s", "p99.9 < 1s", "max < 1s", "avg < 1s"] {
            let t = try #require(Threshold.parse(text))
            let a = ThresholdEvaluator.value(t, totals: merged, durationS: 10), b = ThresholdEvaluator.value(t, totals: single, durationS: 10)
            #expect(a != nil && a == b, "\(text): merged \(String(describing: a)), single \(String(describing: b))")
        }
    }

    @Test("errors, dropped, checks, rate and step latencies, each against its limit")
    func verdicts() throws {
        let r = MetricsRecorder()
        let metrics = ScenarioMetrics(recorder: r) { 1 }
        for i in 0..<100 {
            r.add("started", second: 1)
            r.finished(second: 1, ok: i >= 3, errorClass: i < 3 ? "timeout" : nil, latencyUs: 10_000)
            metrics.checked("status ok", i >= 1)
        }
        r.add("dropped", 2, second: 1)
        r.observe("s:login", micros: 150_000, second: 1)
        r.add("s:login:f", second: 1)
        r.observe("s:login", micros: 50_000, second: 1)
        let totals = Self.merge([r])
        let results = ThresholdEvaluator.evaluate([
            "errors < 5%", "errors < 2%", "dropped < 1%", "dropped < 3%", "checks > 98%", "checks(status ok) > 99.5%",
            "rate >= 10", "rate > 11", "max(login) < 200ms", "avg(login) < 90ms", "errors(login) < 10%", "p99(nothing) < 1s",
        ].compactMap(Threshold.parse), totals: totals, durationS: 10)
        #expect(results.map(\.ok) == [true, false, false, true, true, false, true, false, true, false, false, false])
        #expect(results[0].value == 3 && results[6].value == 10 && results[10].value == 50)
        #expect(results.last?.value == nil && results.last?.shown == "no data")
    }
}
