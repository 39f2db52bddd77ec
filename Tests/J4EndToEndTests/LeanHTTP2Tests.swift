import Foundation
import AsyncHTTPClient
import Glibc
import J4Runtime
import Logging
@testable import J4Scenario
import J4TestSupport
import NIOCore
import NIOHPACK
import NIOSSL
import Synchronization
import Testing

/// A GET of `/` as the lean HTTP/2 client sends it.
func h2GET(_ tls: Bool, head: Bool = false) -> LeanH2Request {
    LeanH2Request(headers: [":method": head ? "HEAD" : "GET", ":scheme": tls ? "https" : "http", ":authority": "127.0.0.1", ":path": "/"], body: nil, head: head)
}

/// Sends `request` and returns its status (with the body's length when asked for), or the class of its error.
func leanH2(_ c: LeanHTTP2Connection, _ request: LeanH2Request, timeout: TimeAmount = .seconds(30), maxBody: Int? = nil) async -> String {
    do {
        let r = try await c.exchange(request, timeout: timeout, maxBody: maxBody)
        return maxBody == nil ? String(r.status) : "\(r.status) \(r.body.map { String(buffer: $0) } ?? "")"
    } catch let e as LeanHTTPError { return e.errorClass } catch is NIOTooManyBytesError { return "too many bytes" } catch { return "\(type(of: error))" }
}

@Suite("Lean HTTP/2 client against a scripted HTTP/2 server, by prior knowledge and over TLS")
struct LeanHTTP2Tests {
    typealias F = ScriptedHTTP2Server.Frame
    static let ok: [F] = [.headers(status: 200, [("content-length", "5")], end: false), .data("hello", end: true)]

    @Test("response framings: each request gets its status and body on its own stream, the connection goes on", arguments: [
        ("headers and one data frame", [ok, ok], ["200 hello", "200 hello"], 1),
        ("no body: the header block ends the stream", [[.headers(status: 204, end: true)], ok], ["204 ", "200 hello"], 1),
        ("the body in several frames, the last one empty", [[.headers(status: 201, end: false), .data("hel", end: false), .data("lo", end: false), .data("", end: true)], ok], ["201 hello", "200 hello"], 1),
        ("trailers end the stream", [[.headers(status: 200, end: false), .data("hello", end: false), .headers(status: nil, [("grpc-status", "0")], end: true)], ok], ["200 hello", "200 hello"], 1),
        ("103 Early Hints before the response", [[.headers(status: 103, [("link", "</a.css>")], end: false), .headers(status: 404, end: false), .data("gone", end: true)], ok], ["404 gone", "200 hello"], 1),
        ("a stream reset by the server is stream_reset; the connection goes on", [[.reset], ok], ["stream_reset", "200 hello"], 1),
        ("GOAWAY before the stream: connection_closed, and the next request opens a new connection", [[.goAway], ok], ["connection_closed", "200 hello"], 2),
        ("a body longer than the limit (16 bytes)", [[.headers(status: 200, end: false), .data("01234567890123456789", end: true)], ok], ["too many bytes", "200 hello"], 1),
        ("a response without :status", [[.headers(status: nil, [("x", "1")], end: true)], ok], ["bad_response", "200 hello"], 1),
    ] as [(String, [[F]], [String], Int)])
    func framings(name: String, replies: [[F]], expected: [String], connections: Int) async throws {
        for tls in [false, true] {
            let server = try await ScriptedHTTP2Server(replies, tls: tls ? try ScriptedHTTP2Server.tls() : nil)
            let c = LeanHTTP2Connection(host: "127.0.0.1", port: server.port, tls: tls)
            var got: [String] = []
            for _ in expected { got.append(await leanH2(c, h2GET(tls), maxBody: 16)) }
            #expect(got == expected, "\(name)\(tls ? " (TLS)" : "")")
            // Counted at the server: one request each, on as many connections as the framing needs.
            #expect(server.seen.requests.count == expected.count, "\(name)")
            #expect(server.seen.connections == connections, "\(name)")
            c.close()
            await server.close()
        }
    }

    @Test("a response larger than the windows (3 MiB against 1 MiB stream and 16 MiB connection windows) flows whole, twice")
    func flowControl() async throws {
        let big: [F] = [.headers(status: 200, end: false), .bytes(3 << 20, end: true)]
        let server = try await ScriptedHTTP2Server(Array(repeating: big, count: 8))
        let c = LeanHTTP2Connection(host: "127.0.0.1", port: server.port, tls: false)
        // 8 × 3 MiB passes the connection's window more than once.
        for _ in 0..<8 {
            let r = try await c.exchange(h2GET(false), timeout: .seconds(60), maxBody: 4 << 20)
            #expect(r.status == 200 && r.body?.readableBytes == 3 << 20)
        }
        #expect(server.seen.connections == 1)
        c.close()
        await server.close()
    }

