import J4Core
import Testing

@testable import J4Runtime
@testable import J4Scenario

/// What a worker flushes: every field in the grammar, whatever the scenario names.
@Suite("Metrics recorder")
struct MetricsRecorderTests {
    @Test("every flushed field parses as a MetricField, error classes with a colon included")
    func fieldsParse() {
        let r = MetricsRecorder()
        r.finished(second: 5, ok: false, errorClass: "grpc:unavailable", latencyUs: 1200)
        r.finished(second: 5, ok: true, errorClass: nil, latencyUs: 900)
        r.add(.started, 2, second: 5)
        r.add(.tickDropped(3), second: 5)
        r.observe(MetricField.step("login"), micros: 300, second: 5)
        r.noteSlow(latencyUs: 1200, member: "trace w0 1 2 3")
        let fields = r.drain().flatMap(\.fields)
        #expect(fields.allSatisfy { MetricField($0.0) != nil }, "\(fields.map(\.0).filter { MetricField($0) == nil })")
        #expect(fields.contains { $0.0 == "err:grpc_unavailable" && $0.1 == 1 })
    }
}
