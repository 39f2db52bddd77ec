import J4Core
import J4Redis
import J4Runtime
import J4Scenario
import J4TestSupport
import Testing

@Suite("Thresholds on merged metrics (flush.lua on a real redis-server)")
struct ThresholdEvaluationTests {
    /// Flushes each recorder as one worker process through flush.lua and reads the run's
    /// totals back: the merge the cluster makes, not a copy of it.
    static func merge(_ recorders: [MetricsRecorder]) async throws -> [String: String] {
        let redis = try await EmbeddedRedis.start()
        let c = redis.connect()
        let client = RunClient(run: "merge")
        for (i, r) in recorders.enumerated() {
            for (seq, (second, fields)) in r.drain().enumerated() {
                #expect(try await client.flush(c, worker: "w\(i)|n", seq: Int64(seq + 1), second: second, fields: fields))
            }
        }
        let totals = try await c.send(["HGETALL", client.keys.totals]).hash ?? [:]
        await c.close()
        await redis.stop()
        return totals
    }

    @Test("flush.lua merges every kind of field as MetricField.merge says: sums, and maximums for max: fields")
    func mergeRule() async throws {
        let fields: [MetricField] = [.started, .ok, .failed, .dropped, .error("timeout"), .latencyBucket(120), .latencySum,
                                     .histogramBucket(MetricField.step("login"), 7), .histogramSum(MetricField.custom("delivery")),
                                     .maximum(MetricField.iterationHistogram), .maximum(MetricField.step("login")), .activeWorker("w1"),
                                     .stepFailed("login"), .stepError("login", "status_500"), .check("ok", passed: true), .counter("orders")]
        let redis = try await EmbeddedRedis.start()
        let c = redis.connect()
        let client = RunClient(run: "rule")
        var expected: [String: Int64] = [:]
        for worker in 0..<3 {
            let values = fields.enumerated().map { (i, f) in (f.name, Int64((i + 3) * (worker == 1 ? 5 : worker + 1))) }
            #expect(try await client.flush(c, worker: "w\(worker)|n", seq: 1, second: 100, fields: values))
            for (name, v) in values { expected[name] = MetricField.merge(name, current: expected[name], value: v) }
        }
        let totals = try await c.send(["HGETALL", client.keys.totals]).hash ?? [:]
        #expect(totals == expected.mapValues(String.init))
        // Every field written is one of the grammar, and reads back as itself.
        for f in fields { #expect(MetricField(f.name) == f, "\(f.name)") }
        #expect(fields.filter(\.keepsMaximum).allSatisfy { $0.name.hasPrefix("max:") })
        await c.close()
        await redis.stop()
    }

    @Test("the p99 merged from three workers' histograms is the p99 of one histogram of all the values")
    func mergedQuantiles() async throws {
        var generator = SystemRandomNumberGenerator()
        let workers = (0..<3).map { _ in MetricsRecorder() }
        let all = MetricsRecorder()
        for i in 0..<30_000 {
            // A long tail: mostly 1 to 20 ms, some up to 2 s.
            let us = Int64.random(in: 1_000...20_000, using: &generator) * (i % 97 == 0 ? 100 : 1)
            workers[i % 3].finished(second: Int64(i % 10), ok: true, errorClass: nil, latencyUs: us)
            all.finished(second: 0, ok: true, errorClass: nil, latencyUs: us)
        }
        let merged = try await Self.merge(workers), single = try await Self.merge([all])
        for text in ["p50 < 1s", "p90 < 1s", "p99 < 1s", "p99.9 < 1s", "max < 1s", "avg < 1s"] {
            let t = try #require(Threshold.parse(text))
            let a = ThresholdEvaluator.value(t, totals: merged, durationS: 10), b = ThresholdEvaluator.value(t, totals: single, durationS: 10)
            #expect(a != nil && a == b, "\(text): merged \(String(describing: a)), single \(String(describing: b))")
        }
    }

    @Test("errors, dropped, checks, rate and step latencies, each against its limit")
    func verdicts() async throws {
        let r = MetricsRecorder()
        let metrics = ScenarioMetrics(recorder: r) { 1 }
        for i in 0..<100 {
            r.add(.started, second: 1)
            r.finished(second: 1, ok: i >= 3, errorClass: i < 3 ? "timeout" : nil, latencyUs: 10_000)
            metrics.checked("status ok", i >= 1)
        }
        r.add(.dropped, 2, second: 1)
        r.observe(MetricField.step("login"), micros: 150_000, second: 1)
        r.add(.stepFailed("login"), second: 1)
        r.observe(MetricField.step("login"), micros: 50_000, second: 1)
        let totals = try await Self.merge([r])
        let results = ThresholdEvaluator.evaluate([
            "errors < 5%", "errors < 2%", "dropped < 1%", "dropped < 3%", "checks > 98%", "checks(status ok) > 99.5%",
            "rate >= 10", "rate > 11", "max(login) < 200ms", "avg(login) < 90ms", "errors(login) < 10%", "p99(nothing) < 1s",
        ].compactMap(Threshold.parse), totals: totals, durationS: 10)
        #expect(results.map(\.ok) == [true, false, false, true, true, false, true, false, true, false, false, false])
        #expect(results[0].value == 3 && results[6].value == 10 && results[10].value == 50)
        #expect(results.last?.value == nil && results.last?.shown == "no data")
    }
}
