import Foundation
import J4Core
import J4TestSupport
import Testing

@Suite("Run definitions")
struct DefinitionTests {
    @Test("the fixture folder and its expectations agree")
    func fixturesListed() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: InvalidFixtures.directory.path).filter { $0 != "expectations.txt" }.sorted()
        #expect(files == InvalidFixtures.all.map(\.file).sorted())
        #expect(files.count >= 15)
    }

    @Test("every malformed definition is refused, naming its field", arguments: InvalidFixtures.all.filter { $0.layer == "core" })
    func refused(_ c: InvalidFixtures.Case) throws {
        let text = try String(contentsOfFile: c.path, encoding: .utf8)
        let error = #expect(throws: DefinitionError.self) {
            try RunDefinition.parse(text: text, format: c.file.hasSuffix(".json") ? .json : .yaml)
        }
        #expect(error?.problems.contains { $0.field == c.field } == true, "problems: \(error?.problems ?? [])")
        #expect(error?.description.contains(c.field) == true)
    }

    @Test("every problem is listed, not just the first")
    func allProblems() {
        let error = #expect(throws: DefinitionError.self) {
            try RunDefinition.parse(text: "name: Bad Name\nmodel: nope\ntick: 1ms\nstages: [{duration: x, target: -1}]\n", format: .yaml)
        }
        let fields = Set(error?.problems.map(\.field) ?? [])
        #expect(fields == ["name", "scenario", "model", "tick", "stages[0].duration", "stages[0].target"])
        // Each names the value typed and what is accepted.
        let tick = error?.problems.first { $0.field == "tick" }
        #expect(tick?.value == "\"1ms\"")
        #expect(tick?.expected.contains("100ms") == true)
    }

    static let head = "name: t\nscenario: http\nmodel: arrival-rate\nstages: [{ duration: 10s, target: 10 }]\n"

    @Test("limits a file cannot pass: each refusal names the field, what was found and the limit", arguments: [
        // A text longer than a value may be.
        (head + "params: { body: \"" + String(repeating: "x", count: DefinitionLimits.maxStringBytes + 1) + "\" }", "params.body", "at most 262144 bytes"),
        // A key longer than a key may be (the field shows it cut).
        (head + "params: { " + String(repeating: "k", count: 300) + ": 1 }", "params." + String(repeating: "k", count: 57) + "...", "at most 256 bytes"),
        // Aliases that multiply text past 1 MiB with few values (not caught by the value count).
        (head + "a: &a \"" + String(repeating: "x", count: 4000) + "\"\nb: &b [" + Array(repeating: "*a", count: 40).joined(separator: ",") + "]\nc: [" + Array(repeating: "*b", count: 40).joined(separator: ",") + "]", "(file)", "once YAML aliases are expanded"),
        // Billion laughs: values multiplied by aliases.
        (head + "a: &a [1,1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]", "(file)", "at most 100000 values"),
        // Nesting past 32 levels.
        (head + "params: " + String(repeating: "[", count: 40) + String(repeating: "]", count: 40), "params" + String(repeating: "[0]", count: 32), "at most 32 levels"),
        // A map as a key, which JSON has no form for.
        (head + "params: { ? [a, b] : 1 }", "params", "keys that are text"),
        // Text that grows past 1 MiB when stored as JSON (each control character is 6 bytes escaped).
        (head + "params: { body: \"" + String(repeating: "\\x01", count: 250_000) + "\" }", "(file)", "once stored as JSON"),
        // A key that is not a plain word is quoted in the field.
        (head + "\"\": 1", "\"\"", "unknown field"),
    ])
    func limits(text: String, field: String, accepted: String) {
        #expect {
            try RunDefinition.parse(text: text, format: .yaml)
        } throws: { error in
            guard let e = error as? DefinitionError, let p = e.problems.first(where: { $0.field == field }) else { return false }
            return p.expected.contains(accepted) && p.value != nil && (p.value?.utf8.count ?? 0) <= 100
        }
    }

    @Test("what YAML has and JSON has not reads back the same from the canonical form: whole floats, .inf, control and C1 characters, a byte-order mark")
    func canonicalEdges() throws {
        let d = try RunDefinition.parse(text: Self.head + "params: { a: 90.0, b: .inf, c: .nan, d: \"x\\x85y\\x01z\\uFEFF\\x7f\" }", format: .yaml)
        #expect(d.params["a"] == .int(90) && d.params["b"] == .null && d.params["c"] == .null)
        #expect(try RunDefinition.parse(text: d.canonical.canonicalJSON, format: .json) == d)
    }

    @Test("defaults, and YAML and JSON read the same")
    func defaults() throws {
        let yaml = try RunDefinition.parse(text: "name: a\nscenario: http\nmodel: arrival-rate\nstages:\n  - { duration: 1m, target: 5 }\n", format: .yaml)
        let json = try RunDefinition.parse(text: #"{"name":"a","scenario":"http","model":"arrival-rate","stages":[{"duration":"1m","target":5}]}"#, format: .json)
        #expect(yaml == json)
        #expect(yaml.tickMs == 1000 && yaml.shards == 64 && yaml.leaseTTLMs == 3000 && yaml.maxInFlight == 1000 && yaml.startMilli == 0)
        #expect(yaml.stages == [RunDefinition.Stage(durationMs: 60_000, targetMilli: 5000, curve: .linear, everyMs: 1000)])
    }

    @Test("the canonical form reads back as the same definition")
    func roundTrip() throws {
        let text = """
        name: chat-send
        scenario: chat
        model: arrival-rate
        start: 0.5
        stages:
          - { duration: 60s, target: 500 }
          - { duration: 5m, target: 500, curve: step, every: 30s }
          - { duration: 30s, target: 10, curve: exponential }
        tick: 250ms
        shards: 7
        leaseTTL: 5s
        maxInFlight: 2000
        thresholds: ["p99(send) < 250ms", "errors < 1%"]
        params: { room: "load-test", n: 3, nested: { ok: true, list: [1, 2.5, "x"] } }
        """
        let d = try RunDefinition.parse(text: text, format: .yaml)
        let back = try RunDefinition.parse(text: d.canonical.canonicalJSON, format: .json)
        #expect(back == d)
        #expect(d.canonical.canonicalJSON == back.canonical.canonicalJSON)
        #expect(d.params["nested"]?["list"] == .array([.int(1), .double(2.5), .string("x")]))
    }
}

