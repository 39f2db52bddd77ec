import NIOCore
import NIOHTTP1
import NIOPosix

/// A tiny HTTP/1.1 server for a process' own endpoints (`/metrics`, `/healthz`): every GET is
/// answered by `handler` (path → status, content type, body); anything else gets 405.
final class MetricsEndpoint: Sendable {
    /// The bound port.
    let port: Int
    let channel: any Channel

    init(port: Int, channel: any Channel) {
        self.port = port
        self.channel = channel
    }

    /// Binds `host:port` (0: a free port) and serves.
    static func start(host: String, port: Int, handler: @escaping @Sendable (String) -> (Int, String, String)) async throws -> MetricsEndpoint {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap { channel.pipeline.addHandler(EndpointHandler(handler: handler)) }
            }
            .bind(host: host, port: port).get()
        return MetricsEndpoint(port: channel.localAddress?.port ?? port, channel: channel)
    }

    /// Stops listening.
    func close() async { try? await channel.close() }
}

final class EndpointHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let handler: @Sendable (String) -> (Int, String, String)
    var head: HTTPRequestHead?

    init(handler: @escaping @Sendable (String) -> (Int, String, String)) { self.handler = handler }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h): head = h
        case .body: break
        case .end:
            guard let h = head else { return }
            let (status, type, body) = h.method == .GET ? handler(h.uri.split(separator: "?").first.map(String.init) ?? h.uri) : (405, "text/plain", "GET only\n")
            Reply(channel: context.channel, keepAlive: h.isKeepAlive, head: false).send(status, type, body)
        }
    }
}
