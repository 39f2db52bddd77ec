import Foundation
import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOPosix
import NIOSSL
import Synchronization

/// How `j4 sink` answers.
public struct SinkOptions: Sendable {
    /// Address to bind (default 127.0.0.1).
    public var host = "127.0.0.1"
    /// Port to bind; 0 picks a free one.
    public var port = 8080
    /// Added to every response.
    public var latency: Duration = .zero
    /// Up to this much more or less latency, uniformly.
    public var jitter: Duration = .zero
    /// Share of load requests answered with 500 (0...1).
    public var errorRate = 0.0
    /// Every `every`, for the last `duration` of it, all requests wait until the stall ends.
    public var stall: (every: Duration, duration: Duration)?
    /// PEM certificate chain and private key files: serve HTTPS, HTTP/2 or HTTP/1.1 by ALPN.
    public var tls: (certificate: String, key: String)?

    /// Defaults: 127.0.0.1:8080, no latency, no errors, no stall.
    public init() {}
}

/// What the sink has counted, as served by `GET /__sink/stats`.
public struct SinkStats: Sendable, Codable, Equatable {
    /// One second's count.
    public struct Second: Sendable, Codable, Equatable {
        /// Unix second.
        public var t: Int64
        /// Requests that arrived in it.
        public var n: Int64
    }
    /// Load requests received (not counting `/__sink/...`).
    public var requests: Int64
    /// Most load requests in flight at once.
    public var in_flight_max: Int64
    /// Load requests in flight now.
    public var in_flight: Int64
    /// Responses answered with an injected 500.
    public var errors: Int64
    /// By the `x-j4-worker` header (`-` when absent).
    public var by_worker: [String: Int64]
    /// By the `x-j4-run` header (`-` when absent).
    public var by_run: [String: Int64]
    /// By arrival second, ascending.
    public var by_second: [Second]
    /// By the `x-j4-tick` header (ticks as text; `-` when absent).
    public var by_tick: [String: Int64]
    /// Unix time (ms) the last load request arrived, if any did.
    public var last_ms: Int64?
    /// By HTTP version: `1.1` or `2`.
    public var by_version: [String: Int64]
}

/// Who sent what, as served by `GET /__sink/attribution`: for every `x-j4-tick`/`x-j4-shard`
/// pair, the count per `x-j4-worker`. A tester checks with it that no (tick, shard) was ever
/// sent by two workers.
public struct SinkAttribution: Sendable, Codable, Equatable {
    /// "tick/shard" → worker → requests.
    public var by_tick_shard: [String: [String: Int64]]
    /// Requests not recorded because the table reached its cap (200,000 pairs).
    public var overflow: Int64
}

/// A small calibration HTTP/1.1 server: the target for demos, tests and benchmarks.
///
/// Every request other than `/__sink/...` is counted when its head arrives, then answered
/// after the configured latency (and any stall) with `200 ok`, or `500` at the error rate.
public final class Sink: Sendable {
    struct Counters {
        var requests: Int64 = 0
        var inFlight: Int64 = 0
        var inFlightMax: Int64 = 0
        var errors: Int64 = 0
        var byWorker: [String: Int64] = [:]
        var byRun: [String: Int64] = [:]
        var bySecond: [Int64: Int64] = [:]
        var byTick: [String: Int64] = [:]
        var byVersion: [String: Int64] = [:]
        var lastMs: Int64?
        var attribution: [String: [String: Int64]] = [:]
        var attributionOverflow: Int64 = 0
    }
    static let attributionCap = 200_000
    let counters = Mutex(Counters())
    let options: SinkOptions
    let startedAt = ContinuousClock.now
    let channel: any Channel
    /// The bound port.
    public let port: Int

    private init(options: SinkOptions, channel: any Channel) {
        self.options = options
        self.channel = channel
        self.port = channel.localAddress?.port ?? options.port
    }

