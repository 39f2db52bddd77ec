import Foundation
import NIOCore
import NIOHTTP1
import Synchronization

/// Where an `http://` or `https://` URL goes on the lean client: the address to connect to,
/// whether over TLS, the request target as written, and the `host` header.
struct LeanTarget: Sendable, Equatable {
    let host: String
    let port: Int
    /// `https://`: HTTP/1.1 over TLS.
    let tls: Bool
    /// From the first `/` or `?` after the authority, without a fragment (`/` when empty).
    let target: String
    /// `host[:port]` as the URL gave it (an IPv6 address in brackets).
    let hostHeader: String

    init(host: String, port: Int, tls: Bool = false, target: String, hostHeader: String) {
        self.host = host
        self.port = port
        self.tls = tls
        self.target = target
        self.hostHeader = hostHeader
    }

    /// Nil for a URL the lean client does not serve: neither `http://` nor `https://`, no
    /// host, or credentials in the URL.
    init?(url text: String) {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
              let host = url.host, !host.isEmpty, url.user == nil else { return nil }
        // Characters a request line cannot carry as they are (Foundation accepts a space or a
        // `{` in a URL and encodes it): AsyncHTTPClient sends the URL's encoded form.
        guard text.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f && !"\"<>\\^`{|}".utf8.contains($0) }) else { return nil }
        self.host = host
        tls = scheme == "https"
        let defaultPort = tls ? 443 : 80
        port = url.port ?? defaultPort
        // URL.path would decode percent-escapes: the target is taken from the text.
        var target = "/"
        let rest = text.drop { $0 != ":" }.dropFirst(3)
        if let slash = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) {
            target = String(rest[slash...].prefix { $0 != "#" })
            if target.hasPrefix("?") { target = "/" + target }
        }
        self.target = target
        let shown = host.contains(":") ? "[\(host)]" : host
        // The default port is left out, as AsyncHTTPClient leaves it out.
        hostHeader = url.port.flatMap { $0 == defaultPort ? nil : "\(shown):\($0)" } ?? shown
    }

    /// The connections of one VU are kept by this key.
    var key: String { "\(tls ? "https" : "http") \(host) \(port)" }
}

/// The lean connections of one VU, by scheme, host and port: one per request in flight, kept open for
/// the next request, all closed when the VU ends.
final class LeanConnections: Sendable {
    struct State {
        var idle: [String: [LeanHTTP1Connection]] = [:]
        var all: [LeanHTTP1Connection] = []
        /// URLs parsed already (a VU mostly sends to a few): nil when the lean client does not serve it.
        var targets: [String: LeanTarget?] = [:]
        /// The VU has ended: a connection given back now is closed, none is kept.
        var closed = false
    }
    let state = Mutex(State())

    /// Where `url` goes on the lean client, parsed once per VU (at most 256 URLs are kept).
    func target(_ url: String) -> LeanTarget? {
        if let known = state.withLock({ $0.targets[url] }) { return known }
        let parsed = LeanTarget(url: url)
        state.withLock { s in
            if s.targets.count >= 256 { s.targets = [:] }
            s.targets[url] = .some(parsed)
        }
        return parsed
    }

    /// An idle connection to `target`, or a new one.
    func take(_ target: LeanTarget) -> LeanHTTP1Connection {
        state.withLock { s in
            if let c = s.idle[target.key]?.popLast() { return c }
            let c = LeanHTTP1Connection(host: target.host, port: target.port, tls: target.tls)
            if !s.closed { s.all.append(c) }
            return c
        }
    }

    /// Gives `connection` back for the next request to `target`; closes it once the VU has ended.
    func give(_ connection: LeanHTTP1Connection, _ target: LeanTarget) {
        let keep = state.withLock { s -> Bool in
            guard !s.closed else { return false }
            s.idle[target.key, default: []].append(connection)
            return true
        }
        if !keep { connection.close() }
    }

    /// Closes every connection; later ones are closed when given back.
    func close() {
        let all = state.withLock { s -> [LeanHTTP1Connection] in
            defer { s = State(closed: true) }
            return s.all
        }
        for c in all { c.close() }
    }
}

/// A request of the scenario API (`request`, `graphQL`) before it is sent: on the lean
/// client when it can serve it, else on AsyncHTTPClient.
struct ScenarioRequest: Sendable {
    var method: String
    var url: String
    /// The user's headers, merged as AsyncHTTPClient's `replaceOrAdd` merges them.
    var headers: [(String, String)]
    var body: ByteBuffer?

