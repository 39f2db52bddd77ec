import Foundation
import NIOCore
import NIOHPACK
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

/// The lean connections of one VU, by scheme, host and port, all closed when the VU ends:
/// over HTTP/1.1, one per request in flight, kept open for the next request; over HTTP/2,
/// one that carries them all.
final class LeanConnections: Sendable {
    struct State {
        var idle: [String: [LeanHTTP1Connection]] = [:]
        var all: [LeanHTTP1Connection] = []
        var http2: [String: LeanHTTP2Connection] = [:]
        /// Hosts that did not choose `h2` by ALPN: HTTP/1.1 for them from then on.
        var http1Only: Set<String> = []
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

    /// The HTTP/2 connection to `target`, or nil when its server did not offer HTTP/2 or the VU has ended.
    func http2(_ target: LeanTarget) -> LeanHTTP2Connection? {
        state.withLock { s in
            if let c = s.http2[target.key] { return c }
            guard !s.closed, !s.http1Only.contains(target.key) else { return nil }
            let c = LeanHTTP2Connection(host: target.host, port: target.port, tls: target.tls)
            s.http2[target.key] = c
            return c
        }
    }

    /// `target`'s server chose HTTP/1.1 when offered HTTP/2: its requests go over HTTP/1.1 from now on.
    func http1Only(_ target: LeanTarget) {
        let dropped = state.withLock { s in
            s.http1Only.insert(target.key)
            return s.http2.removeValue(forKey: target.key)
        }
        dropped?.close()
    }

