import NIOCore
import Testing

@testable import J4Scenario

/// The scenario API's requests on the wire of the lean client: which URLs it serves, and the
/// exact bytes it sends (headers merged as AsyncHTTPClient's `replaceOrAdd` merges them).
@Suite("Scenario requests on the lean client")
struct ScenarioRequestTests {
    @Test("which URLs the lean client serves, and the target and host header it sends", arguments: [
        ("http://127.0.0.1:8080/a/b?q=1#frag", "127.0.0.1", 8080, "/a/b?q=1", "127.0.0.1:8080"),
        // HTTP/1.1 over TLS: 443 is the default port, left out of the host header.
        ("https://api.example/v1", "api.example", 443, "/v1", "api.example"),
        ("https://api.example:443/v1", "api.example", 443, "/v1", "api.example"),
        ("HTTPS://127.0.0.1:8443", "127.0.0.1", 8443, "/", "127.0.0.1:8443"),
        ("https://api.example:80/", "api.example", 80, "/", "api.example:80"),
        ("http://localhost/", "localhost", 80, "/", "localhost"),
        // Found by review: the default port was sent in the host header; AsyncHTTPClient leaves it out.
        ("http://localhost:80/x", "localhost", 80, "/x", "localhost"),
        ("http://localhost", "localhost", 80, "/", "localhost"),
        ("http://localhost?x=%2F", "localhost", 80, "/?x=%2F", "localhost"),
        ("HTTP://127.0.0.1:9/p%20q", "127.0.0.1", 9, "/p%20q", "127.0.0.1:9"),
        ("http://[::1]:8081/v6", "::1", 8081, "/v6", "[::1]:8081"),
    ])
    func targets(url: String, host: String, port: Int, target: String, hostHeader: String) throws {
        let t = try #require(LeanTarget(url: url))
        #expect(t == LeanTarget(host: host, port: port, tls: url.lowercased().hasPrefix("https"), target: target, hostHeader: hostHeader))
    }

    // Found by review: Foundation accepts a space, a `{` or non-ASCII text in a URL; sent as
    // they are they would break the request line, so AsyncHTTPClient sends the encoded form.
    @Test("AsyncHTTPClient serves the rest", arguments: [
        "wss://127.0.0.1/", "ws://127.0.0.1/", "ftp://127.0.0.1/", "https://user@127.0.0.1/", "http://user:secret@127.0.0.1/", "not a url", "http:///nohost",
        "http://127.0.0.1/a b", "http://127.0.0.1/?q={1}", "http://127.0.0.1/caf\u{e9}", "http://127.0.0.1/a|b",
    ])
    func notLean(url: String) {
        #expect(LeanTarget(url: url) == nil)
    }

    static let own = [("x-j4-run", "r1"), ("traceparent", "00-aa-bb-01")]

    @Test("the bytes sent", arguments: [
        ("GET, no body: no content-length", ScenarioRequest(method: "GET", url: "http://h:1/x", headers: [("accept", "*/*")], body: nil),
         "GET /x HTTP/1.1\r\nhost: h:1\r\naccept: */*\r\nx-j4-run: r1\r\ntraceparent: 00-aa-bb-01\r\n\r\n"),
        ("POST with a body", ScenarioRequest(method: "POST", url: "http://h/x", headers: [("content-type", "application/json")], body: ByteBuffer(string: "{\"a\":1}")),
         "POST /x HTTP/1.1\r\nhost: h\r\ncontent-type: application/json\r\nx-j4-run: r1\r\ntraceparent: 00-aa-bb-01\r\ncontent-length: 7\r\n\r\n{\"a\":1}"),
        ("POST without a body: content-length 0", ScenarioRequest(method: "POST", url: "http://h/", headers: [], body: nil),
         "POST / HTTP/1.1\r\nhost: h\r\nx-j4-run: r1\r\ntraceparent: 00-aa-bb-01\r\ncontent-length: 0\r\n\r\n"),
        ("J4's headers win; the user's host and framing headers are theirs or dropped",
         ScenarioRequest(method: "PUT", url: "http://h/", headers: [("Host", "api.example"), ("X-J4-Run", "forged"), ("Content-Length", "99"), ("Transfer-Encoding", "chunked")], body: ByteBuffer(string: "ab")),
         "PUT / HTTP/1.1\r\nHost: api.example\r\nx-j4-run: r1\r\ntraceparent: 00-aa-bb-01\r\ncontent-length: 2\r\n\r\nab"),
    ])
    func wire(name: String, request: ScenarioRequest, expected: String) throws {
        let target = try #require(LeanTarget(url: request.url))
        let bytes = try #require(request.serialized(for: target, own: Self.own))
        #expect(String(buffer: bytes) == expected, "\(name)")
    }

