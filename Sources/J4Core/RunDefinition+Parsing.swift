import Foundation
import Yams

/// Limits that keep a definition from hurting the machines that read it.
public enum DefinitionLimits {
    /// The lease TTL of a definition that names none (`leaseTTL`), in ms.
    public static let defaultLeaseTTLMs: Int64 = 3000
    /// Largest definition file, in bytes.
    public static let maxBytes = 1 << 20
    /// Most YAML/JSON nodes after aliases are expanded.
    public static let maxNodes = 100_000
    /// Deepest nesting of lists and maps.
    public static let maxDepth = 32
    /// Longest text value (a URL, a header, a request body), in bytes.
    public static let maxStringBytes = 256 * 1024
    /// Longest map key, in bytes.
    public static let maxKeyBytes = 256
    /// Most text in all, keys and values, once YAML aliases are expanded (as for the file).
    public static let maxExpandedBytes = 1 << 20
    /// Most stages.
    public static let maxStages = 100
    /// Longest stage: 7 days.
    public static let maxStageMs: Int64 = 7 * 24 * 3_600_000
    /// Highest arrival rate, per second.
    public static let maxRate: Int64 = 10_000_000
    /// Most VUs.
    public static let maxVUs: Int64 = 1_000_000
    /// Most steps in one `step` or `exponential` stage.
    public static let maxSteps: Int64 = 100_000
    /// Most shards.
    public static let maxShards = 4096
}

extension RunDefinition {
    /// The format of a definition file.
    public enum Format: Sendable { case yaml, json }

    /// Parses and validates a definition file's text; the error lists every problem found.
    public static func parse(text: String, format: Format) throws(DefinitionError) -> RunDefinition {
        let definition = try parse(try tree(text: text, format: format))
        // What is stored and read back by every worker is the canonical JSON: it must fit the
        // same limit (escapes and quotes make it longer than the text it came from).
        let stored = definition.canonical.canonicalJSON.utf8.count
        guard stored <= DefinitionLimits.maxBytes else {
            throw DefinitionError(problems: [DefinitionProblem(
                field: "(file)", value: "\(stored) bytes as stored", expected: "at most \(DefinitionLimits.maxBytes) bytes once stored as JSON (YAML aliases expanded, text escaped)")])
        }
        return definition
    }

