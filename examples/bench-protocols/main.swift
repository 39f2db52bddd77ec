import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import J4
import J4GRPC
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import Synchronization
import WSClient

// What J4 costs over a bare client loop, for scripts/bench/protocols.sh: gRPC unary calls
// through J4GRPC against a bare grpc-swift-2 loop, WebSocket echoes through `vu.webSocket`
// against a bare swift-websocket loop, on the same echo servers.
//
//   j4-bench-protocols grpc-server PORT | ws-server PORT        the echo servers
//   j4-bench-protocols grpc-bare PORT CALLERS SECONDS           prints the calls made
//   j4-bench-protocols ws-bare URL CONNECTIONS SECONDS          prints the echoes received
//   j4-bench-protocols run DEFINITION ...                       j4, with grpc-unary and ws-echo

/// gRPC messages as raw bytes: no coding cost on either side.
struct RawBytes: MessageSerializer, MessageDeserializer {
    func serialize<Bytes: GRPCContiguousBytes>(_ message: [UInt8]) throws -> Bytes { Bytes(message) }
    func deserialize<Bytes: GRPCContiguousBytes>(_ bytes: Bytes) throws -> [UInt8] { bytes.withUnsafeBytes { Array($0) } }
}

let echoMethod = MethodDescriptor(fullyQualifiedService: "bench.Echo", method: "Get")
let payload = Array("ping".utf8)

struct EchoService: RegistrableRPCService {
    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        router.registerHandler(forMethod: echoMethod, deserializer: RawBytes(), serializer: RawBytes()) { request, _ in
            var last: [UInt8] = []
            for try await m in request.messages { last = m }
            let reply = last
            return StreamingServerResponse(of: [UInt8].self, metadata: [:]) { writer in
                try await writer.write(reply)
                return [:]
            }
        }
    }
}

typealias Client = GRPCClient<HTTP2ClientTransport.Posix>

func makeClient(port: Int, interceptors: [any ClientInterceptor]) throws -> Client {
    let client = GRPCClient(
        transport: try HTTP2ClientTransport.Posix(target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: .plaintext),
        interceptors: interceptors)
    Task.detached { try await client.runConnections() }
    return client
}

func call(_ client: Client) async throws {
    _ = try await client.unary(request: ClientRequest(message: payload), descriptor: echoMethod, serializer: RawBytes(), deserializer: RawBytes(), options: .defaults) { try $0.message }
}

/// Answers each text frame with the same text.
final class EchoHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text, .binary:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: frame.opcode, data: frame.unmaskedData)), promise: nil)
        case .ping:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
        case .connectionClose:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: frame.unmaskedData)), promise: nil)
            context.close(promise: nil)
        default:
            break
        }
    }
}

func serveWebSocket(port: Int) async throws {
    let upgrader = NIOWebSocketServerUpgrader(
        maxFrameSize: 1 << 20, shouldUpgrade: { channel, _ in channel.eventLoop.makeSucceededFuture(HTTPHeaders()) },
        upgradePipelineHandler: { channel, _ in channel.pipeline.addHandler(EchoHandler()) })
    let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        .childChannelInitializer { channel in
            channel.pipeline.configureHTTPServerPipeline(withServerUpgrade: (upgraders: [upgrader], completionHandler: { _ in }))
        }
        .bind(host: "127.0.0.1", port: port).get()
    print("ws-server listening on ws://127.0.0.1:\(channel.localAddress?.port ?? port)/")
    try await channel.closeFuture.get()
}

/// Runs `body` on `workers` tasks until `seconds` have passed; returns the sum of their counts.
func loop(_ workers: Int, _ seconds: Int, _ body: @escaping @Sendable (ContinuousClock.Instant) async -> Int) async -> Int {
    let deadline = ContinuousClock.now + .seconds(seconds)
    return await withTaskGroup(of: Int.self) { group in
        for _ in 0..<workers { group.addTask { await body(deadline) } }
        return await group.reduce(0, +)
    }
}

/// The messages a VU's socket received, taken one at a time by its iterations (a VU runs one
/// iteration at a time).
final class Inbox: @unchecked Sendable {
    var messages: AsyncStream<String>.AsyncIterator
    init(_ stream: AsyncStream<String>) { messages = stream.makeAsyncIterator() }
    func next() async -> String? { await messages.next() }
}

/// One gRPC client for the whole process, as the bare loop has: its HTTP/2 connection carries
/// every VU's calls.
let sharedClient = Mutex<Client?>(nil)

let grpcUnary = Scenario("grpc-unary") { vu in
    let port = Int(vu.params["port"]?.intValue ?? 50051)
    let client = try sharedClient.withLock { c in
        if let c { return c }
        c = try makeClient(port: port, interceptors: [J4GRPCInterceptor()])
        return c!
    }
    return { _ in try await call(client) }
}

let wsEcho = Scenario("ws-echo") { vu in
    let url = vu.params["url"]?.stringValue ?? "ws://127.0.0.1:8083/"
    let (stream, received) = AsyncStream.makeStream(of: String.self)
    let socket = vu.webSocket("echo", url: url) { text in received.yield(text) }
    try await socket.waitUntilConnected()
    let inbox = Inbox(stream)
    return { it in
        try await it.step("echo") {
            try await socket.send("ping")
            guard await inbox.next() != nil else { throw ScenarioError("ws_closed", "the socket ended") }
        }
    }
}

let arguments = Array(CommandLine.arguments.dropFirst())
switch arguments.first {
case "grpc-server":
    let server = GRPCServer(
        transport: .http2NIOPosix(address: .ipv4(host: "127.0.0.1", port: Int(arguments[1]) ?? 0), transportSecurity: .plaintext),
        services: [EchoService()])
    try await withThrowingDiscardingTaskGroup { group in
        group.addTask { try await server.serve() }
        if let port = try await server.listeningAddress?.ipv4?.port { print("grpc-server listening on 127.0.0.1:\(port)") }
    }
case "ws-server":
    try await serveWebSocket(port: Int(arguments[1]) ?? 0)
case "grpc-bare":
    let client = try makeClient(port: Int(arguments[1])!, interceptors: [])
    let calls = await loop(Int(arguments[2])!, Int(arguments[3])!) { deadline in
        var n = 0
        while ContinuousClock.now < deadline, (try? await call(client)) != nil { n += 1 }
        return n
    }
    client.beginGracefulShutdown()
    print("calls \(calls)")
case "ws-bare":
    let url = arguments[1]
    let echoes = await loop(Int(arguments[2])!, Int(arguments[3])!) { deadline in
        let count = Atomic<Int>(0)
        _ = try? await WebSocketClient.connect(url: url, logger: Logger(label: "bare")) { inbound, outbound, _ in
            var messages = inbound.messages(maxSize: 1 << 20).makeAsyncIterator()
            while ContinuousClock.now < deadline {
                try await outbound.write(.text("ping"))
                guard try await messages.next() != nil else { break }
                count.add(1, ordering: .relaxed)
            }
            try await outbound.close(.normalClosure, reason: nil)
        }
        return count.load(ordering: .relaxed)
    }
    print("echoes \(echoes)")
default:
    await J4CLI.main(scenarios: [grpcUnary, wsEcho])
}
