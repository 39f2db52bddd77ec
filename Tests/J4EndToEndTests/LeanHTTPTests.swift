import Foundation
import Glibc
import J4Runtime
import J4Scenario
import J4TestSupport
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization
import Testing

/// A TCP server on 127.0.0.1 that answers each request head it reads with the next scripted
/// reply, written as given (split into single bytes when asked), then closes if told to.
final class ScriptedServer: Sendable {
    enum Reply: Sendable {
        case send(String, close: Bool = false, byteByByte: Bool = false)
        case silence
    }
    struct Seen { var connections = 0; var requests: [String] = [] }
    /// What the connections share: the replies still to send, and what was seen.
    final class State: Sendable {
        let replies: Mutex<[Reply]>
        let seen = Mutex(Seen())
        init(_ replies: [Reply]) { self.replies = Mutex(replies) }
    }
    let state: State
    let channel: any Channel

    /// With `tls`, the replies go over TLS (the server's certificate and key).
    init(_ replies: [Reply], tls: NIOSSLContext? = nil) async throws {
        let state = State(replies)
        self.state = state
        channel = try await testServer(tls: tls) { try $0.addHandler(ConnectionHandler(state: state)) }
    }

    var seen: Seen { state.seen.withLock { $0 } }

    var port: Int { channel.localAddress!.port! }

    func close() async { try? await channel.close() }

    final class ConnectionHandler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let server: State
        var text = ""
        init(state: State) { server = state }

        func channelActive(context: ChannelHandlerContext) {
            server.seen.withLock { $0.connections += 1 }
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let bytes = unwrapInboundIn(data)
            // A TLS ClientHello to this plain server is answered as nginx answers it.
            if text.isEmpty, bytes.getInteger(at: bytes.readerIndex, as: UInt8.self) == 0x16 {
                context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")), promise: nil)
                context.close(promise: nil)
                return
            }
            text += String(buffer: bytes)
            while let end = text.range(of: "\r\n\r\n") {
                let request = String(text[..<end.upperBound])
                text.removeSubrange(..<end.upperBound)
                // Only this suite's requests take a reply: a stray client (another test's
                // process that found this port) is turned away without consuming one.
                guard request.hasPrefix("GET ") || request.hasPrefix("HEAD ") else {
                    context.close(promise: nil)
                    return
                }
                server.seen.withLock { $0.requests.append(request) }
                let reply = server.replies.withLock { $0.isEmpty ? Reply.silence : $0.removeFirst() }
                guard case .send(let raw, let close, let byteByByte) = reply else { continue }
                if byteByByte {
                    for b in raw.utf8 { context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: [b])), promise: nil) }
                } else {
                    context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: raw)), promise: nil)
                }
                if close { context.close(promise: nil) }
            }
        }
    }
}

/// A server on a free port of 127.0.0.1 whose connections get `handlers` (behind TLS when given).
func testServer(tls: NIOSSLContext?, _ handlers: @escaping @Sendable (ChannelPipeline.SynchronousOperations) throws -> Void) async throws -> any Channel {
    try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .childChannelInitializer { child in
            child.eventLoop.makeCompletedFuture {
                if let tls { try child.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls)) }
                try handlers(child.pipeline.syncOperations)
            }
        }
        .bind(host: "127.0.0.1", port: 0).get()
}