    /// The JSON tree of a file's text; YAML aliases are expanded within ``DefinitionLimits``.
    public static func tree(text: String, format: Format) throws(DefinitionError) -> JSONValue {
        func fail(_ what: String) -> DefinitionError {
            DefinitionError(problems: [DefinitionProblem(field: "(file)", value: nil, expected: what)])
        }
        guard text.utf8.count <= DefinitionLimits.maxBytes else {
            throw fail("the file is larger than \(DefinitionLimits.maxBytes) bytes")
        }
        if format == .json {
            do {
                _ = try JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])
            } catch {
                throw fail("not valid JSON (\((error as NSError).userInfo["NSDebugDescription"] ?? error))")
            }
        }
        // JSON is YAML: one reader gives one tree for both formats.
        switch format {
        case .json, .yaml:
            let node: Node?
            do { node = try Yams.compose(yaml: text) } catch { throw fail("not valid YAML (\(error))") }
            guard let node else { throw fail("the file is empty") }
            var budget = TreeBudget()
            guard let v = JSONValue(yaml: node, path: "", depth: 0, budget: &budget) else {
                let why = budget.failure ?? "the file is not one J4 can read"
                throw DefinitionError(problems: [DefinitionProblem(field: budget.failedAt.isEmpty ? "(file)" : budget.failedAt, value: budget.found, expected: why)])
            }
            return v
        }
    }

    /// Validates a JSON tree and builds the definition; the error lists every problem found.
    public static func parse(_ tree: JSONValue) throws(DefinitionError) -> RunDefinition {
        var v = Validator()
        guard case .object(let root) = tree else {
            throw DefinitionError(problems: [DefinitionProblem(field: "(top level)", value: v.show(tree), expected: "a map of fields such as name, scenario, model, stages")])
        }
        let known: Set = ["name", "scenario", "model", "start", "stages", "tick", "shards", "leaseTTL", "maxInFlight", "params", "thresholds"]
        for key in root.keys.sorted() where !known.contains(key) {
            v.problem(DefinitionProblem.key(key), root[key], "unknown field; the fields are \(known.sorted().joined(separator: ", "))")
        }
        let name = v.identifier("name", root["name"])
        let scenario = v.identifier("scenario", root["scenario"])
        let model: Model? = v.choice("model", root["model"], default: nil)
        let tickMs = v.duration("tick", root["tick"], default: 1000, range: 100...10_000)
        let shards = v.integer("shards", root["shards"], default: 64, range: 1...Int64(DefinitionLimits.maxShards))
        let ttlMs = v.duration("leaseTTL", root["leaseTTL"], default: DefinitionLimits.defaultLeaseTTLMs, range: 1000...60_000)
        let maxInFlight = v.integer("maxInFlight", root["maxInFlight"], default: 1000, range: 1...1_000_000)
        let isVUs = model == .vus
        let start = v.target("start", root["start"], default: 0, vus: isVUs)

        var stages: [Stage] = []
        switch root["stages"] {
        case .array(let list) where !list.isEmpty && list.count <= DefinitionLimits.maxStages:
            var previous = start
            for (i, item) in list.enumerated() {
                let path = "stages[\(i)]"
                guard case .object(let st) = item else {
                    v.problem(path, item, "a map such as { duration: 30s, target: 100 }")
                    continue
                }
                for key in st.keys.sorted() where !["duration", "target", "curve", "every"].contains(key) {
                    v.problem("\(path).\(DefinitionProblem.key(key))", st[key], "unknown field; a stage has duration, target, curve and every")
                }
                let d = v.duration("\(path).duration", st["duration"], default: nil, range: 1...DefinitionLimits.maxStageMs)
                let t = v.target("\(path).target", st["target"], default: nil, vus: isVUs)
                let curve: CurveShape = v.choice("\(path).curve", st["curve"], default: .linear) ?? .linear
                let every = v.duration("\(path).every", st["every"], default: curve == .step ? 10_000 : 1000, range: 100...DefinitionLimits.maxStageMs)
                if curve == .linear, st["every"] != nil {
                    v.problem("\(path).every", st["every"], "only step and exponential stages take every")
                }
                if let d, let every, curve != .linear, (d + every - 1) / every > DefinitionLimits.maxSteps {
                    v.problem("\(path).every", st["every"], "at most \(DefinitionLimits.maxSteps) steps per stage; use a longer every")
                }
                if curve == .exponential, let t, let p = previous, p == 0 || t == 0 {
                    v.problem("\(path).curve", st["curve"], "an exponential stage needs targets above 0 at both ends (it starts from \(Double(p) / 1000), the previous target)")
                }
                if let d, let t, let every { stages.append(Stage(durationMs: d, targetMilli: t, curve: curve, everyMs: every)) }
                previous = t
            }
        case .array(let list) where list.count > DefinitionLimits.maxStages:
            v.problem("stages", nil, "at most \(DefinitionLimits.maxStages) stages", shown: "\(list.count) stages")
        case nil:
            v.problem("stages", nil, "a list of stages such as [{ duration: 30s, target: 100 }]")
        case let other?:
            v.problem("stages", other, "a non-empty list of stages such as [{ duration: 30s, target: 100 }]")
        }

        let params = root["params"] ?? .object([:])
        if case .object = params {} else { v.problem("params", params, "a map of values handed to the scenario") }
        var thresholds: [Threshold] = []
        switch root["thresholds"] {
        case nil: break
        case .array(let list):
            for (i, entry) in list.enumerated() {
                let field = "thresholds[\(i)]"
                var text = entry.stringValue
                var abort = false
                var delay: Int64 = 0
                if case .object(let o) = entry {
                    for key in o.keys.sorted() where !["threshold", "abortOnFail", "delayAbortEval"].contains(key) {
                        v.problem("\(field).\(DefinitionProblem.key(key))", o[key], "unknown field; a threshold has threshold, abortOnFail and delayAbortEval")
                    }
                    text = o["threshold"]?.stringValue
                    if text == nil { v.problem("\(field).threshold", o["threshold"], Threshold.forms) }
                    switch o["abortOnFail"] {
                    case nil: break
                    case .bool(let b)?: abort = b
                    case let other?: v.problem("\(field).abortOnFail", other, "true or false")
                    }
                    delay = v.duration("\(field).delayAbortEval", o["delayAbortEval"], default: 0, range: 0...86_400_000) ?? 0
                } else if text == nil {
                    v.problem(field, entry, "a text (\(Threshold.forms)) or a map with threshold, abortOnFail and delayAbortEval")
                    continue
                }
                guard let text else { continue }
                guard text.count <= 200, var t = Threshold.parse(text) else {
                    v.problem(entry.stringValue == nil ? "\(field).threshold" : field, .string(text), Threshold.forms)
                    continue
                }
                t.abortOnFail = abort
                t.delayAbortEvalMs = delay
                thresholds.append(t)
            }
        case let other?: v.problem("thresholds", other, "a list such as [\"p99(login) < 250ms\", \"errors < 1%\"]")
        }
        if thresholds.count > 50 { v.problem("thresholds", .int(Int64(thresholds.count)), "at most 50 thresholds") }

        guard v.problems.isEmpty, let name, let scenario, let model, let tickMs, let shards, let ttlMs, let maxInFlight, let start else {
            throw DefinitionError(problems: v.problems)
        }
        return RunDefinition(
            name: name, scenario: scenario, model: model, startMilli: start, stages: stages,
            tickMs: tickMs, shards: Int(shards), leaseTTLMs: ttlMs, maxInFlight: Int(maxInFlight),
            params: params, thresholds: thresholds)
    }
}