    /// Binds and starts serving.
    public static func start(_ options: SinkOptions) async throws -> Sink {
        let box = Mutex<Sink?>(nil)
        let find: @Sendable () -> Sink? = { box.withLock { $0 } }
        var tls: NIOSSLContext?
        if let files = options.tls {
            let chain = try NIOSSLCertificate.fromPEMFile(files.certificate).map { NIOSSLCertificateSource.certificate($0) }
            let key = try NIOSSLPrivateKey(file: files.key, format: .pem)
            var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
            configuration.applicationProtocols = ["h2", "http/1.1"]
            tls = try NIOSSLContext(configuration: configuration)
        }
        let context = tls
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                guard let context else {
                    return channel.pipeline.configureHTTPServerPipeline(withPipeliningAssistance: true).flatMap {
                        channel.pipeline.addHandler(SinkHandler(sink: find))
                    }
                }
                // HTTPS: HTTP/2 when the client offers h2 by ALPN, otherwise HTTP/1.1.
                return channel.pipeline.addHandler(NIOSSLServerHandler(context: context)).flatMap {
                    channel.configureHTTP2SecureUpgrade(
                        h2ChannelConfigurator: { connection in
                            connection.configureHTTP2Pipeline(mode: .server) { stream in
                                stream.pipeline.addHandlers([HTTP2FramePayloadToHTTP1ServerCodec(), SinkHandler(sink: find)])
                            }.map { _ in }
                        },
                        http1ChannelConfigurator: { connection in
                            connection.pipeline.configureHTTPServerPipeline(withPipeliningAssistance: true).flatMap {
                                connection.pipeline.addHandler(SinkHandler(sink: find))
                            }
                        })
                }
            }
        let channel = try await bootstrap.bind(host: options.host, port: options.port).get()
        let sink = Sink(options: options, channel: channel)
        box.withLock { $0 = sink }
        return sink
    }

    /// Stops listening.
    public func close() async {
        try? await channel.close()
    }

    /// Waits until the listening channel closes.
    public func wait() async {
        try? await channel.closeFuture.get()
    }

    /// The counts so far.
    public func stats() -> SinkStats {
        counters.withLock { c in
            SinkStats(
                requests: c.requests, in_flight_max: c.inFlightMax, in_flight: c.inFlight, errors: c.errors,
                by_worker: c.byWorker, by_run: c.byRun,
                by_second: c.bySecond.keys.sorted().map { SinkStats.Second(t: $0, n: c.bySecond[$0]!) },
                by_tick: c.byTick, last_ms: c.lastMs, by_version: c.byVersion)
        }
    }

    /// Who sent what, per tick and shard.
    public func attribution() -> SinkAttribution {
        counters.withLock { SinkAttribution(by_tick_shard: $0.attribution, overflow: $0.attributionOverflow) }
    }

    /// Forgets every count.
    public func reset() {
        counters.withLock { c in
            let inFlight = c.inFlight
            c = Counters()
            c.inFlight = inFlight
        }
    }

    func arrived(_ headers: HTTPHeaders, version: HTTPVersion) {
        let worker = headers.first(name: "x-j4-worker") ?? "-"
        let run = headers.first(name: "x-j4-run") ?? "-"
        let tick = headers.first(name: "x-j4-tick") ?? "-"
        let shard = headers.first(name: "x-j4-shard")
        let ms = Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
        counters.withLock { c in
            c.requests += 1
            c.inFlight += 1
            c.inFlightMax = max(c.inFlightMax, c.inFlight)
            c.byWorker[worker, default: 0] += 1
            c.byRun[run, default: 0] += 1
            c.bySecond[ms / 1000, default: 0] += 1
            c.byTick[tick, default: 0] += 1
            c.byVersion[version.major >= 2 ? "2" : "\(version.major).\(version.minor)", default: 0] += 1
            c.lastMs = ms
            if let shard {
                let key = tick + "/" + shard
                if c.attribution[key] != nil || c.attribution.count < Sink.attributionCap {
                    c.attribution[key, default: [:]][worker, default: 0] += 1
                } else {
                    c.attributionOverflow += 1
                }
            }
        }
    }

    func answered(error: Bool) {
        counters.withLock { c in
            c.inFlight -= 1
            if error { c.errors += 1 }
        }
    }

    /// How long to wait before answering a request that arrives now.
    func delay() -> TimeAmount {
        var d = options.latency
        if options.jitter > .zero {
            let j = Double(options.jitter.components.attoseconds) / 1e9 + Double(options.jitter.components.seconds) * 1e9
            d += .nanoseconds(Int64(j * Double.random(in: -1...1)))
        }
        if let stall = options.stall, stall.every > .zero {
            let elapsed = startedAt.duration(to: .now)
            let phase = elapsed - stall.every * Int(elapsed / stall.every)
            let stallStart = stall.every - stall.duration
            if phase >= stallStart { d += stall.every - phase }
        }
        let (s, atto) = d.components
        return .nanoseconds(max(0, s * 1_000_000_000 + atto / 1_000_000_000))
    }
}

