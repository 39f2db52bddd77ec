// chat-server: a one-room chat over WebSocket, the target of the chat example.
//
//   POST /login {"user", "password"}   → {"token"} (password: "secret-" + user)
//   GET  /chat?token=T                 → WebSocket. Send {"type":"msg",...}: every other
//                                        member gets it as sent. Send {"type":"ping","id":N}:
//                                        you get {"type":"pong","id":N}.
//   GET  /__stats                      → what it served, as JSON
//   POST /__drop                       → closes every WebSocket (to test reconnection)
//
//   chat-server [--port 8082]
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import Synchronization

/// Members, tokens and counts, behind one lock.
final class Room: Sendable {
    struct State {
        var tokens: Set<String> = []
        var members: [ObjectIdentifier: any Channel] = [:]
        var counts: [String: Int] = [:]
    }
    let state = Mutex(State())

    func count(_ key: String, _ n: Int = 1) { state.withLock { $0.counts[key, default: 0] += n } }

    func login(user: String, password: String) -> String? {
        guard password == "secret-" + user else { return nil }
        let token = UUID().uuidString
        state.withLock { s in
            s.tokens.insert(token)
            s.counts["logins", default: 0] += 1
        }
        return token
    }

    func valid(_ token: String) -> Bool { state.withLock { $0.tokens.contains(token) } }

    func join(_ channel: any Channel) {
        state.withLock { s in
            s.members[ObjectIdentifier(channel)] = channel
            s.counts["connections", default: 0] += 1
        }
    }

    func leave(_ channel: any Channel) {
        state.withLock { s in
            if s.members.removeValue(forKey: ObjectIdentifier(channel)) != nil { s.counts["disconnections", default: 0] += 1 }
        }
    }

    /// Everyone but `sender`.
    func others(than sender: any Channel) -> [any Channel] {
        state.withLock { s in s.members.values.filter { $0 !== sender } }
    }

    func everyone() -> [any Channel] { state.withLock { Array($0.members.values) } }

    var stats: [String: Int] {
        state.withLock { s in
            var c = s.counts
            c["members"] = s.members.count
            for key in ["logins", "connections", "disconnections", "messages", "deliveries", "pings", "drops"] where c[key] == nil { c[key] = 0 }
            return c
        }
    }
}

let room = Room()

func send(_ text: String, to channel: any Channel) {
    let frame = WebSocketFrame(fin: true, opcode: .text, data: channel.allocator.buffer(string: text))
    channel.writeAndFlush(frame, promise: nil)
}

/// One member's WebSocket.
final class ChatHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    func handlerAdded(context: ChannelHandlerContext) { room.join(context.channel) }
    func channelInactive(context: ChannelHandlerContext) { room.leave(context.channel) }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text:
            let text = String(buffer: frame.unmaskedData)
            let message = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
            switch message["type"] as? String {
            case "msg":
                let others = room.others(than: context.channel)
                room.count("messages")
                room.count("deliveries", others.count)
                for member in others { send(text, to: member) }
            case "ping":
                room.count("pings")
                send("{\"type\":\"pong\",\"id\":\(message["id"] as? Int ?? 0)}", to: context.channel)
            default:
                room.count("unknown")
            }
        case .ping:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
        case .connectionClose:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: frame.unmaskedData))).whenComplete { _ in
                context.close(promise: nil)
            }
        default:
            break
        }
    }
}

/// Plain HTTP: login, stats, drop.
final class HTTPHandler: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    var head: HTTPRequestHead?
    var body = ByteBuffer()

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body.clear()
        case .body(var b):
            body.writeBuffer(&b)
        case .end:
            guard let h = head else { return }
            let (status, reply) = respond(h, String(buffer: body))
            var headers = HTTPHeaders()
            headers.add(name: "content-type", value: "application/json")
            headers.add(name: "content-length", value: String(reply.utf8.count))
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: reply)))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }

    func respond(_ head: HTTPRequestHead, _ body: String) -> (HTTPResponseStatus, String) {
        let path = head.uri.split(separator: "?").first.map(String.init) ?? head.uri
        switch (head.method, path) {
        case (.POST, "/login"):
            let input = (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:]
            guard let user = input["user"] as? String, let password = input["password"] as? String,
                  let token = room.login(user: user, password: password) else { return (.unauthorized, "{\"error\":\"bad user or password\"}") }
            return (.ok, "{\"token\":\"\(token)\"}")
        case (.GET, "/__stats"):
            let data = (try? JSONSerialization.data(withJSONObject: room.stats, options: [.sortedKeys])) ?? Data("{}".utf8)
            return (.ok, String(decoding: data, as: UTF8.self))
        case (.POST, "/__drop"):
            let members = room.everyone()
            room.count("drops", members.count)
            for m in members { m.close(promise: nil) }
            return (.ok, "{\"dropped\":\(members.count)}")
        default:
            return (.notFound, "{\"error\":\"no route\"}")
        }
    }
}

var port = 8082
var arguments = CommandLine.arguments.dropFirst()
while let a = arguments.popFirst() {
    if a == "--port", let p = arguments.popFirst().flatMap(Int.init) { port = p } else {
        FileHandle.standardError.write(Data("usage: chat-server [--port N]\n".utf8))
        exit(2)
    }
}

let upgrader = NIOWebSocketServerUpgrader(
    maxFrameSize: 1 << 20,
    shouldUpgrade: { channel, head in
        let query = head.uri.split(separator: "?").dropFirst().first.map(String.init) ?? ""
        let token = query.split(separator: "&").first { $0.hasPrefix("token=") }.map { String($0.dropFirst(6)) } ?? ""
        let ok = head.uri.hasPrefix("/chat") && room.valid(token)
        return channel.eventLoop.makeSucceededFuture(ok ? HTTPHeaders() : nil)
    },
    upgradePipelineHandler: { channel, _ in
        channel.pipeline.addHandlers([NIOWebSocketFrameAggregator(minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: 64, maxAccumulatedFrameSize: 1 << 20), ChatHandler()])
    })

let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
    .childChannelInitializer { channel in
        let http = HTTPHandler()
        return channel.pipeline.configureHTTPServerPipeline(withServerUpgrade: (upgraders: [upgrader], completionHandler: { context in
            _ = context.pipeline.removeHandler(http)
        })).flatMap { channel.pipeline.addHandler(http) }
    }
    .bind(host: "127.0.0.1", port: port).get()
FileHandle.standardOutput.write(Data("chat-server listening on http://127.0.0.1:\(channel.localAddress?.port ?? port)/\n".utf8))
try await channel.closeFuture.get()
