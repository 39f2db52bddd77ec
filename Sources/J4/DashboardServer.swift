import Foundation
internal import J4Runtime
import NIOCore
import NIOHTTP1
import NIOPosix

/// The web dashboard's HTTP/1.1 server: the page, the JSON API, the streams and the controls
/// of ``DashboardRoute``, answered from one ``DashboardHub``.
final class DashboardServer: Sendable {
    let port: Int
    let channel: any Channel
    let hub: DashboardHub

    init(port: Int, channel: any Channel, hub: DashboardHub) {
        self.port = port
        self.channel = channel
        self.hub = hub
    }

    /// Binds `host:port` (0: a free port) and serves.
    static func start(host: String, port: Int, hub: DashboardHub, allowControl: Bool) async throws -> DashboardServer {
        let page = DashboardPage.html(control: allowControl)
        let bind = host
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(DashboardHandler(hub: hub, page: page, allowControl: allowControl, bind: bind))
                }
            }
            .bind(host: host, port: port).get()
        return DashboardServer(port: channel.localAddress?.port ?? port, channel: channel, hub: hub)
    }

    /// Stops listening (the process' end closes the connections still open).
    func close() async { try? await channel.close() }
}

/// One connection's requests, one at a time (the pipeline handler holds the next until the
/// answer ends). Answers that need Redis are computed off the event loop and written back.
final class DashboardHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    /// The largest request body read (the controls' JSON is a few bytes).
    static let maxBody = 16 * 1024

    let hub: DashboardHub
    let page: String
    let allowControl: Bool
    /// The address it listens on, for the `Host` check.
    let bind: String
    var head: HTTPRequestHead?
    var body: ByteBuffer?
    var tooLarge = false
    var stream: Task<Void, Never>?

    init(hub: DashboardHub, page: String, allowControl: Bool, bind: String) {
        self.hub = hub
        self.page = page
        self.allowControl = allowControl
        self.bind = bind
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body = nil
            tooLarge = false
        case .body(var part):
            if (body?.readableBytes ?? 0) + part.readableBytes > Self.maxBody { tooLarge = true } else if body == nil { body = part } else { body!.writeBuffer(&part) }
        case .end:
            guard let h = head else { return }
            head = nil
            answer(h, channel: context.channel)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        stream?.cancel()
        context.fireChannelInactive()
    }

    func answer(_ h: HTTPRequestHead, channel: any Channel) {
        let reply = Reply(channel: channel, keepAlive: h.isKeepAlive, head: h.method == .HEAD)
        if tooLarge { return reply.refuse(DashboardRefusal(status: 413, field: "body", message: "the body is over \(Self.maxBody) bytes")) }
        let host = h.headers.first(name: "host")
        guard DashboardRoute.hostAllowed(host, bind: bind) else {
            return reply.refuse(DashboardRefusal(status: 403, message: "this dashboard answers to 127.0.0.1, localhost and [::1] only, not \(host ?? "a request without Host")"))
        }
        let route: DashboardRoute
        switch DashboardRoute.parse(method: h.method.rawValue, path: h.uri, body: body.map { String(buffer: $0) }, allowControl: allowControl) {
        case .failure(let refusal): return reply.refuse(refusal)
        case .success(let r): route = r
        }
        if case .control = route, !DashboardRoute.originAllowed(h.headers.first(name: "origin"), host: host) {
            // A page of another site may not press the buttons (its POST carries its origin).
            return reply.refuse(DashboardRefusal(status: 403, message: "controls are refused from another origin (\(h.headers.first(name: "origin") ?? ""))"))
        }
        let hub = self.hub
        let page = self.page
        let who = "dashboard:" + (channel.remoteAddress?.ipAddress ?? "?")
        let task = Task {
            do {
                switch route {
                case .runsPage, .runPage: reply.send(200, "text/html; charset=utf-8", page)
                case .runs: reply.send(200, "application/json", try await hub.runsJSON())
                case .run(let id):
                    guard let json = try await hub.summaryJSON(id) else { return reply.refuse(Self.noRun(id)) }
                    reply.send(200, "application/json", json)
                case .report(let id):
                    guard let html = try await hub.reportHTML(id) else { return reply.refuse(Self.noRun(id)) }
                    reply.send(200, "text/html; charset=utf-8", html, extra: [("content-disposition", "attachment; filename=\"j4-\(id).html\"")])
                case .control(let id, let control):
                    switch await hub.control(id, control, who: who) {
                    case .success(let json): reply.send(200, "application/json", json)
                    case .failure(let refusal): reply.refuse(refusal)
                    }
                case .stream(let id):
                    if reply.head {
                        return try await hub.exists(id) ? reply.startStream() : reply.refuse(Self.noRun(id))
                    }
                    guard let events = try await hub.subscribe(id) else { return reply.refuse(Self.noRun(id)) }
                    reply.startStream()
                    for await event in events {
                        // A reader that does not keep up misses points rather than growing this
                        // process; the rest (history, state, end) it gets.
                        if channel.isWritable || !event.hasPrefix("event: point\n") { reply.chunk(event) }
                    }
                    reply.endStream()
                }
            } catch is CancellationError {
            } catch let e as CorruptRunError {
                reply.refuse(DashboardRefusal(status: 500, field: "run", message: "\(e) (its data in Redis cannot be used; `j4 abort` still ends it)"))
            } catch {
                reply.refuse(DashboardRefusal(status: 503, message: "cannot read Redis: \(error)"))
            }
        }
        if case .stream = route { stream = task }
    }

    static func noRun(_ id: String) -> DashboardRefusal { DashboardRefusal(status: 404, field: "run", message: "no run \(id)") }
}

/// Writes one answer on a connection, from any thread.
struct Reply: Sendable {
    let channel: any Channel
    let keepAlive: Bool
    /// A HEAD request: the head only.
    let head: Bool

    func send(_ status: Int, _ type: String, _ text: String, extra: [(String, String)] = []) {
        var headers = HTTPHeaders([("content-type", type), ("content-length", String(text.utf8.count)), ("cache-control", "no-store")] + extra)
        if !keepAlive { headers.add(name: "connection", value: "close") }
        channel.write(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: status), headers: headers)), promise: nil)
        if !head { channel.write(HTTPServerResponsePart.body(.byteBuffer(channel.allocator.buffer(string: text))), promise: nil) }
        let channel = self.channel, keepAlive = self.keepAlive
        channel.writeAndFlush(HTTPServerResponsePart.end(nil)).whenComplete { _ in if !keepAlive { channel.close(promise: nil) } }
    }

    func refuse(_ refusal: DashboardRefusal) { send(refusal.status, "application/json", refusal.json + "\n") }

    /// The head of a Server-Sent Events stream (chunked, never cached or buffered by a proxy).
    func startStream() {
        let headers = HTTPHeaders([("content-type", "text/event-stream"), ("cache-control", "no-store"), ("x-accel-buffering", "no")])
        channel.writeAndFlush(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers)), promise: nil)
        if head { endStream() }
    }

    /// The end of a stream: the last chunk, then the connection as the request asked.
    func endStream() {
        let channel = self.channel, keepAlive = self.keepAlive
        channel.writeAndFlush(HTTPServerResponsePart.end(nil)).whenComplete { _ in if !keepAlive { channel.close(promise: nil) } }
    }

    func chunk(_ text: String) {
        guard !head else { return }
        channel.writeAndFlush(HTTPServerResponsePart.body(.byteBuffer(channel.allocator.buffer(string: text))), promise: nil)
    }
}