final class SinkHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let sink: @Sendable () -> Sink?
    var head: HTTPRequestHead?

    init(sink: @escaping @Sendable () -> Sink?) { self.sink = sink }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            if !h.uri.hasPrefix("/__sink/") {
                sink()?.arrived(h.headers, version: h.version)
            }
        case .body:
            break
        case .end:
            guard let h = head, let sink = sink() else { return }
            head = nil
            let keepAlive = h.isKeepAlive
            if h.uri.hasPrefix("/__sink/") {
                control(context: context, head: h, sink: sink, keepAlive: keepAlive)
                return
            }
            let fail = sink.options.errorRate > 0 && Double.random(in: 0..<1) < sink.options.errorRate
            let delay = sink.delay()
            let respond = { [self] in
                sink.answered(error: fail)
                write(context: context, status: fail ? .internalServerError : .ok, body: fail ? "injected error\n" : "ok\n", contentType: "text/plain", keepAlive: keepAlive)
            }
            if delay == .zero {
                respond()
            } else {
                let loopBound = NIOLoopBound(respond, eventLoop: context.eventLoop)
                context.eventLoop.scheduleTask(in: delay) { loopBound.value() }
            }
        }
    }

    func control(context: ChannelHandlerContext, head: HTTPRequestHead, sink: Sink, keepAlive: Bool) {
        switch (head.method, head.uri.split(separator: "?").first.map(String.init) ?? head.uri) {
        case (.GET, "/__sink/stats"):
            let e = JSONEncoder()
            e.outputFormatting = [.sortedKeys]
            let body = (try? e.encode(sink.stats())).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
            write(context: context, status: .ok, body: body + "\n", contentType: "application/json", keepAlive: keepAlive)
        case (.GET, "/__sink/attribution"):
            let body = (try? JSONEncoder().encode(sink.attribution())).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
            write(context: context, status: .ok, body: body + "\n", contentType: "application/json", keepAlive: keepAlive)
        case (.POST, "/__sink/reset"):
            sink.reset()
            write(context: context, status: .ok, body: "{\"reset\":true}\n", contentType: "application/json", keepAlive: keepAlive)
        default:
            write(context: context, status: .notFound, body: "{\"error\":\"GET /__sink/stats, GET /__sink/attribution or POST /__sink/reset\"}\n", contentType: "application/json", keepAlive: keepAlive)
        }
    }

    func write(context: ChannelHandlerContext, status: HTTPResponseStatus, body: String, contentType: String, keepAlive: Bool) {
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: contentType)
        headers.add(name: "content-length", value: String(body.utf8.count))
        if !keepAlive { headers.add(name: "connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            if !keepAlive { context.close(promise: nil) }
        }
    }
}