/// Collects problems while reading fields; each reader returns nil when its field is wrong.
struct Validator {
    var problems: [DefinitionProblem] = []

    func show(_ value: JSONValue?) -> String? {
        guard let value else { return nil }
        let text = value.canonicalJSON
        return text.count > 60 ? String(text.prefix(57)) + "..." : text
    }

    mutating func problem(_ field: String, _ value: JSONValue?, _ expected: String, shown: String? = nil) {
        problems.append(DefinitionProblem(field: field, value: shown ?? show(value), expected: expected))
    }

    mutating func identifier(_ field: String, _ value: JSONValue?) -> String? {
        let rule = "1 to 64 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit"
        guard let s = value?.stringValue else {
            problem(field, value, rule)
            return nil
        }
        let ok = (1...64).contains(s.count) && s.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || ".-_".unicodeScalars.contains($0) }
            && s.first.map { $0.isLetter || $0.isNumber } == true
        if !ok { problem(field, value, rule) }
        return ok ? s : nil
    }

    mutating func choice<T: RawRepresentable & CaseIterable>(_ field: String, _ value: JSONValue?, default def: T?) -> T? where T.RawValue == String {
        let options = T.allCases.map(\.rawValue).joined(separator: " or ")
        guard let value else {
            if def == nil { problem(field, nil, "one of \(options)") }
            return def
        }
        guard let s = value.stringValue, let t = T(rawValue: s) else {
            problem(field, value, "one of \(options)")
            return nil
        }
        return t
    }

    mutating func duration(_ field: String, _ value: JSONValue?, default def: Int64?, range: ClosedRange<Int64>) -> Int64? {
        let accepted = "a duration from \(DurationText.format(range.lowerBound)) to \(DurationText.format(range.upperBound)), written like 250ms, 30s, 5m or 1h30m"
        guard let value else {
            if def == nil { problem(field, nil, accepted) }
            return def
        }
        guard let s = value.stringValue, let ms = DurationText.milliseconds(s), range.contains(ms) else {
            problem(field, value, accepted)
            return nil
        }
        return ms
    }

    mutating func integer(_ field: String, _ value: JSONValue?, default def: Int64, range: ClosedRange<Int64>) -> Int64? {
        guard let value else { return def }
        guard let i = value.intValue, range.contains(i) else {
            problem(field, value, "a whole number from \(range.lowerBound) to \(range.upperBound)")
            return nil
        }
        return i
    }

    /// A target in thousandths: a rate with up to 3 decimals, or a whole number of VUs.
    mutating func target(_ field: String, _ value: JSONValue?, default def: Int64?, vus: Bool) -> Int64? {
        let accepted = vus
            ? "a whole number of VUs from 0 to \(DefinitionLimits.maxVUs)"
            : "iterations per second from 0 to \(DefinitionLimits.maxRate), at most 3 decimals"
        guard let value else {
            if def == nil { problem(field, nil, accepted) }
            return def
        }
        let limit = vus ? DefinitionLimits.maxVUs : DefinitionLimits.maxRate
        if let i = value.intValue, (0...limit).contains(i) { return i * 1000 }
        if case .double(let d) = value, let milli = RunDefinition.targetMilli(d, vus: vus) { return milli }
        problem(field, value, accepted)
        return nil
    }
}

