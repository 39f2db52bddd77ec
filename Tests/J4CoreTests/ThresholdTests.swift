import J4Core
import Testing

@Suite("Thresholds: the texts people write")
struct ThresholdTests {
    @Test("accepted forms, with their metric, subject, comparison and limit in canonical units", arguments: [
        ("p99 < 250ms", Threshold.Metric.quantile(0.99), nil as String?, Threshold.Comparison.less, 250.0),
        ("p99.9(login) <= 1.5s", .quantile(0.999), "login", .lessOrEqual, 1500),
        ("p50(add to cart)<800us", .quantile(0.5), "add to cart", .less, 0.8),
        ("max(checkout) < 2s", .max, "checkout", .less, 2000),
        ("avg < 40", .avg, nil, .less, 40),
        ("errors < 1%", .errors, nil, .less, 1),
        ("errors(login) <= 0.5%", .errors, "login", .lessOrEqual, 0.5),
        ("dropped < 0.1%", .dropped, nil, .less, 0.1),
        ("checks > 99%", .checks, nil, .greater, 99),
        ("checks(the cart holds the product) >= 99.9%", .checks, "the cart holds the product", .greaterOrEqual, 99.9),
        ("rate >= 95/s", .rate, nil, .greaterOrEqual, 95),
    ])
    func accepted(text: String, metric: Threshold.Metric, subject: String?, comparison: Threshold.Comparison, limit: Double) throws {
        let t = try #require(Threshold.parse(text))
        #expect(t.metric == metric && t.subject == subject && t.comparison == comparison && abs(t.limit - limit) < 1e-9)
    }

    @Test("refused forms", arguments: ["p100 < 1ms", "p0 < 1ms", "p99 = 250ms", "errors < 1ms", "errors < 150%", "rate(login) > 5",
                                       "dropped(login) < 1%", "latency < 5ms", "p99 < ", "p99 < 5 parsecs", "p99((x)) < 1ms"])
    func refused(text: String) {
        #expect(Threshold.parse(text) == nil)
    }

    @Test("in a definition: texts or maps with abortOnFail; problems name the entry and list the accepted forms")
    func inDefinition() throws {
        let d = try RunDefinition.parse(text: """
            name: t
            scenario: http
            model: arrival-rate
            stages: [{ duration: 10s, target: 10 }]
            thresholds:
              - "p99 < 250ms"
              - { threshold: "errors < 1%", abortOnFail: true, delayAbortEval: 5s }
            """, format: .yaml)
        #expect(d.thresholds.map(\.text) == ["p99 < 250ms", "errors < 1%"])
        #expect(d.thresholds[1].abortOnFail && d.thresholds[1].delayAbortEvalMs == 5000 && !d.thresholds[0].abortOnFail)
        // The canonical form reads back the same.
        let again = try RunDefinition.parse(d.canonical)
        #expect(again.thresholds == d.thresholds)
        #expect {
            _ = try RunDefinition.parse(text: """
                name: t
                scenario: http
                model: arrival-rate
                stages: [{ duration: 10s, target: 10 }]
                thresholds: ["p99 < 250ms", "p99 = 3", { threshold: "errors < 1%", abortOnFail: "yes" }]
                """, format: .yaml)
        } throws: { error in
            let fields = (error as? DefinitionError)?.problems.map(\.field) ?? []
            let text = "\(error)"
            return fields == ["thresholds[1]", "thresholds[2].abortOnFail"] && text.contains("p50..p99.9") && text.contains("p99 = 3")
        }
    }
}
