import Foundation
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import NIOSSL
import Synchronization

/// An HTTP/2 server on 127.0.0.1, over plain TCP (prior knowledge) or TLS (`h2` by ALPN),
/// that answers each request, once its last frame is in, with the next scripted reply: a
/// list of frames written on the request's stream as given.
final class ScriptedHTTP2Server: Sendable {
    enum Frame: Sendable {
        /// A header block; `status` nil for trailers.
        case headers(status: Int?, [(String, String)] = [], end: Bool)
        /// `count` bytes of `byte` (or `text`) as one DATA frame.
        case data(String, end: Bool)
        case bytes(Int, end: Bool)
        case reset
        /// GOAWAY naming the stream before this one as the last the server handles.
        case goAway
        /// Nothing more on this stream.
        case silence
    }
    struct Seen {
        var connections = 0
        /// Every request's header block, in the order their last frame came in.
        var requests: [[(String, String)]] = []
        var bodies: [String] = []
    }
    final class State: Sendable {
        let replies: Mutex<[[Frame]]>
        let seen = Mutex(Seen())
        init(_ replies: [[Frame]]) { self.replies = Mutex(replies) }
    }
    let state: State
    let channel: any Channel

    init(_ replies: [[Frame]], tls: NIOSSLContext? = nil) async throws {
        let state = State(replies)
        self.state = state
        channel = try await testServer(tls: tls) { pipeline in
            // Header blocks are sent as scripted, valid or not.
            try pipeline.addHandler(NIOHTTP2Handler(mode: .server, headerBlockValidation: .disabled))
            try pipeline.addHandler(Handler(state: state))
        }
    }

    /// A TLS context for the server that offers `h2` by ALPN (or only `http/1.1`).
    static func tls(offering protocols: [String] = ["h2"]) throws -> NIOSSLContext {
        let pair = TestTLS.made.trusted
        let chain = try NIOSSLCertificate.fromPEMFile(pair.certificate).map { NIOSSLCertificateSource.certificate($0) }
        var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(try NIOSSLPrivateKey(file: pair.key, format: .pem)))
        configuration.applicationProtocols = protocols
        return try NIOSSLContext(configuration: configuration)
    }

    var seen: Seen { state.seen.withLock { $0 } }
    var port: Int { channel.localAddress!.port! }
    func close() async { try? await channel.close() }

    final class Handler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTP2Frame
        typealias OutboundOut = HTTP2Frame
        let server: State
        var heads: [HTTP2StreamID: [(String, String)]] = [:]
        var bodies: [HTTP2StreamID: String] = [:]
        init(state: State) { server = state }

        func channelActive(context: ChannelHandlerContext) {
            server.seen.withLock { $0.connections += 1 }
            context.fireChannelActive()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let frame = unwrapInboundIn(data)
            let id = frame.streamID
            switch frame.payload {
            case .headers(let h):
                heads[id] = h.headers.map { ($0.name, $0.value) }
                if h.endStream { answer(id, context) }
            case .data(let d):
                if case .byteBuffer(let b) = d.data { bodies[id, default: ""] += String(buffer: b) }
                if d.endStream { answer(id, context) }
            default:
                break
            }
        }

        private func answer(_ id: HTTP2StreamID, _ context: ChannelHandlerContext) {
            let head = heads.removeValue(forKey: id) ?? []
            let body = bodies.removeValue(forKey: id) ?? ""
            server.seen.withLock { $0.requests.append(head); $0.bodies.append(body) }
            let reply = server.replies.withLock { $0.isEmpty ? [Frame.silence] : $0.removeFirst() }
            for frame in reply {
                let payload: HTTP2Frame.FramePayload
                switch frame {
                case .headers(let status, let fields, let end):
                    var block = HPACKHeaders()
                    if let status { block.add(name: ":status", value: String(status)) }
                    for (k, v) in fields { block.add(name: k, value: v) }
                    payload = .headers(.init(headers: block, endStream: end))
                case .data(let text, let end):
                    payload = .data(.init(data: .byteBuffer(ByteBuffer(string: text)), endStream: end))
                case .bytes(let count, let end):
                    payload = .data(.init(data: .byteBuffer(ByteBuffer(repeating: 0x61, count: count)), endStream: end))
                case .reset:
                    payload = .rstStream(.internalError)
                case .goAway:
                    payload = .goAway(lastStreamID: HTTP2StreamID(max(0, Int(id) - 2)), errorCode: .noError, opaqueData: nil)
                    context.write(wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: payload)), promise: nil)
                    continue
                case .silence:
                    continue
                }
                context.write(wrapOutboundOut(HTTP2Frame(streamID: id, payload: payload)), promise: nil)
            }
            context.flush()
        }
    }
}