    @Test("requests sent at once share one connection, each on its own stream, and each gets its own response")
    func streams() async throws {
        let n = 20
        let server = try await ScriptedHTTP2Server((0..<n).map { i in [.headers(status: 200, end: false), .data("r\(i)", end: true)] })
        let c = LeanHTTP2Connection(host: "127.0.0.1", port: server.port, tls: false)
        let got = await withTaskGroup(of: String.self) { g in
            for _ in 0..<n { g.addTask { await leanH2(c, h2GET(false), maxBody: 16) } }
            return await g.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(Set(got) == Set((0..<n).map { "200 r\($0)" }))
        #expect(server.seen.connections == 1 && server.seen.requests.count == n)
        c.close()
        await server.close()
    }

    @Test("a request with no answer within its timeout: the stream alone is reset while the connection answers others; a connection silent through it is replaced")
    func timeout() async throws {
        // Silent stream, answered neighbour: the connection is alive and kept.
        let server = try await ScriptedHTTP2Server([[.silence], Self.ok, Self.ok])
        let c = LeanHTTP2Connection(host: "127.0.0.1", port: server.port, tls: false)
        // 5 s: the neighbour must be answered within it even on a loaded machine, or the
        // connection would rightly count as silent and be replaced.
        let silent = Task { await leanH2(c, h2GET(false), timeout: .seconds(5)) }
        try await waitFor("the first request at the server", timeout: .seconds(30)) { server.seen.requests.count == 1 }
        #expect(await leanH2(c, h2GET(false)) == "200")
        #expect(await silent.value == "timeout")
        #expect(await leanH2(c, h2GET(false)) == "200")
        #expect(server.seen.connections == 1)
        c.close()
        await server.close()

        // Nothing read since the request was sent: the connection is given up, the next request opens another.
        let quiet = try await ScriptedHTTP2Server([Self.ok, [.silence], Self.ok])
        let d = LeanHTTP2Connection(host: "127.0.0.1", port: quiet.port, tls: false)
        #expect(await leanH2(d, h2GET(false)) == "200")
        #expect(await leanH2(d, h2GET(false), timeout: .milliseconds(300)) == "timeout")
        #expect(await leanH2(d, h2GET(false)) == "200")
        #expect(quiet.seen.connections == 2)
        d.close()
        await quiet.close()
    }

    @Test("responses that keep coming for streams J4 reset (a body over the limit) do not use up the connection's window: later large bodies still flow")
    func windowAfterResets() async throws {
        let reset: [F] = [.headers(status: 200, end: false), .bytes(1 << 20, end: true)]
        let big: [F] = [.headers(status: 200, end: false), .bytes(3 << 20, end: true)]
        let server = try await ScriptedHTTP2Server(Array(repeating: reset, count: 24) + Array(repeating: big, count: 3))
        let c = LeanHTTP2Connection(host: "127.0.0.1", port: server.port, tls: false)
        // 24 MiB sent for streams J4 resets after their first 16 bytes: more than the connection's window.
        for _ in 0..<24 { #expect(await leanH2(c, h2GET(false), maxBody: 16) == "too many bytes") }
        for _ in 0..<3 {
            let r = try await c.exchange(h2GET(false), timeout: .seconds(30), maxBody: 4 << 20)
            #expect(r.body?.readableBytes == 3 << 20)
        }
        #expect(server.seen.connections == 1)
        c.close()
        await server.close()
    }

    @Test("a cancelled request fails as cancelled; the connection's next request is answered on it")
    func cancelled() async throws {
        let server = try await ScriptedHTTP2Server([[.silence], Self.ok])
        let c = LeanHTTP2Connection(host: "127.0.0.1", port: server.port, tls: false)
        let task = Task { await leanH2(c, h2GET(false), timeout: .seconds(60)) }
        try await waitFor("the request at the server", timeout: .seconds(30)) { server.seen.requests.count == 1 }
        task.cancel()
        #expect(await task.value == "CancellationError")
        #expect(await leanH2(c, h2GET(false)) == "200")
        #expect(server.seen.connections == 1)
        c.close()
        await server.close()
    }

    @Test("HEAD: a response head that does not end the stream is enough")
    func head() async throws {
        let server = try await ScriptedHTTP2Server([[.headers(status: 200, [("content-length", "1000")], end: false), .silence], Self.ok])
        let c = LeanHTTP2Connection(host: "127.0.0.1", port: server.port, tls: false)
        #expect(await leanH2(c, h2GET(false, head: true), timeout: .seconds(5)) == "200")
        #expect(await leanH2(c, h2GET(false)) == "200")
        c.close()
        await server.close()
    }

    @Test("TLS failures are tls and nothing reaches the server", arguments: ["stranger", "named"])
    func tlsFailures(kind: String) async throws {
        let pair = kind == "stranger" ? TestTLS.made.stranger : TestTLS.made.named
        let server = try await ScriptedHTTP2Server([Self.ok], tls: try TestTLS.server(pair))
        let c = LeanHTTP2Connection(host: "127.0.0.1", port: server.port, tls: true)
        #expect(await leanH2(c, h2GET(true)) == "tls", "\(kind)")
        #expect(server.seen.requests.isEmpty)
        c.close()
        await server.close()
    }

    @Test("a TLS server that does not choose h2: the HTTP/2 connection says so before any request is sent")
    func http1Fallback() async throws {
        _ = TestTLS.made
        let server = try await ScriptedServer([.send(LeanHTTPTests.ok5), .send(LeanHTTPTests.ok5)], tls: try ScriptedHTTP2Server.tls(offering: ["http/1.1"]))
        let c = LeanHTTP2Connection(host: "127.0.0.1", port: server.port, tls: true)
        await #expect(throws: HTTP2NotOffered.self) { try await c.exchange(h2GET(true), timeout: .seconds(30), maxBody: nil) }
        #expect(server.seen.requests.isEmpty)
        c.close()
        await server.close()
        // Through the scenario API the request then goes over HTTP/1.1: `scenarioAPI` below.
    }

    @Test("HTTP/2 by prior knowledge to a server that speaks only HTTP/1.1 fails; it does not hang")
    func priorKnowledgeRefused() async throws {
        let server = try await ScriptedServer([.send(LeanHTTPTests.ok5)])
        let c = LeanHTTP2Connection(host: "127.0.0.1", port: server.port, tls: false)
        let got = await leanH2(c, h2GET(false))
        #expect(["bad_response", "connection_closed"].contains(got), "\(got)")
        c.close()
        await server.close()
    }

    @Test("the scenario API with vu.http2: J4's headers, step metrics, one connection for every request; HTTP/1.1 from a TLS server that does not choose h2")
    func scenarioAPI() async throws {
        let server = try await ScriptedHTTP2Server([Self.ok, [.headers(status: 500, end: true)], Self.ok])
        let recorder = MetricsRecorder()
        let vu = VUContext(run: "r", worker: "w", vu: 3, params: .null, logger: Logger(label: "test"), http: HTTPClient.shared,
                           metrics: ScenarioMetrics(recorder: recorder) { 1 })
        vu.http2 = true
        let base = "http://127.0.0.1:\(server.port)"
        #expect(String(buffer: try await vu.request("get", "GET", base + "/a?b=1").body) == "hello")
        await #expect(throws: UnexpectedStatus.self) { _ = try await vu.request("post", "POST", base + "/b", json: .object(["k": .int(1)])) }
        _ = try await vu.request("get", "GET", base + "/a?b=1", headers: [("Connection", "close"), ("X-Mine", "1")])
        let seen = server.seen
        #expect(seen.connections == 1 && seen.requests.count == 3)
        let heads = seen.requests.map { Dictionary($0, uniquingKeysWith: { a, _ in a }) }
        #expect(heads.map { $0[":path"] } == ["/a?b=1", "/b", "/a?b=1"])
        #expect(heads.allSatisfy { $0["x-j4-run"] == "r" && $0["x-j4-vu"] == "3" && $0["traceparent"]?.hasPrefix("00-") == true && $0["connection"] == nil })
        #expect(heads[1][":method"] == "POST" && heads[1]["content-type"] == "application/json" && seen.bodies[1] == "{\"k\":1}")
        #expect(heads[2]["x-mine"] == "1")
        let fields = Dictionary(uniqueKeysWithValues: recorder.drain().flatMap(\.fields)).mapValues(String.init)
        let (steps, _, _, _) = RunSummary.scenarioMetrics(fields)
        #expect(steps["get"]?.count == 2 && steps["get"]?.failed == 0 && steps["post"]?.errors == ["status_500": 1])
        vu.lean.close()
        await server.close()

        // A TLS server offering only HTTP/1.1: the first request finds out, both are answered over HTTP/1.1.
        _ = TestTLS.made
        let http1 = try await ScriptedServer([.send(LeanHTTPTests.ok5), .send(LeanHTTPTests.ok5)], tls: try ScriptedHTTP2Server.tls(offering: ["http/1.1"]))
        for _ in 0..<2 { #expect(try await vu.request("get", "GET", "https://127.0.0.1:\(http1.port)/").status == 200) }
        // One handshake that declined h2 (no request on it), then one HTTP/1.1 connection for both.
        #expect(http1.seen.requests.count == 2 && http1.seen.connections == 2)
        vu.lean.close()
        await http1.close()
    }

    @Test("a port nobody listens on is a connect error")
    func refused() async throws {
        let (fd, port) = try bindLoopback()
        defer { close(fd) }
        #expect(await leanH2(LeanHTTP2Connection(host: "127.0.0.1", port: port, tls: false), h2GET(false)) == "connect")
    }
}