/// Certificates made once by openssl for the TLS rows: `trusted` (for 127.0.0.1) and `named`
/// (for elsewhere.test only), which the client trusts through ``LoadTrust`` as `--ca-file`
/// makes it trust them, and `stranger` (for 127.0.0.1, trusted by no one).
enum TestTLS {
    struct Pair { let certificate: String; let key: String }
    static let made: (trusted: Pair, named: Pair, stranger: Pair) = {
        let dir = NSTemporaryDirectory() + "j4-lean-tls-\(getpid())"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        func make(_ name: String, _ san: String = "IP:127.0.0.1") -> Pair {
            let pair = Pair(certificate: "\(dir)/\(name).pem", key: "\(dir)/\(name).key")
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
            p.arguments = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", pair.key, "-out", pair.certificate, "-days", "1",
                           "-subj", "/CN=j4 test", "-addext", "subjectAltName=\(san)"]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try! p.run()
            p.waitUntilExit()
            return pair
        }
        let made = (trusted: make("trusted"), named: make("named", "DNS:elsewhere.test"), stranger: make("stranger"))
        let bundle = "\(dir)/ca.pem"
        try! (String(contentsOfFile: made.trusted.certificate, encoding: .utf8) + String(contentsOfFile: made.named.certificate, encoding: .utf8))
            .write(toFile: bundle, atomically: true, encoding: .utf8)
        LoadTrust.use(try! LoadTrust.configuration(caFile: bundle))
        return made
    }()

    /// A server context presenting `pair`.
    static func server(_ pair: Pair) throws -> NIOSSLContext {
        let chain = try NIOSSLCertificate.fromPEMFile(pair.certificate).map { NIOSSLCertificateSource.certificate($0) }
        return try NIOSSLContext(configuration: .makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(try NIOSSLPrivateKey(file: pair.key, format: .pem))))
    }
}