@Suite("Documentation")
struct DocumentationTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test("the README's scenario example is the compiled one in examples/custom-scenario")
    func readmeExampleCompiles() throws {
        let readme = try String(contentsOf: Self.root.appendingPathComponent("README.md"), encoding: .utf8)
        let example = try String(contentsOf: Self.root.appendingPathComponent("examples/custom-scenario/main.swift"), encoding: .utf8)
        #expect(readme.contains("```swift\n" + example + "```"))
    }

    @Test("every Swift block of the scenario guide is compiled code of examples/guide")
    func guideCompiles() throws {
        let guide = try String(contentsOf: Self.root.appendingPathComponent("docs/SCENARIOS.md"), encoding: .utf8)
        let code = try String(contentsOf: Self.root.appendingPathComponent("examples/guide/main.swift"), encoding: .utf8)
        let blocks = guide.components(separatedBy: "```swift\n").dropFirst().compactMap { $0.components(separatedBy: "```").first }
        #expect(blocks.count >= 6)
        for block in blocks where !block.hasPrefix("// Package.swift") {
            #expect(code.contains(block), "not in examples/guide/main.swift:\n\(block)")
        }
    }

    @Test("the Grafana dashboard is JSON and queries only metrics J4 exports")
    func dashboard() throws {
        let data = try Data(contentsOf: Self.root.appendingPathComponent("deploy/k8s/base/grafana/j4-dashboard.json"))
        let dashboard = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let telemetry = try String(contentsOf: Self.root.appendingPathComponent("Sources/J4Scenario/Metrics/Telemetry.swift"), encoding: .utf8)
            + String(contentsOf: Self.root.appendingPathComponent("Sources/J4Runtime/Supervisor/Supervisor.swift"), encoding: .utf8)
        let text = String(decoding: data, as: UTF8.self)
        let names = Set(text.matches(of: /j4_[a-z_]+/).map { String($0.0) }.map { n in
            ["_bucket", "_count", "_sum"].reduce(n) { $0.hasSuffix($1) ? String($0.dropLast($1.count)) : $0 }
        })
        #expect((dashboard["panels"] as? [Any])?.count ?? 0 >= 10 && names.count >= 12)
        for name in names { #expect(telemetry.contains("\"\(name)\"") || telemetry.contains("`\(name)`"), "\(name) is not exported") }
    }

    @Test("the demo definition validates")
    func demoValidates() throws {
        let text = try String(contentsOf: Self.root.appendingPathComponent("examples/demo.yaml"), encoding: .utf8)
        let d = try RunDefinition.parse(text: text, format: .yaml)
        #expect(Curve(d).totalIterations == 1500)
    }
}