    /// `headers` with every header of `more` replacing those of its name.
    static func merged(_ headers: [(String, String)], _ more: [(String, String)]) -> [(String, String)] {
        var out = headers
        for (k, v) in more {
            out.removeAll { sameName($0.0, k) }
            out.append((k, v))
        }
        return out
    }

    /// Header names compared as HTTP compares them: ASCII letters in either case.
    static func sameName(_ a: String, _ b: String) -> Bool {
        a.utf8.count == b.utf8.count && zip(a.utf8, b.utf8).allSatisfy { LeanHTTP1Handler.lower($0) == LeanHTTP1Handler.lower($1) }
    }

    /// True when the header can go on the wire as it is: a token for a name, no line break or NUL in the value.
    static func sendable(_ name: String, _ value: String) -> Bool {
        HTTPScenario.isToken(name) && !value.utf8.contains { $0 == 13 || $0 == 10 || $0 == 0 }
    }

    /// The whole request on the wire for `target`, with J4's own headers `own` (they win over
    /// the user's of the same name), or nil when a header could not be sent as it is (a name
    /// that is not a token, a value with a line break): AsyncHTTPClient then says why.
    func serialized(for target: LeanTarget, own: [(String, String)]) -> ByteBuffer? {
        guard HTTPScenario.isToken(method), headers.allSatisfy({ ScenarioRequest.sendable($0.0, $0.1) }), own.allSatisfy({ ScenarioRequest.sendable($0.0, $0.1) }) else {
            return nil
        }
        func framing(_ name: String) -> Bool { ScenarioRequest.sameName(name, "content-length") || ScenarioRequest.sameName(name, "transfer-encoding") }
        var buffer = ByteBufferAllocator().buffer(capacity: 256 + (body?.readableBytes ?? 0) + headers.reduce(0) { $0 + $1.0.utf8.count + $1.1.utf8.count + 4 })
        buffer.writeString(method)
        buffer.writeStaticString(" ")
        buffer.writeString(target.target)
        buffer.writeStaticString(" HTTP/1.1\r\n")
        if !headers.contains(where: { ScenarioRequest.sameName($0.0, "host") }) {
            buffer.writeStaticString("host: ")
            buffer.writeString(target.hostHeader)
            buffer.writeStaticString("\r\n")
        }
        func write(_ k: String, _ v: String) {
            buffer.writeString(k)
            buffer.writeStaticString(": ")
            buffer.writeString(v)
            buffer.writeStaticString("\r\n")
        }
        for (k, v) in headers where !framing(k) && !own.contains(where: { ScenarioRequest.sameName($0.0, k) }) { write(k, v) }
        for (k, v) in own where !framing(k) { write(k, v) }
        if let body {
            buffer.writeStaticString("content-length: ")
            buffer.writeString(String(body.readableBytes))
            buffer.writeStaticString("\r\n\r\n")
            buffer.writeImmutableBuffer(body)
        } else if method == "POST" || method == "PUT" || method == "PATCH" {
            buffer.writeStaticString("content-length: 0\r\n\r\n")
        } else {
            buffer.writeStaticString("\r\n")
        }
        return buffer
    }
}

extension VUContext {
    /// Sends `request` on this VU's lean connection to its host, or nil when the lean client
    /// does not serve it (then the caller sends it with AsyncHTTPClient).
    func leanExchange(
        _ request: ScenarioRequest, own: [(String, String)], timeout: Duration, expect: ClosedRange<Int>?, maxBody: Int
    ) async throws -> HTTPResult? {
        guard let target = lean.target(request.url), let wire = request.serialized(for: target, own: own) else { return nil }
        let connection = lean.take(target)
        // Given back either way: a failure closed it, and its next request opens it again.
        defer { lean.give(connection, target) }
        let (s, atto) = timeout.components
        let response = try await connection.exchange(wire, head: request.method == "HEAD", timeout: .nanoseconds(s * 1_000_000_000 + atto / 1_000_000_000), maxBody: maxBody)
        if let expect, !expect.contains(response.status) { throw UnexpectedStatus(status: response.status) }
        return HTTPResult(status: response.status, headers: response.headers ?? [:], body: response.body ?? ByteBuffer())
    }
}