/// Sends a plain GET and returns its status, or the class of its error.
func leanGET(_ c: LeanHTTP1Connection, head: Bool = false, timeout: TimeAmount = .seconds(5)) async -> String {
    var request = c.buffer(capacity: 64)
    request.writeString("\(head ? "HEAD" : "GET") / HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
    do { return String(try await c.send(request, head: head, timeout: timeout)) } catch let e as LeanHTTPError { return e.errorClass } catch { return "\(error)" }
}

@Suite("Lean HTTP/1.1 client against a scripted TCP server, plain and over TLS")
struct LeanHTTPTests {
    static let ok5 = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"

    @Test("response framings: each request gets its status, and keep-alive connections are reused", arguments: [
        ("content-length", [ScriptedServer.Reply.send(ok5), .send(ok5)], ["200", "200"], 1),
        ("chunked, with an extension and a trailer", [.send("HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nx-t: 1\r\n\r\n"), .send(ok5)], ["201", "200"], 1),
        ("100 Continue before the response", [.send("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"), .send(ok5)], ["204", "200"], 1),
        ("byte by byte", [.send(ok5, byteByByte: true), .send("HTTP/1.1 404 Not Found\r\ntransfer-encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", byteByByte: true)], ["200", "404"], 1),
        ("ended by close: the next request opens a new connection", [.send("HTTP/1.1 200 OK\r\n\r\nbody until close", close: true), .send(ok5)], ["200", "200"], 2),
        ("Connection: close", [.send("HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"), .send(ok5)], ["503", "200"], 2),
        ("HTTP/1.0 closes unless kept alive", [.send("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"), .send("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"), .send(ok5)], ["200", "200", "200"], 2),
        ("not HTTP", [.send("SSH-2.0-OpenSSH\r\n\r\n"), .send(ok5)], ["bad_response", "200"], 2),
        ("closed in the middle of the body", [.send("HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort", close: true), .send(ok5)], ["connection_closed", "200"], 2),
    ] as [(String, [ScriptedServer.Reply], [String], Int)])
    func framings(name: String, replies: [ScriptedServer.Reply], expected: [String], connections: Int) async throws {
        // Each framing over plain TCP and over TLS.
        for tls in [false, true] {
            try await framings(name: "\(name)\(tls ? " (TLS)" : "")", replies: replies, expected: expected, connections: connections, tls: tls)
        }
    }

    func framings(name: String, replies: [ScriptedServer.Reply], expected: [String], connections: Int, tls: Bool) async throws {
        let server = try await ScriptedServer(replies, tls: tls ? try TestTLS.server(TestTLS.made.trusted) : nil)
        let c = LeanHTTP1Connection(host: "127.0.0.1", port: server.port, tls: tls)
        var got: [String] = []
        // A generous timeout: the framings must be read, however loaded the machine (the
        // timeout itself has a test of its own).
        for _ in expected { got.append(await leanGET(c, timeout: .seconds(30))) }
        #expect(got == expected, "\(name)")
        // Counted at the server: one request each, on as many connections as the framing needs.
        let seen = server.seen
        #expect(seen.requests.count == expected.count, "\(name)")
        #expect(seen.connections == connections, "\(name)")
        c.close()
        await server.close()
    }

    @Test("with the body asked for (the scenario API): each framing gives its status, headers and whole body", arguments: [
        ("content-length", ScriptedServer.Reply.send(ok5), "200", "hello", 1),
        ("chunked, with an extension and a trailer", .send("HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nX-Id: 7\r\n\r\n5;x=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nx-t: 1\r\n\r\n"), "201", "hello0123456789", 1),
        ("byte by byte", .send("HTTP/1.1 404 Not Found\r\ntransfer-encoding: Chunked\r\nX-Id:  7 \r\n\r\n3\r\nabc\r\n0\r\n\r\n", byteByByte: true), "404", "abc", 1),
        ("ended by close", .send("HTTP/1.1 200 OK\r\n\r\nbody until close", close: true), "200", "body until close", 2),
        ("100 Continue, then 204", .send("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nX-Id: 7\r\n\r\n"), "204", "", 1),
        ("a body longer than the limit (16 bytes)", .send("HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n01234567890123456789"), "too many bytes", "", 2),
    ] as [(String, ScriptedServer.Reply, String, String, Int)])
    func bodies(name: String, reply: ScriptedServer.Reply, status: String, body: String, connections: Int) async throws {
        let server = try await ScriptedServer([reply, .send(Self.ok5)])
        let c = LeanHTTP1Connection(host: "127.0.0.1", port: server.port)
        var request = c.buffer(capacity: 64)
        request.writeString("GET / HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        do {
            let r = try await c.exchange(request, timeout: .seconds(30), maxBody: 16)
            #expect(String(r.status) == status && (r.body.map { String(buffer: $0) } ?? "") == body, "\(name)")
            // The rows answering other than 200 send `X-Id: 7` (with spaces around it once).
            if status != "200" { #expect(r.headers?["x-id"] == ["7"], "\(name): \(String(describing: r.headers))") }
        } catch is NIOTooManyBytesError {
            #expect(status == "too many bytes", "\(name)")
        }
        // The connection goes on (or is replaced) for the next request.
        #expect(await leanGET(c, timeout: .seconds(30)) == "200", "\(name)")
        #expect(server.seen.connections == connections, "\(name)")
        c.close()
        await server.close()
    }

    @Test("HEAD: the content-length of the body not sent is not waited for")
    func head() async throws {
        let server = try await ScriptedServer([.send("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"), .send(Self.ok5)])
        let c = LeanHTTP1Connection(host: "127.0.0.1", port: server.port)
        #expect(await leanGET(c, head: true, timeout: .seconds(30)) == "200")  // a client waiting for the body would time out
        #expect(await leanGET(c) == "200")
        #expect(server.seen.connections == 1)
        await server.close()
    }

    @Test("no answer within the timeout is a timeout; the connection is replaced")
    func timeout() async throws {
        let server = try await ScriptedServer([.silence, .send(Self.ok5)])
        let c = LeanHTTP1Connection(host: "127.0.0.1", port: server.port)
        #expect(await leanGET(c, timeout: .milliseconds(300)) == "timeout")
        #expect(await leanGET(c) == "200")
        #expect(server.seen.connections == 2)
        await server.close()
    }

    // Found by review: the timer of a request with a long timeout stayed armed, and a later
    // request with a shorter one waited for the old deadline.
    @Test("a shorter timeout after a longer one on the same connection is kept")
    func shorterTimeout() async throws {
        let server = try await ScriptedServer([.send(Self.ok5), .silence, .send(Self.ok5)])
        let c = LeanHTTP1Connection(host: "127.0.0.1", port: server.port)
        #expect(await leanGET(c, timeout: .seconds(120)) == "200")
        let second = await withTaskGroup(of: String.self) { g in
            g.addTask { await leanGET(c, timeout: .milliseconds(300)) }
            g.addTask {
                try? await Task.sleep(for: .seconds(60))
                return "no answer within 60 s"
            }
            let first = await g.next()!
            g.cancelAll()
            return first
        }
        #expect(second == "timeout")
        #expect(await leanGET(c) == "200")
        c.close()
        await server.close()
    }

    @Test("a cancelled request fails as cancelled; the connection's next request is answered")
    func cancelled() async throws {
        let server = try await ScriptedServer([.silence, .send(Self.ok5)])
        let c = LeanHTTP1Connection(host: "127.0.0.1", port: server.port)
        let task = Task { await leanGET(c, timeout: .seconds(60)) }
        try await waitFor("the request at the server", timeout: .seconds(30)) { server.seen.requests.count == 1 }
        task.cancel()
        #expect(await task.value.contains("CancellationError"))
        #expect(await leanGET(c) == "200")
        #expect(server.seen.connections == 2)
        c.close()
        await server.close()
    }

    @Test("TLS failures are tls, nothing reaches the server, and the next request over a good handshake is answered", arguments: [
        ("a certificate no one trusts", "127.0.0.1", "stranger"),
        ("a trusted certificate for another name", "127.0.0.1", "named"),
        ("a server that does not speak TLS", "127.0.0.1", "plain"),
    ])
    func tlsFailures(name: String, host: String, server kind: String) async throws {
        let tls: NIOSSLContext? = switch kind {
        case "stranger": try TestTLS.server(TestTLS.made.stranger)
        case "named": try TestTLS.server(TestTLS.made.named)
        default: nil
        }
        let server = try await ScriptedServer([.send(Self.ok5)], tls: tls)
        let c = LeanHTTP1Connection(host: host, port: server.port, tls: true)
        #expect(await leanGET(c, timeout: .seconds(30)) == "tls", "\(name)")
        #expect(server.seen.requests.isEmpty, "\(name)")
        c.close()
        await server.close()
        // A failed handshake leaves nothing behind: the process' TLS context serves the next server.
        let good = try await ScriptedServer([.send(Self.ok5)], tls: try TestTLS.server(TestTLS.made.trusted))
        let d = LeanHTTP1Connection(host: "127.0.0.1", port: good.port, tls: true)
        #expect(await leanGET(d, timeout: .seconds(30)) == "200", "\(name)")
        d.close()
        await good.close()
    }

    @Test("a port nobody listens on is a connect error")
    func refused() async throws {
        // A socket bound but not listening holds the port, so no other test's server gets it.
        let (fd, port) = try bindLoopback()
        defer { close(fd) }
        #expect(await leanGET(LeanHTTP1Connection(host: "127.0.0.1", port: port)) == "connect")
    }

    @Test("a child process started while connections are open inherits none of them: only stdin, stdout and stderr")
    func childInheritsNoDescriptors() async throws {
        // NIO opens sockets without close-on-exec. A child that inherited one (a worker or
        // redis-server this process starts) kept a connection open after this process closed
        // it, until the child exited: a server's close never reached its client.
        let server = try await ScriptedServer([.silence])
        let c = LeanHTTP1Connection(host: "127.0.0.1", port: server.port)
        async let status = leanGET(c, timeout: .seconds(30))
        try await waitFor("the request at the server") { server.seen.requests.count == 1 }
        let child = try ChildProcess("/bin/sleep", ["60"])
        let descriptors = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(child.pid)/fd").sorted()
        child.send(SIGKILL)
        #expect(descriptors == ["0", "1", "2"])
        c.close()
        #expect(await status == "connection_closed")
        await server.close()
    }
}