    /// Closes every connection; later ones are closed when given back.
    func close() {
        let (all, http2) = state.withLock { s -> ([LeanHTTP1Connection], [LeanHTTP2Connection]) in
            defer { s = State(closed: true) }
            return (s.all, Array(s.http2.values))
        }
        for c in all { c.close() }
        for c in http2 { c.close() }
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

    /// The headers to send: the user's (but those J4 sends itself and the framing headers,
    /// `content-length` and `transfer-encoding`, which J4 writes), then J4's own `own` (they win
    /// over the user's of the same name). Nil when one could not be sent as it is (a name that
    /// is not a token, a value with a line break): AsyncHTTPClient then says why.
    func outgoing(own: [(String, String)]) -> [(String, String)]? {
        guard HTTPScenario.isToken(method), headers.allSatisfy({ ScenarioRequest.sendable($0.0, $0.1) }), own.allSatisfy({ ScenarioRequest.sendable($0.0, $0.1) }) else {
            return nil
        }
        func framing(_ name: String) -> Bool { ScenarioRequest.sameName(name, "content-length") || ScenarioRequest.sameName(name, "transfer-encoding") }
        var out = headers.filter { h in !framing(h.0) && !own.contains { ScenarioRequest.sameName($0.0, h.0) } }
        out.append(contentsOf: own.filter { !framing($0.0) })
        return out
    }

    /// `content-length` as J4 writes it: the body's, and 0 for a POST, PUT or PATCH without one.
    var contentLength: String? {
        if let body { return String(body.readableBytes) }
        return method == "POST" || method == "PUT" || method == "PATCH" ? "0" : nil
    }

    /// The whole HTTP/1.1 request on the wire for `target`, with J4's own headers `own`, or
    /// nil when a header could not be sent as it is.
    func serialized(for target: LeanTarget, own: [(String, String)]) -> ByteBuffer? {
        guard let fields = outgoing(own: own) else { return nil }
        var buffer = ByteBufferAllocator().buffer(capacity: 256 + (body?.readableBytes ?? 0) + fields.reduce(0) { $0 + $1.0.utf8.count + $1.1.utf8.count + 4 })
        buffer.writeString(method)
        buffer.writeStaticString(" ")
        buffer.writeString(target.target)
        buffer.writeStaticString(" HTTP/1.1\r\n")
        if !headers.contains(where: { ScenarioRequest.sameName($0.0, "host") }) {
            buffer.writeStaticString("host: ")
            buffer.writeString(target.hostHeader)
            buffer.writeStaticString("\r\n")
        }
        for (k, v) in fields {
            buffer.writeString(k)
            buffer.writeStaticString(": ")
            buffer.writeString(v)
            buffer.writeStaticString("\r\n")
        }
        if let length = contentLength {
            buffer.writeStaticString("content-length: ")
            buffer.writeString(length)
            buffer.writeStaticString("\r\n")
        }
        buffer.writeStaticString("\r\n")
        if let body { buffer.writeImmutableBuffer(body) }
        return buffer
    }

    /// The request as an HTTP/2 header block for `target`: the pseudo-headers, then the same
    /// headers as over HTTP/1.1 with their names in lower case, less those HTTP/2 forbids
    /// (`connection`, `keep-alive`, `proxy-connection`, `upgrade`, `te` but `te: trailers`);
    /// a user's `host` becomes `:authority`. Nil when a header could not be sent as it is.
    func http2(for target: LeanTarget, own: [(String, String)]) -> LeanH2Request? {
        guard let fields = outgoing(own: own) else { return nil }
        var block = HPACKHeaders()
        block.reserveCapacity(fields.count + 5)
        block.add(name: ":method", value: method)
        block.add(name: ":scheme", value: target.tls ? "https" : "http")
        block.add(name: ":authority", value: fields.first { ScenarioRequest.sameName($0.0, "host") }?.1 ?? target.hostHeader)
        block.add(name: ":path", value: target.target)
        for (k, v) in fields where !ScenarioRequest.forbiddenInHTTP2(k, v) { block.addHeader(ScenarioRequest.lowercased(k), ScenarioRequest.trimmed(v)) }
        if let length = contentLength { block.add(name: "content-length", value: length) }
        return LeanH2Request(headers: block, body: body, head: method == "HEAD")
    }

    /// Headers HTTP/2 does not carry (`host` goes as `:authority`).
    static func forbiddenInHTTP2(_ name: String, _ value: String) -> Bool {
        for forbidden in ["host", "connection", "keep-alive", "proxy-connection", "upgrade", "transfer-encoding"] where sameName(name, forbidden) { return true }
        return sameName(name, "te") && !sameName(value, "trailers")
    }

    /// `value` without the spaces and tabs around it, which HTTP/2 does not allow (HTTP/1.1
    /// servers ignore them).
    static func trimmed(_ value: String) -> String {
        func blank(_ b: UInt8?) -> Bool { b == 0x20 || b == 0x09 }
        guard blank(value.utf8.first) || blank(value.utf8.last) else { return value }
        var bytes = Array(value.utf8)
        while blank(bytes.first) { bytes.removeFirst() }
        while blank(bytes.last) { bytes.removeLast() }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// `name` in lower case (itself when it is already).
    static func lowercased(_ name: String) -> String {
        name.utf8.contains { (65...90).contains($0) } ? name.lowercased() : name
    }
}

extension VUContext {
    /// Sends `request` on this VU's lean connection to its host (HTTP/2 when ``http2`` asks
    /// for it and the server agrees), or nil when the lean client does not serve it (then the
    /// caller sends it with AsyncHTTPClient).
    func leanExchange(
        _ request: ScenarioRequest, own: [(String, String)], timeout: Duration, expect: ClosedRange<Int>?, maxBody: Int
    ) async throws -> HTTPResult? {
        guard let target = lean.target(request.url) else { return nil }
        let limit = TimeAmount(timeout)
        var response: LeanResponse?
        if http2, let connection = lean.http2(target) {
            guard let h2 = request.http2(for: target, own: own) else { return nil }
            do {
                response = try await connection.exchange(h2, timeout: limit, maxBody: maxBody)
            } catch is HTTP2NotOffered {
                lean.http1Only(target)
            }
        }
        if response == nil {
            guard let wire = request.serialized(for: target, own: own) else { return nil }
            let connection = lean.take(target)
            // Given back either way: a failure closed it, and its next request opens it again.
            defer { lean.give(connection, target) }
            response = try await connection.exchange(wire, head: request.method == "HEAD", timeout: limit, maxBody: maxBody)
        }
        guard let response else { return nil }
        if let expect, !expect.contains(response.status) { throw UnexpectedStatus(status: response.status) }
        return HTTPResult(status: response.status, headers: response.headers ?? [:], body: response.body ?? ByteBuffer())
    }
}

extension HPACKHeaders {
    /// J4's headers whose value changes with each request.
    static let perRequest: Set<String> = ["traceparent", "x-j4-tick", "x-j4-iteration"]

    /// Adds `name` (in lower case): a value that changes with each request is kept out of
    /// HPACK's table (adding and evicting it would cost more than it saves).
    mutating func addHeader(_ name: String, _ value: String) {
        add(name: name, value: value, indexing: Self.perRequest.contains(name) ? .nonIndexable : .indexable)
    }
}
