import AsyncHTTPClient
import Foundation
import J4Core
import NIOCore
import NIOHTTP1

/// A response whose status was not one the run expects.
public struct UnexpectedStatus: ClassifiedError, CustomStringConvertible {
    /// The status received.
    public let status: Int
    public var errorClass: String { "status_\(status)" }
    public var description: String { "unexpected HTTP status \(status)" }
}

/// The built-in `http` scenario, usable without writing Swift:
///
/// ```yaml
/// scenario: http
/// params:
///   request: { method: GET, url: "http://127.0.0.1:8080/", headers: { accept: "*/*" }, body: "" }
///   expect: { status: 200 }      # a status or a list; default: any 2xx
///   timeout: 10s                 # default 30s
///   version: "1.1"               # or "2": HTTP/2 (by ALPN over https://, h2c over http://)
/// ```
///
/// Both go on J4's lean client, over TLS for `https://`. With `version: "2"` each VU's
/// requests go over HTTP/2: offered by ALPN to an `https://` server (HTTP/1.1 kept for one
/// that does not choose it), spoken at once (prior knowledge) to an `http://` one.
package enum HTTPScenario {
    /// The request each iteration sends.
    struct Plan: Sendable {
        var method: HTTPMethod
        var url: String
        var headers: [(String, String)]
        var body: [UInt8]?
        var expect: Set<Int>?
        var timeout: TimeAmount
        /// Asks for HTTP/2 instead of HTTP/1.1.
        var http2 = false
    }

    static func plan(_ params: JSONValue) -> (Plan?, [DefinitionProblem]) {
        var problems: [DefinitionProblem] = []
        func problem(_ f: String, _ v: JSONValue?, _ e: String) {
            problems.append(DefinitionProblem(field: "params.\(f)", value: v.map { $0.canonicalJSON }, expected: e))
        }
        guard case .object = params["request"] ?? .null else {
            problem("request", params["request"], "a map with url and optionally method, headers and body")
            return (nil, problems)
        }
        let request = params["request"]!
        let url = request["url"]?.stringValue
        if url == nil || !(url!.hasPrefix("http://") || url!.hasPrefix("https://")) || URL(string: url!)?.host == nil {
            problem("request.url", request["url"], "an absolute http:// or https:// URL")
        }
        let methodText = request["method"]?.stringValue ?? "GET"
        let methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
        if !methods.contains(methodText.uppercased()) {
            problem("request.method", request["method"], "one of \(methods.joined(separator: ", "))")
        }
        var headers: [(String, String)] = []
        switch request["headers"] {
        case nil: break
        case .object(let h)?:
            for (k, v) in h.sorted(by: { $0.key < $1.key }) {
                if !isToken(k) {
                    problem("request.headers.\(DefinitionProblem.key(k))", .string(k), "a header name of letters, digits and !#$%&'*+-.^_`|~")
                } else if let s = v.stringValue, !s.utf8.contains(where: { $0 == 13 || $0 == 10 || $0 == 0 }) {
                    headers.append((k, s))
                } else {
                    problem("request.headers.\(DefinitionProblem.key(k))", v, "a text value without line breaks")
                }
            }
        case let other?: problem("request.headers", other, "a map of header name to text")
        }
        var body: [UInt8]?
        switch request["body"] {
        case nil: break
        case .string(let s)?: body = Array(s.utf8)
        case let other?: body = Array(other.canonicalJSON.utf8)  // a map or list is sent as JSON
        }
        var expect: Set<Int>?
        switch params["expect"]?["status"] {
        case nil: break
        case let v? where v.intValue != nil: expect = [Int(v.intValue!)]
        case .array(let list)? where list.allSatisfy({ $0.intValue != nil }): expect = Set(list.map { Int($0.intValue!) })
        case let other?: problem("expect.status", other, "a status code or a list of them, such as 200 or [200, 204]")
        }
        var timeout = TimeAmount.seconds(30)
        if let t = params["timeout"] {
            if let ms = t.stringValue.flatMap(DurationText.milliseconds), ms > 0 { timeout = .milliseconds(ms) } else { problem("timeout", t, "a duration such as 10s") }
        }
        var http2 = false
        switch params["version"] {
        case nil, .string("1.1")?: break
        case .string("2")?: http2 = true
        case let other?: problem("version", other, "\"1.1\" or \"2\" (HTTP/2: by ALPN over https://, prior knowledge over http://)")
        }
        guard problems.isEmpty, let url else { return (nil, problems) }
        return (Plan(method: HTTPMethod(rawValue: methodText.uppercased()), url: url, headers: headers, body: body, expect: expect, timeout: timeout, http2: http2), [])
    }

    /// Throws ``UnexpectedStatus`` for a status outside `expect` (any 2xx when nil).
    static func check(status: Int, expect: Set<Int>?) throws {
        if !(expect?.contains(status) ?? (200..<300).contains(status)) { throw UnexpectedStatus(status: status) }
    }

    static func isToken(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.allSatisfy { b in
            (48...57).contains(b) || (65...90).contains(b) || (97...122).contains(b) || "!#$%&'*+-.^_`|~".utf8.contains(b)
        }
    }

    /// The scenario.
    public static let scenario = Scenario("http", validate: { plan($0).1 }) { vu in
        guard let plan = plan(vu.params).0 else {
            throw ScenarioSetupError(message: "params of the http scenario do not validate: " + plan(vu.params).1.map(\.description).joined(separator: "; "))
        }
        // Refused here, at setup: no connection is opened, no request sent.
        try vu.targets.check(url: plan.url)
        if plan.http2, let lean = LeanHTTP2Request(plan: plan, vu: vu) { return lean.iteration(vu) }
        if let lean = LeanRequest(plan: plan, vu: vu) { return lean.iteration(vu) }
        var base = HTTPClientRequest(url: plan.url)
        base.method = plan.method
        for (k, v) in plan.headers { base.headers.add(name: k, value: v) }
        for (k, v) in vu.attributionHeaders { base.headers.replaceOrAdd(name: k, value: v) }
        let template = base
        let body = plan.body
        let client = vu.http
        return { iteration in
            var request = template
            for (k, v) in iteration.iterationHeaders { request.headers.replaceOrAdd(name: k, value: v) }
            request.headers.replaceOrAdd(name: "traceparent", value: TraceContext.traceparent(traceID: iteration.traceID))
            if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
            let response = try await client.execute(request, timeout: plan.timeout)
            for try await _ in response.body {}  // read the whole body, keep the connection
            try check(status: Int(response.status.code), expect: plan.expect)
        }
    }
}

