import Foundation
import J4Core

/// What a request to `j4 dashboard` asks for, decided from its method, path and body alone
/// (no Redis): the pages, the JSON API under them, the live stream, and the run controls.
///
/// | method | path | answer |
/// |---|---|---|
/// | GET | `/` | the page: every run, active ones first |
/// | GET | `/runs/{id}` | the page of one run, live |
/// | GET | `/api/runs` | the runs as JSON |
/// | GET | `/api/runs/{id}` | the run's summary, the JSON of `j4 status --json` |
/// | GET | `/api/runs/{id}/stream` | Server-Sent Events: a `point` a second, a `state` when the run's state changes |
/// | GET | `/api/runs/{id}/report` | the HTML report `j4 report` writes, as a download |
/// | POST | `/api/runs/{id}/stop`, `/abort`, `/scale` | the controls (403 unless `--allow-control`) |
public enum DashboardRoute: Equatable, Sendable {
    case runsPage
    case runPage(String)
    case runs
    case run(String)
    case stream(String)
    case report(String)
    case control(String, RunControl)
}

/// A run control asked through the dashboard.
public enum RunControl: Equatable, Sendable {
    case stop
    case abort(reason: String)
    /// The new target as given: iterations per second or VUs, checked against the run's model later.
    case scale(target: Double)
}

/// A request the dashboard refuses: its HTTP status and a JSON body naming the field.
public struct DashboardRefusal: Error, Equatable, Sendable {
    public let status: Int
    /// The field at fault (`run`, `target`…), when one is.
    public let field: String?
    public let message: String

    public init(status: Int, field: String? = nil, message: String) {
        self.status = status
        self.field = field
        self.message = message
    }

    /// `{"error": message, "field": field}`.
    public var json: String {
        var object: [String: JSONValue] = ["error": .string(message)]
        if let field { object["field"] = .string(field) }
        return JSONValue.object(object).canonicalJSON
    }
}

extension DashboardRoute {
    /// The route of `method` on `path` (its query, if any, taken off), with `body` (JSON, for
    /// the controls); controls are refused with 403 unless `allowControl`.
    public static func parse(method: String, path: String, body: String?, allowControl: Bool) -> Result<DashboardRoute, DashboardRefusal> {
        let clean = path.split(separator: "?", maxSplits: 1).first.map(String.init) ?? path
        let parts = clean.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        let get = method == "GET" || method == "HEAD"
        func only(_ allowed: String, _ route: DashboardRoute) -> Result<DashboardRoute, DashboardRefusal> {
            (allowed == "GET" ? get : method == allowed) ? .success(route) : .failure(DashboardRefusal(status: 405, message: "\(method) \(clean) is not accepted; use \(allowed)"))
        }
        func runID(_ text: String) -> String? { RunID.isValid(text) ? text : nil }
        func badRun(_ text: String) -> Result<DashboardRoute, DashboardRefusal> {
            .failure(DashboardRefusal(status: 400, field: "run", message: "\"\(text)\" is not a run id: 1 to 64 of a-z, 0-9, - and _"))
        }
        switch parts.count {
        case 0: return only("GET", .runsPage)
        case 2 where parts[0] == "runs":
            guard let id = runID(parts[1]) else { return badRun(parts[1]) }
            return only("GET", .runPage(id))
        case 2 where parts == ["api", "runs"]: return only("GET", .runs)
        case 3 where parts[0] == "api" && parts[1] == "runs":
            guard let id = runID(parts[2]) else { return badRun(parts[2]) }
            return only("GET", .run(id))
        case 4 where parts[0] == "api" && parts[1] == "runs":
            guard let id = runID(parts[2]) else { return badRun(parts[2]) }
            switch parts[3] {
            case "stream": return only("GET", .stream(id))
            case "report": return only("GET", .report(id))
            case "stop", "abort", "scale":
                guard method == "POST" else { return .failure(DashboardRefusal(status: 405, message: "\(method) \(clean) is not accepted; use POST")) }
                guard allowControl else {
                    return .failure(DashboardRefusal(status: 403, message: "controls are off: this dashboard was started without --allow-control"))
                }
                return control(parts[3], body).map { .control(id, $0) }
            default: break
            }
        default: break
        }
        return .failure(DashboardRefusal(status: 404, message: "no such page: \(clean)"))
    }

    /// The control `name` with its JSON `body`: `scale` needs `{"target": number}`, `abort`
    /// takes an optional `{"reason": text}`.
    static func control(_ name: String, _ body: String?) -> Result<RunControl, DashboardRefusal> {
        let text = body?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        var object: [String: JSONValue] = [:]
        if !text.isEmpty {
            guard let parsed = try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)), case .object(let o) = parsed else {
                return .failure(DashboardRefusal(status: 400, field: "body", message: "the body is not a JSON object: \(text.prefix(80))"))
            }
            object = o
        }
        switch name {
        case "stop": return .success(.stop)
        case "abort":
            guard let reason = object["reason"] else { return .success(.abort(reason: "aborted from the dashboard")) }
            guard let text = reason.stringValue, !text.isEmpty, text.count <= 200 else {
                return .failure(DashboardRefusal(status: 400, field: "reason", message: "reason \(reason.canonicalJSON) is not accepted; give a text of 1 to 200 characters"))
            }
            return .success(.abort(reason: text))
        default:
            guard let value = object["target"] else {
                return .failure(DashboardRefusal(status: 400, field: "target", message: "target is missing; give {\"target\": iterations per second or VUs}"))
            }
            guard let number = value.doubleValue, number.isFinite, number >= 0 else {
                return .failure(DashboardRefusal(status: 400, field: "target", message: "target \(value.canonicalJSON) is not accepted; give a number from 0 up"))
            }
            return .success(.scale(target: number))
        }
    }
}

extension DashboardRoute {
    /// Whether a request with the `Host` header `host` may be answered by a dashboard bound to
    /// `bind`. Bound to a loopback address, only loopback names are answered: a page of
    /// another site whose name an attacker points at 127.0.0.1 (DNS rebinding) sends its own
    /// name. Bound elsewhere, any name (the operator chose to expose it; see SECURITY.md).
    public static func hostAllowed(_ host: String?, bind: String) -> Bool {
        guard isLoopback(bind) else { return true }
        guard let host else { return false }
        let name: Substring
        if host.hasPrefix("[") {
            name = host.dropFirst().prefix { $0 != "]" }
        } else {
            name = host.prefix { $0 != ":" }
        }
        return isLoopback(String(name))
    }

    /// Whether a control from a page of `origin` (nil: not from a browser page) may go to a
    /// dashboard asked for as `host`: only from its own pages, over HTTP or, behind a proxy,
    /// HTTPS.
    public static func originAllowed(_ origin: String?, host: String?) -> Bool {
        guard let origin else { return true }
        guard let host else { return false }
        return origin == "http://" + host || origin == "https://" + host
    }

    static func isLoopback(_ name: String) -> Bool {
        let n = name.lowercased()
        return n == "localhost" || n.hasSuffix(".localhost") || n == "::1" || n == "[::1]" || n.hasPrefix("127.")
            && n.split(separator: ".").count == 4 && n.split(separator: ".").allSatisfy { UInt8($0) != nil }
    }
}

/// Server-Sent Events as the stream writes them.
public enum ServerSentEvent {
    /// One event: its name and its data, one `data:` line per line of it, and the blank line.
    public static func format(_ name: String, _ data: String) -> String {
        var out = "event: \(name)\n"
        for line in data.split(separator: "\n", omittingEmptySubsequences: false) { out += "data: \(line)\n" }
        return out + "\n"
    }
}