    @Test("the HTTP/2 header block sent: pseudo-headers first, names in lower case, what HTTP/2 forbids left out", arguments: [
        ("GET, no body", ScenarioRequest(method: "GET", url: "http://h:1/x?y=1", headers: [("Accept", "*/*")], body: nil),
         ":method=GET :scheme=http :authority=h:1 :path=/x?y=1 accept=*/* x-j4-run=r1 traceparent=00-aa-bb-01"),
        ("POST over TLS with a body: content-length", ScenarioRequest(method: "POST", url: "https://h/x", headers: [("content-type", "application/json")], body: ByteBuffer(string: "{}")),
         ":method=POST :scheme=https :authority=h :path=/x content-type=application/json x-j4-run=r1 traceparent=00-aa-bb-01 content-length=2"),
        ("the user's host is the authority; connection headers go; te only as trailers",
         ScenarioRequest(method: "PUT", url: "http://h/", headers: [("Host", "api.example"), ("Connection", "keep-alive"), ("Keep-Alive", "5"), ("Upgrade", "h2c"), ("TE", "gzip"), ("X-J4-Run", "forged"), ("Transfer-Encoding", "chunked")], body: nil),
         ":method=PUT :scheme=http :authority=api.example :path=/ x-j4-run=r1 traceparent=00-aa-bb-01 content-length=0"),
        ("values lose the spaces around them, which HTTP/2 does not allow", ScenarioRequest(method: "GET", url: "http://h/", headers: [("x-a", " padded\t")], body: nil),
         ":method=GET :scheme=http :authority=h :path=/ x-a=padded x-j4-run=r1 traceparent=00-aa-bb-01"),
        ("te: trailers stays (gRPC sends it)", ScenarioRequest(method: "POST", url: "http://h/s", headers: [("te", "trailers")], body: ByteBuffer(string: "x")),
         ":method=POST :scheme=http :authority=h :path=/s te=trailers x-j4-run=r1 traceparent=00-aa-bb-01 content-length=1"),
    ])
    func http2Block(name: String, request: ScenarioRequest, expected: String) throws {
        let target = try #require(LeanTarget(url: request.url))
        let h2 = try #require(request.http2(for: target, own: Self.own))
        #expect(h2.headers.map { "\($0.name)=\($0.value)" }.joined(separator: " ") == expected, "\(name)")
        #expect(h2.body == request.body && h2.head == false)
    }

    @Test("a header the lean client would not send as it is goes to AsyncHTTPClient, which says why", arguments: [
        [("x-a", "line\r\nbreak")], [("bad name", "v")], [("x-nul", "a\u{0}b")],
    ])
    func unsendable(headers: [(String, String)]) throws {
        let request = ScenarioRequest(method: "GET", url: "http://h/", headers: headers, body: nil)
        let target = try #require(LeanTarget(url: request.url))
        #expect(request.serialized(for: target, own: Self.own) == nil)
        #expect(request.http2(for: target, own: Self.own) == nil)
    }

    @Test("merging replaces every header of the same name, whatever its case")
    func merging() {
        let merged = ScenarioRequest.merged([("Content-Type", "text/plain"), ("a", "1"), ("A", "2")], [("content-type", "application/json"), ("a", "3")])
        #expect(merged.map { "\($0.0)=\($0.1)" } == ["content-type=application/json", "a=3"])
    }
}