/// A scenario's setup failed; every iteration of that VU is counted as failed with class `setup`.
public struct ScenarioSetupError: ClassifiedError, CustomStringConvertible {
    /// Why.
    public var message: String
    public var errorClass: String { "setup" }
    public var description: String { message }
}

/// The built-in scenario's request over HTTP/1.1 (plain or TLS), serialized once per VU: an iteration
/// writes the fixed part, its own attribution headers and `traceparent`, and the body.
struct LeanRequest: Sendable {
    let host: String
    let port: Int
    let tls: Bool
    /// Request line, `host`, the run's headers and the VU's attribution headers.
    let prefix: [UInt8]
    /// `content-length` (with a body), the blank line and the body.
    let suffix: [UInt8]
    let isHead: Bool
    let expect: Set<Int>?
    let timeout: TimeAmount

    /// Nil for a URL the lean client does not serve.
    init?(plan: HTTPScenario.Plan, vu: VUContext) {
        guard let target = LeanTarget(url: plan.url) else { return nil }
        host = target.host
        port = target.port
        tls = target.tls
        var head = "\(plan.method.rawValue) \(target.target) HTTP/1.1\r\n"
        let userHeaders = Set(plan.headers.map { $0.0.lowercased() })
        if !userHeaders.contains("host") { head += "host: \(target.hostHeader)\r\n" }
        // J4's own headers win, as with AsyncHTTPClient's replaceOrAdd: a user's copy is not sent.
        let own = Set((vu.attributionHeaders.map(\.0) + IterationContext.iterationHeaderNames + ["traceparent", "content-length"]).map { $0.lowercased() })
        for (k, v) in plan.headers where !own.contains(k.lowercased()) { head += "\(k): \(v)\r\n" }
        for (k, v) in vu.attributionHeaders { head += "\(k): \(v)\r\n" }
        prefix = Array(head.utf8)
        if let body = plan.body {
            suffix = Array("content-length: \(body.count)\r\n\r\n".utf8) + body
        } else if ["POST", "PUT", "PATCH"].contains(plan.method.rawValue) {
            suffix = Array("content-length: 0\r\n\r\n".utf8)
        } else {
            suffix = Array("\r\n".utf8)
        }
        isHead = plan.method == .HEAD
        expect = plan.expect
        timeout = plan.timeout
    }

    /// The iteration body of `vu`: one connection per VU, closed when the VU ends.
    func iteration(_ vu: VUContext) -> IterationBody {
        let connection = LeanHTTP1Connection(host: host, port: port, tls: tls)
        vu.onTeardown { connection.close() }
        let request = self
        return { iteration in
            var buffer = connection.buffer(capacity: request.prefix.count + request.suffix.count + 160)
            buffer.writeBytes(request.prefix)
            buffer.writeStaticString("x-j4-tick: ")
            buffer.writeString(String(iteration.tick))
            buffer.writeStaticString("\r\nx-j4-shard: ")
            buffer.writeString(String(iteration.shard))
            buffer.writeStaticString("\r\nx-j4-iteration: ")
            buffer.writeString(String(iteration.iteration))
            buffer.writeStaticString("\r\ntraceparent: ")
            buffer.writeString(TraceContext.traceparent(traceID: iteration.traceID))
            buffer.writeStaticString("\r\n")
            buffer.writeBytes(request.suffix)
            try HTTPScenario.check(status: try await connection.send(buffer, head: request.isHead, timeout: request.timeout), expect: request.expect)
        }
    }
}
