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
    /// A file to append one line per load request to, when it is answered (see ``SinkAccessLog``).
    public var accessLog: String?

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
    /// Where answered load requests are written, with `--access-log`.
    let accessLog: SinkAccessLog?
    /// The bound port.
    public let port: Int

    private init(options: SinkOptions, channel: any Channel, accessLog: SinkAccessLog?) {
        self.options = options
        self.channel = channel
        self.accessLog = accessLog
        self.port = channel.localAddress?.port ?? options.port
    }

    /// Opens the access log (if any), binds and starts serving.
    public static func start(_ options: SinkOptions) async throws -> Sink {
        let accessLog = try options.accessLog.map { try SinkAccessLog(path: $0) }
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
        let channel: any Channel
        do { channel = try await bootstrap.bind(host: options.host, port: options.port).get() } catch {
            accessLog?.close()
            throw error
        }
        let sink = Sink(options: options, channel: channel, accessLog: accessLog)
        box.withLock { $0 = sink }
        return sink
    }

    /// Stops listening, then writes out and closes the access log.
    public func close() async {
        try? await channel.close()
        accessLog?.close()
    }

    /// Waits until the listening channel closes, then writes out and closes the access log.
    public func wait() async {
        try? await channel.closeFuture.get()
        accessLog?.close()
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

    /// Writes an answered load request to the access log, if there is one.
    func logAnswered(_ headers: HTTPHeaders, arrivedUs: Int64) {
        accessLog?.record(headers, arrivedUs: arrivedUs, answeredUs: SinkAccessLog.nowUs())
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
    /// When the head of the current load request arrived (unix µs), for the access log.
    var arrivedUs: Int64 = 0

    init(sink: @escaping @Sendable () -> Sink?) { self.sink = sink }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            if !h.uri.hasPrefix("/__sink/") {
                arrivedUs = SinkAccessLog.nowUs()
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
            let arrivedUs = self.arrivedUs
            let respond = { [self] in
                sink.answered(error: fail)
                sink.logAnswered(h.headers, arrivedUs: arrivedUs)
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

/// `--access-log`: one tab-separated line per answered load request, written when its response
/// is sent: arrival and answer unix ms (with microseconds), then the `x-j4-run`,
/// `x-j4-worker`, `x-j4-vu`, `x-j4-iteration`, `x-j4-tick` and `x-j4-shard` headers (`-` when
/// absent). Lines are buffered and written out at least once a second, when the buffer fills,
/// and on close.
public final class SinkAccessLog: Sendable {
    /// The access log file could not be opened.
    public struct OpenError: Error, CustomStringConvertible {
        /// The file.
        public var path: String
        /// `strerror` of the failure.
        public var reason: String
        public var description: String { "cannot open \(path): \(reason)" }
    }

    struct State {
        var fd: Int32
        var buffer: [UInt8] = []
    }
    static let headerNames = ["x-j4-run", "x-j4-worker", "x-j4-vu", "x-j4-iteration", "x-j4-tick", "x-j4-shard"]
    /// Buffered bytes that make a write happen at once rather than at the next timer.
    static let flushBytes = 64 * 1024
    let state: Mutex<State>
    let timer: Mutex<RepeatedTask?>

    /// Opens `path` for appending (creating it) and starts the once-a-second flush.
    public init(path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw OpenError(path: path, reason: String(cString: strerror(errno))) }
        state = Mutex(State(fd: fd))
        timer = Mutex(nil)
        let task = MultiThreadedEventLoopGroup.singleton.next().scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { [weak self] _ in
            self?.flush()
        }
        timer.withLock { $0 = task }
    }

    /// The current unix time in microseconds.
    static func nowUs() -> Int64 {
        Int64((Date().timeIntervalSince1970 * 1_000_000).rounded(.down))
    }

    /// Unix µs as ms with three decimals, e.g. `1733091234567.089`.
    static func milliseconds(_ us: Int64) -> String {
        let fraction = String(us % 1000)
        return "\(us / 1000)." + String(repeating: "0", count: 3 - fraction.count) + fraction
    }

    /// A header value fit for one field: `-` when absent or empty, tabs and line breaks as spaces.
    static func field(_ value: String?) -> String {
        guard let value, !value.isEmpty else { return "-" }
        return String(value.map { $0 == "\t" || $0 == "\n" || $0 == "\r" ? " " : $0 })
    }

    /// Buffers the line of one answered request.
    func record(_ headers: HTTPHeaders, arrivedUs: Int64, answeredUs: Int64) {
        let fields = [SinkAccessLog.milliseconds(arrivedUs), SinkAccessLog.milliseconds(answeredUs)]
            + SinkAccessLog.headerNames.map { SinkAccessLog.field(headers.first(name: $0)) }
        let line = fields.joined(separator: "\t") + "\n"
        state.withLock { s in
            guard s.fd >= 0 else { return }
            s.buffer.append(contentsOf: line.utf8)
            if s.buffer.count >= SinkAccessLog.flushBytes { SinkAccessLog.writeOut(&s) }
        }
    }

    /// Writes what is buffered to the file.
    public func flush() {
        state.withLock { SinkAccessLog.writeOut(&$0) }
    }

    /// Writes out what is buffered and closes the file; later lines are not written.
    public func close() {
        timer.withLock { t in
            t?.cancel()
            t = nil
        }
        state.withLock { s in
            SinkAccessLog.writeOut(&s)
            if s.fd >= 0 { closeFile(s.fd) }
            s.fd = -1
        }
    }

    static func writeOut(_ s: inout State) {
        guard s.fd >= 0, !s.buffer.isEmpty else { return }
        var offset = 0
        s.buffer.withUnsafeBytes { bytes in
            while offset < bytes.count {
                let n = write(s.fd, bytes.baseAddress! + offset, bytes.count - offset)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { return }  // a full disk: the rest is lost rather than the sink stalled
                offset += n
            }
        }
        s.buffer.removeAll(keepingCapacity: true)
    }
}

/// `close(2)`, out of reach of the methods named `close`.
private func closeFile(_ fd: Int32) {
    _ = close(fd)
}
