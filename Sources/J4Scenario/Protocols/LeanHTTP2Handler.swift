import NIOCore
import NIOHPACK
import NIOHTTP1
import NIOHTTP2
import NIOSSL
import NIOTLS
import Synchronization

/// A request of the lean HTTP/2 client: its header block (pseudo-headers first, names in
/// lower case) and its body.
struct LeanH2Request: Sendable {
    var headers: HPACKHeaders
    var body: ByteBuffer?
    /// A HEAD request: the response has no body, whatever its `content-length`.
    var head: Bool
}

/// The server, asked for HTTP/2 over TLS, chose HTTP/1.1 (or nothing) by ALPN: the caller
/// sends the request over HTTP/1.1 instead.
struct HTTP2NotOffered: Error {}

/// The streams of one HTTP/2 connection, over NIOHTTP2's frame API (no child channel per
/// stream): a request is a HEADERS frame and perhaps a DATA frame on a new stream; its
/// response is read off the frames of that stream. Lives on the connection's event loop.
///
/// Flow control of what is received is this handler's: each stream's window is 1 MiB and
/// the connection's 16 MiB, topped up once half is used, so a response of any size flows.
/// The connection's is topped up from what NIOHTTP2 says is left of it (its window events),
/// which counts the DATA of streams J4 reset too, that never reach this handler.
final class LeanHTTP2Handler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    struct Stream {
        let number: UInt64
        let continuation: UnsafeContinuation<LeanResponse, any Error>
        let deadline: NIODeadline
        let maxBody: Int?
        let head: Bool
        /// `framesRead` when the request was sent.
        let framesBefore: Int
        var status = 0
        var headers: HTTPHeaders?
        var body: ByteBuffer?
        /// DATA bytes received since this stream's window was last topped up.
        var unacknowledged = 0
    }

    /// A request that reached the handler before the connection could carry it (TLS handshake under way).
    struct Waiting {
        let number: UInt64
        let request: LeanH2Request
        let deadline: NIODeadline
        let maxBody: Int?
        let continuation: UnsafeContinuation<LeanResponse, any Error>
    }

    static let streamWindow = 1 << 20
    static let connectionWindow = 16 << 20
    /// NIOHTTP2's handler as J4 uses it: the settings J4 sends (no server push, 1 MiB stream
    /// windows, response heads up to 64 KiB), header blocks not validated (J4 makes its own
    /// valid), and NIOHTTP2's defences against abusive clients loosened for a client that
    /// itself resets streams by the thousand (timeouts, cancels, HEAD) and whose server may
    /// reset as many: they would close the connection under load.
    static func http2Handler() -> NIOHTTP2Handler {
        var connection = NIOHTTP2Handler.ConnectionConfiguration()
        connection.initialSettings = [
            HTTP2Setting(parameter: .enablePush, value: 0),
            HTTP2Setting(parameter: .initialWindowSize, value: streamWindow),
            HTTP2Setting(parameter: .maxHeaderListSize, value: LeanHTTP1Handler.maxHead),
        ]
        connection.headerBlockValidation = .disabled
        connection.maximumRecentlyResetStreams = 4096
        connection.maximumConnectionGlitches = .max
        var stream = NIOHTTP2Handler.StreamConfiguration()
        stream.streamResetFrameRateLimit.maximumCount = .max
        stream.streamErrorRateLimit.maximumCount = .max
        return NIOHTTP2Handler(mode: .client, connectionConfiguration: connection, streamConfiguration: stream)
    }

    private var context: ChannelHandlerContext?
    private var streams: [HTTP2StreamID: Stream] = [:]
    private var waiting: [Waiting] = []
    private var nextStreamID: Int32 = 1
    /// True once frames can be written: at once over plain TCP (prior knowledge), after ALPN chose `h2` over TLS.
    private(set) var ready: Bool
    /// Over TLS: true until the handshake completes (then the connection is ready, or failed).
    private var handshaking: Bool { !ready && failure == nil }
    /// Why the connection failed, for requests that arrive after.
    private var failure: (any Error)?
    /// Frames read on the connection: a request that times out with none read since it was
    /// sent finds the connection silent, and it is replaced.
    private var framesRead = 0
    /// The server sent GOAWAY: the connection closes once its last stream ends.
    private var goneAway = false

    /// False once the connection cannot take a new stream (closed, closing, gone away, or out of stream ids).
    let open = Atomic<Bool>(true)

    /// A handler for a connection over TLS (`tls`: the HTTP/2 handler is put in front of it
    /// once ALPN chose `h2`) or over plain TCP (it is there already).
    init(tls: Bool) {
        ready = !tls
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func channelActive(context: ChannelHandlerContext) {
        if ready { openConnectionWindow(context) }
        context.fireChannelActive()
    }

    /// The connection's window starts at 64 KiB: it is opened to 16 MiB at once.
    private func openConnectionWindow(_ context: ChannelHandlerContext) {
        let frame = HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: Self.connectionWindow - 65_535))
        context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted(let negotiated)? = event as? TLSUserEvent {
            if negotiated == "h2" {
                do {
                    try context.pipeline.syncOperations.addHandler(Self.http2Handler(), position: .before(self))
                } catch {
                    failAll(LeanHTTPError(errorClass: "connection_closed", message: "cannot start HTTP/2: \(error)"), close: true)
                    return
                }
                ready = true
                openConnectionWindow(context)
                let queued = waiting
                waiting = []
                for w in queued { send(w, context) }
            } else {
                failAll(HTTP2NotOffered(), close: true)
            }
        } else if let window = event as? NIOHTTP2WindowUpdatedEvent, window.streamID == .rootStream,
                  let left = window.inboundWindowSize, left <= Self.connectionWindow / 2 {
            context.writeAndFlush(wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: Self.connectionWindow - left))), promise: nil)
        } else if let closed = event as? StreamClosedEvent, let reason = closed.reason, streams[closed.streamID] != nil {
            // Closed with an error by NIOHTTP2 (a frame it refused on that stream) before its
            // response ended. (NIOHTTP2 says a stream closed after passing on the frame that
            // closed it, and a close without a reason is that frame's, which ends the request.)
            finish(closed.streamID, .failure(LeanHTTPError(errorClass: "bad_response", message: "the stream closed before its response ended (\(reason))")))
        }
        context.fireUserInboundEventTriggered(event)
    }

    func start(_ number: UInt64, _ request: LeanH2Request, deadline: NIODeadline, maxBody: Int?, _ continuation: UnsafeContinuation<LeanResponse, any Error>) {
        guard let context, open.load(ordering: .relaxed) else {
            continuation.resume(throwing: failure ?? LeanHTTPError(errorClass: "connection_closed", message: "the connection closed before the request was sent"))
            return
        }
        if !cancelled.isEmpty, cancelled.remove(number) != nil {
            continuation.resume(throwing: CancellationError())
            return
        }
        let w = Waiting(number: number, request: request, deadline: deadline, maxBody: maxBody, continuation: continuation)
        if ready { send(w, context) } else { waiting.append(w) }
        armTimer(context, for: deadline)
    }

    private func send(_ w: Waiting, _ context: ChannelHandlerContext) {
        let id = HTTP2StreamID(nextStreamID)
        nextStreamID += 2
        // Stream ids are 31 bits: a connection that used them all is replaced.
        if nextStreamID > Int32.max - 2 {
            goneAway = true  // closed once its last stream ends
            open.store(false, ordering: .releasing)
        }
        streams[id] = Stream(number: w.number, continuation: w.continuation, deadline: w.deadline, maxBody: w.maxBody, head: w.request.head, framesBefore: framesRead)
        // No promise per write: a frame NIOHTTP2 refuses to send is said by `errorCaught`
        // (as a `StreamError` naming the stream), a connection that fails by `channelInactive`.
        let headers = HTTP2Frame(streamID: id, payload: .headers(.init(headers: w.request.headers, endStream: w.request.body == nil)))
        context.write(wrapOutboundOut(headers), promise: nil)
        if let body = w.request.body {
            context.write(wrapOutboundOut(HTTP2Frame(streamID: id, payload: .data(.init(data: .byteBuffer(body), endStream: true)))), promise: nil)
        }
        context.flush()
    }

    /// Numbers of requests cancelled before they reached the loop (a cancel that came after
    /// its request ended stays here: the set is emptied past 64).
    private var cancelled: Set<UInt64> = []

    /// Request `number` was cancelled: its stream is reset (the connection carries on), or
    /// it is refused when it starts.
    func cancel(_ number: UInt64) {
        if let id = streams.first(where: { $0.value.number == number })?.key {
            finish(id, .failure(CancellationError()))
            reset(id)
        } else if let i = waiting.firstIndex(where: { $0.number == number }) {
            waiting.remove(at: i).continuation.resume(throwing: CancellationError())
        } else {
            if cancelled.count >= 64 { cancelled.removeAll() }
            cancelled.insert(number)
        }
    }

    /// Resets a stream J4 no longer reads (finished first: the reset closes it, and NIOHTTP2
    /// says so at once with a `StreamClosedEvent`).
    private func reset(_ id: HTTP2StreamID) {
        context?.writeAndFlush(wrapOutboundOut(HTTP2Frame(streamID: id, payload: .rstStream(.cancel))), promise: nil)
    }

    private func finish(_ id: HTTP2StreamID, _ result: Result<LeanResponse, any Error>) {
        guard let s = streams.removeValue(forKey: id) else { return }
        if goneAway, streams.isEmpty { closeChannel() }
        s.continuation.resume(with: result)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        framesRead &+= 1
        switch frame.payload {
        case .headers(let h):
            guard var s = streams[frame.streamID] else { return }
            if s.status == 0 {
                guard let text = h.headers.first(name: ":status"), let status = Int(text), (100...999).contains(status) else {
                    finish(frame.streamID, .failure(LeanHTTPError(errorClass: "bad_response", message: "a response without a valid :status")))
                    if !h.endStream { reset(frame.streamID) }
                    return
                }
                // 100 Continue, 103 Early Hints: the final head follows.
                if status < 200, !h.endStream { return }
                s.status = status
                if s.maxBody != nil {
                    var headers = HTTPHeaders()
                    for (name, value, _) in h.headers where !name.hasPrefix(":") { headers.add(name: name, value: value) }
                    s.headers = headers
                }
            }  // else trailers, which J4 does not keep.
            if h.endStream || s.head {
                finish(frame.streamID, .success(LeanResponse(status: s.status, headers: s.headers, body: s.body)))
                if !h.endStream { reset(frame.streamID) }
            } else {
                streams[frame.streamID] = s
            }
        case .data(let d):
            // What the window counts: the data, and the padding with its length byte.
            let counted = d.data.readableBytes + (d.paddingBytes.map { $0 + 1 } ?? 0)
            guard var s = streams[frame.streamID] else { return }
            if let maxBody = s.maxBody, case .byteBuffer(var bytes) = d.data {
                guard (s.body?.readableBytes ?? 0) + bytes.readableBytes <= maxBody else {
                    finish(frame.streamID, .failure(NIOTooManyBytesError(maxBytes: maxBody)))
                    if !d.endStream { reset(frame.streamID) }
                    return
                }
                if s.body == nil { s.body = bytes } else { s.body!.writeBuffer(&bytes) }
            }
            if d.endStream {
                finish(frame.streamID, .success(LeanResponse(status: s.status, headers: s.headers, body: s.body)))
                return
            }
            s.unacknowledged += counted
            let topUp = s.unacknowledged >= Self.streamWindow / 2 ? s.unacknowledged : 0
            if topUp > 0 { s.unacknowledged = 0 }
            // Stored before writing: a write may call back into this handler.
            streams[frame.streamID] = s
            if topUp > 0 {
                context.writeAndFlush(wrapOutboundOut(HTTP2Frame(streamID: frame.streamID, payload: .windowUpdate(windowSizeIncrement: topUp))), promise: nil)
            }
        case .rstStream(let code):
            finish(frame.streamID, .failure(LeanHTTPError(errorClass: "stream_reset", message: "the server reset the stream (\(code))")))
        case .goAway(let last, let code, _):
            // Streams above `last` were not and will not be answered; those below may still be.
            goneAway = true
            open.store(false, ordering: .releasing)
            for id in streams.keys where id > last {
                finish(id, .failure(LeanHTTPError(errorClass: "connection_closed", message: "the server is closing the connection (GOAWAY \(code))")))
            }
            if streams.isEmpty { closeChannel() }
        default:
            break
        }
    }

    // MARK: timeouts

    private var timer = DeadlineTimer()

    /// One timer per connection, at the earliest deadline of the requests in flight.
    private func armTimer(_ context: ChannelHandlerContext, for deadline: NIODeadline) {
        timer.arm(for: deadline, on: context.eventLoop) { [weak self] in self?.timerFired() }
    }

    private func timerFired() {
        timer.fired()
        guard let context else { return }
        let now = NIODeadline.now()
        let timedOut = LeanHTTPError(errorClass: "timeout", message: "no complete response within the timeout")
        // A connection silent since a request that timed out was sent, or whose TLS handshake
        // has not ended in a request's whole timeout, is given up: the next request opens a new one.
        let silent = streams.values.contains { $0.deadline <= now && $0.framesBefore == framesRead }
        if silent || (!ready && waiting.contains { $0.deadline <= now }) {
            failAll(timedOut, close: true)
            return
        }
        for (id, s) in streams where s.deadline <= now {
            finish(id, .failure(timedOut))
            reset(id)
        }
        let late = waiting.filter { $0.deadline <= now }
        waiting.removeAll { $0.deadline <= now }
        for w in late { w.continuation.resume(throwing: timedOut) }
        let next = (streams.values.map(\.deadline) + waiting.map(\.deadline)).min()
        if let next { armTimer(context, for: next) }
    }

    // MARK: failures

    private func closeChannel() {
        open.store(false, ordering: .releasing)
        context?.close(promise: nil)
    }

    /// Fails every request, in flight or waiting, with `error`; the connection takes no more.
    private func failAll(_ error: any Error, close: Bool) {
        failure = failure ?? error
        open.store(false, ordering: .releasing)
        let inFlight = streams
        let queued = waiting
        streams = [:]
        waiting = []
        if close { context?.close(promise: nil) }
        for (_, s) in inFlight { s.continuation.resume(throwing: error) }
        for w in queued { w.continuation.resume(throwing: error) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer.cancel()
        let why: any Error = handshaking
            ? LeanHTTPError(errorClass: "tls", message: "the server closed the connection during the TLS handshake")
            : LeanHTTPError(errorClass: "connection_closed", message: "the server closed the connection before the response ended")
        failAll(failure ?? why, close: false)
        self.context = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // An error of one stream fails that stream: the others go on.
        if let e = error as? NIOHTTP2Errors.StreamError {
            finish(e.streamID, .failure(LeanHTTPError(errorClass: "bad_response", message: "stream \(e.streamID): \(e.baseError)")))
            return
        }
        let errorClass = handshaking ? "tls" : Self.errorClass(error)
        failAll(LeanHTTPError(errorClass: errorClass, message: "\(error)"), close: true)
    }

    /// TLS failures are `tls`; a frame the HTTP/2 parser refuses is `bad_response`; else the connection closed.
    static func errorClass(_ error: any Error) -> String {
        if error is any NIOHTTP2Error { return "bad_response" }
        return LeanHTTP1Handler.errorClass(error)
    }
}