extension RunDefinition {
    /// A target in thousandths: iterations per second from 0 to the limit with at most 3
    /// decimals, or (`vus`) a whole number of VUs; nil otherwise. For `j4 scale` and the
    /// supervisor's ceiling flags as for the definition's own targets.
    public static func targetMilli(_ value: Double, vus: Bool) -> Int64? {
        let limit = vus ? DefinitionLimits.maxVUs : DefinitionLimits.maxRate
        guard value.isFinite, value >= 0, value <= Double(limit), !vus || value.rounded() == value else { return nil }
        let milli = (value * 1000).rounded()
        return abs(milli - value * 1000) < 1e-6 ? Int64(milli) : nil
    }
}

extension JSONValue {
    /// Converts a composed YAML node; nil past the depth or node budget (aliases count each use).
    init?(yaml node: Node, path: String, depth: Int, budget: inout TreeBudget) {
        budget.nodes -= 1
        guard budget.nodes >= 0 else {
            budget.fail("", "more than \(DefinitionLimits.maxNodes) values", "at most \(DefinitionLimits.maxNodes) values (YAML aliases count each time they are used)")
            return nil
        }
        guard depth <= DefinitionLimits.maxDepth else {
            budget.fail(path, "nested \(depth) levels deep", "at most \(DefinitionLimits.maxDepth) levels of lists and maps")
            return nil
        }
        switch node {
        case .scalar(let s):
            budget.bytes -= s.string.utf8.count
            guard s.string.utf8.count <= DefinitionLimits.maxStringBytes else {
                budget.fail(path, "a text of \(s.string.utf8.count) bytes", "a text of at most \(DefinitionLimits.maxStringBytes) bytes")
                return nil
            }
            guard budget.bytes >= 0 else {
                budget.fail("", "more than \(DefinitionLimits.maxExpandedBytes) bytes of text", "at most \(DefinitionLimits.maxExpandedBytes) bytes of text once YAML aliases are expanded")
                return nil
            }
            let tag = node.tag.description
            if tag.hasSuffix(":null") { self = .null }
            else if tag.hasSuffix(":bool"), let b = node.bool { self = .bool(b) }
            else if tag.hasSuffix(":int"), let i = node.int { self = .int(Int64(i)) }
            else if tag.hasSuffix(":float"), let d = node.float {
                // As its canonical JSON will say: a whole number is an integer, and .inf and
                // .nan (which JSON has not) are null; so a definition reads back the same.
                if !d.isFinite { self = .null } else if d.rounded() == d, abs(d) < 1e15 { self = .int(Int64(d)) } else { self = .double(d) }
            }
            else { self = .string(s.string) }
        case .sequence(let seq):
            var out: [JSONValue] = []
            for (i, x) in seq.enumerated() {
                guard let v = JSONValue(yaml: x, path: "\(path)[\(i)]", depth: depth + 1, budget: &budget) else { return nil }
                out.append(v)
            }
            self = .array(out)
        case .mapping(let map):
            var out: [String: JSONValue] = [:]
            for (k, x) in map {
                // A key is text: a list or a map as a key (YAML's `? [a, b]`) has no JSON form.
                guard case .scalar(let key) = k else {
                    budget.fail(path.isEmpty ? "(top level)" : path, "a list or a map as a key", "keys that are text")
                    return nil
                }
                let field = path.isEmpty ? DefinitionProblem.key(key.string) : "\(path).\(DefinitionProblem.key(key.string))"
                guard key.string.utf8.count <= DefinitionLimits.maxKeyBytes else {
                    budget.fail(field, "a key of \(key.string.utf8.count) bytes", "a key of at most \(DefinitionLimits.maxKeyBytes) bytes")
                    return nil
                }
                budget.bytes -= key.string.utf8.count
                guard let v = JSONValue(yaml: x, path: field, depth: depth + 1, budget: &budget) else { return nil }
                out[key.string] = v
            }
            self = .object(out)
        case .alias:
            return nil
        }
    }
}

/// What reading a file may still spend, and where and why it stopped.
struct TreeBudget {
    var nodes = DefinitionLimits.maxNodes
    var bytes = DefinitionLimits.maxExpandedBytes
    var failedAt = ""
    var found = ""
    var failure: String?

    /// Records where reading stopped, what was found there, and what is accepted.
    mutating func fail(_ path: String, _ found: String, _ accepted: String) {
        failedAt = path
        self.found = found
        failure = accepted
    }
}
