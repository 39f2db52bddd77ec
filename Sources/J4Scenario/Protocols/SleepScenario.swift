import J4Core

/// The built-in `sleep` scenario: each iteration waits `params.duration` and sends nothing.
/// For measuring J4 itself (memory per idle VU, coordination) and for trying a run
/// definition without a target:
///
/// ```yaml
/// scenario: sleep
/// params: { duration: 10s }     # default 1s; 1ms to 1h
/// ```
package enum SleepScenario {
    static func milliseconds(_ params: JSONValue) -> (Int64?, [DefinitionProblem]) {
        guard let value = params["duration"] else { return (1000, []) }
        if let ms = value.stringValue.flatMap(DurationText.milliseconds), (1...3_600_000).contains(ms) { return (ms, []) }
        return (nil, [DefinitionProblem(field: "params.duration", value: value.canonicalJSON, expected: "a duration from 1ms to 1h, such as 10s")])
    }

    /// The scenario.
    public static let scenario = Scenario("sleep", validate: { milliseconds($0).1 }) { vu in
        guard let ms = milliseconds(vu.params).0 else {
            throw ScenarioSetupError(message: "params of the sleep scenario do not validate: " + milliseconds(vu.params).1.map(\.description).joined(separator: "; "))
        }
        return { _ in try await Task.sleep(for: .milliseconds(ms)) }
    }
}
