import Testing

@testable import J4Scenario

/// Prometheus label values taken from a scenario's own names are bounded per run.
@Suite("Telemetry's label bound")
struct TelemetryTests {
    @Test("the first 100 names of a label keep their value, later ones become _other, each metric on its own", arguments: [
        ("j4_steps_total", 1, ["s0": "s0"]),
        ("j4_steps_total", 100, ["s99": "s99", "s0": "s0"]),
        ("j4_steps_total", 101, ["s100": "_other", "s0": "s0", "s99": "s99"]),
        ("j4_checks_total", 250, ["s100": "_other", "s249": "_other", "s42": "s42"]),
    ])
    func bound(metric: String, names: Int, expected: [String: String]) {
        let telemetry = Telemetry(run: "r", scenario: "s")
        for i in 0..<names { _ = telemetry.bounded(metric, "s\(i)") }
        for (name, value) in expected { #expect(telemetry.bounded(metric, name) == value, "\(metric) \(name) after \(names)") }
        // Another metric's names are counted apart.
        #expect(telemetry.bounded("j4_custom_total", "s100") == "s100")
    }
}
