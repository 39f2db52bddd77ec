import J4Runtime
import Testing

/// Every request to the dashboard, decided before any Redis call: which page or API it is,
/// and what is refused with which status and field.
@Suite("Dashboard routes")
struct DashboardRouteTests {
    static let id = "20261202-230047-aedd"

    @Test("what each method and path is", arguments: [
        ("GET", "/", nil, DashboardRoute.runsPage),
        ("HEAD", "/", nil, .runsPage),
        ("GET", "/runs/\(id)", nil, .runPage(id)),
        ("GET", "/api/runs", nil, .runs),
        ("GET", "/api/runs/", nil, .runs),
        ("GET", "/api/runs?active=1", nil, .runs),
        ("GET", "/api/runs/\(id)", nil, .run(id)),
        ("GET", "/api/runs/\(id)/stream", nil, .stream(id)),
        ("GET", "/api/runs/\(id)/report", nil, .report(id)),
        ("POST", "/api/runs/\(id)/stop", nil, .control(id, .stop)),
        ("POST", "/api/runs/\(id)/stop", "", .control(id, .stop)),
        ("POST", "/api/runs/\(id)/abort", nil, .control(id, .abort(reason: "aborted from the dashboard"))),
        ("POST", "/api/runs/\(id)/abort", "{\"reason\": \"bad deploy\"}", .control(id, .abort(reason: "bad deploy"))),
        ("POST", "/api/runs/\(id)/scale", "{\"target\": 50}", .control(id, .scale(target: 50))),
        ("POST", "/api/runs/\(id)/scale", "{\"target\": 12.5}", .control(id, .scale(target: 12.5))),
        ("POST", "/api/runs/\(id)/scale", "{\"target\": 0}", .control(id, .scale(target: 0))),
    ] as [(String, String, String?, DashboardRoute)])
    func routes(method: String, path: String, body: String?, expected: DashboardRoute) {
        #expect(DashboardRoute.parse(method: method, path: path, body: body, allowControl: true) == .success(expected), "\(method) \(path)")
    }

    @Test("what is refused: status, field and a message naming the value", arguments: [
        ("GET", "/nope", nil, true, 404, nil, "/nope"),
        ("GET", "/api/runs/\(id)/nope", nil, true, 404, nil, "nope"),
        ("GET", "/api/runs/NOT_AN_ID", nil, true, 400, "run", "NOT_AN_ID"),
        ("GET", "/runs/a%20b", nil, true, 400, "run", "a%20b"),
        ("POST", "/api/runs/bad.id/stop", nil, true, 400, "run", "bad.id"),
        ("POST", "/api/runs", nil, true, 405, nil, "use GET"),
        ("GET", "/api/runs/\(id)/stop", nil, true, 405, nil, "use POST"),
        ("POST", "/api/runs/\(id)/stop", nil, false, 403, nil, "--allow-control"),
        ("POST", "/api/runs/\(id)/scale", "{\"target\": 5}", false, 403, nil, "--allow-control"),
        ("POST", "/api/runs/\(id)/scale", nil, true, 400, "target", "missing"),
        ("POST", "/api/runs/\(id)/scale", "{\"target\": -1}", true, 400, "target", "-1"),
        ("POST", "/api/runs/\(id)/scale", "{\"target\": \"fast\"}", true, 400, "target", "\"fast\""),
        ("POST", "/api/runs/\(id)/scale", "target=5", true, 400, "body", "target=5"),
        ("POST", "/api/runs/\(id)/scale", "[5]", true, 400, "body", "[5]"),
        ("POST", "/api/runs/\(id)/abort", "{\"reason\": 7}", true, 400, "reason", "7"),
    ] as [(String, String, String?, Bool, Int, String?, String)])
    func refused(method: String, path: String, body: String?, allowControl: Bool, status: Int, field: String?, mentions: String) {
        guard case .failure(let refusal) = DashboardRoute.parse(method: method, path: path, body: body, allowControl: allowControl) else {
            Issue.record("\(method) \(path) was accepted")
            return
        }
        #expect(refusal.status == status && refusal.field == field, "\(method) \(path): \(refusal)")
        #expect(refusal.message.contains(mentions), "\(refusal.message)")
        #expect(refusal.json.contains("\"error\""))
    }

    @Test("Server-Sent Events: the name, a data line per line, a blank line")
    func events() {
        #expect(ServerSentEvent.format("point", "{\"a\":1}") == "event: point\ndata: {\"a\":1}\n\n")
        #expect(ServerSentEvent.format("state", "a\nb") == "event: state\ndata: a\ndata: b\n\n")
    }

    @Test("which Host a dashboard answers: loopback names only when it listens on loopback (DNS rebinding sends the attacker's name)", arguments: [
        ("127.0.0.1:8089", "127.0.0.1", true), ("localhost:8089", "127.0.0.1", true), ("LOCALHOST", "127.0.0.1", true),
        ("[::1]:8089", "127.0.0.1", true), ("127.0.0.2:9000", "localhost", true), ("app.localhost:8089", "::1", true),
        ("evil.example:8089", "127.0.0.1", false), ("127.0.0.1.evil.example:8089", "127.0.0.1", false), ("127.0.0.300", "127.0.0.1", false),
        ("[::2]:8089", "127.0.0.1", false), (nil, "127.0.0.1", false),
        ("dashboard.internal:8089", "0.0.0.0", true), (nil, "10.0.0.5", true),
    ] as [(String?, String, Bool)])
    func host(host: String?, bind: String, allowed: Bool) {
        #expect(DashboardRoute.hostAllowed(host, bind: bind) == allowed)
    }

    @Test("which pages may press the buttons: the dashboard's own (HTTP, or HTTPS behind a proxy) and clients that are not pages", arguments: [
        (String?.none, "127.0.0.1:8089", true), ("http://127.0.0.1:8089", "127.0.0.1:8089", true), ("https://j4.example", "j4.example", true),
        ("http://attacker.example", "127.0.0.1:8089", false), ("http://127.0.0.1:8090", "127.0.0.1:8089", false), ("null", "127.0.0.1:8089", false),
        ("http://127.0.0.1:8089", nil, false),
    ] as [(String?, String?, Bool)])
    func origin(origin: String?, host: String?, allowed: Bool) {
        #expect(DashboardRoute.originAllowed(origin, host: host) == allowed)
    }
}
