import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOTLS
import Synchronization

/// A failure of the lean HTTP/1.1 client, counted under its class.
public struct LeanHTTPError: ClassifiedError, CustomStringConvertible {
    /// `connect`, `timeout`, `tls`, `connection_closed` or `bad_response`.
    public let errorClass: String
    /// What happened.
    public let message: String
    public var description: String { "\(errorClass): \(message)" }
}

/// A response read by the lean client: its status, and its headers and body when they were
/// asked for (the built-in scenario skips them).
public struct LeanResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders?
    public var body: ByteBuffer?
}

/// One keep-alive HTTP/1.1 connection, over plain TCP or over TLS (NIOSSL, trusting what
/// ``LoadTrust`` trusts), for the built-in `http` scenario and the scenario API's requests
/// (`it.request`, `vu.request`, `graphQL`):
/// the built-in scenario serializes its request once per VU, so an iteration only appends
/// its own headers, and reads the response just enough to find its status and its end (the
/// body is skipped); the scenario API asks for the headers and the body too.
/// One request at a time; a broken or timed-out connection is closed and the next request
/// opens a new one (as wrk and hey do).
///
/// Why not AsyncHTTPClient here: its connection pool, request and response objects and
/// header validation cost about twice the CPU of the whole request at the rates a load
/// generator runs (BENCHMARKS.md). `vu.http` still gets AsyncHTTPClient; HTTP/2, when
/// asked for, goes on ``LeanHTTP2Connection``.
public final class LeanHTTP1Connection: Sendable {
    let host: String
    let port: Int
    /// Over TLS: the handshake is made on connecting, and once per connection.
    let tls: Bool
    let loop: any EventLoop
    /// The open channel and its handler (the handler itself is touched on `loop` only).
    let slot = Mutex<(any Channel, LeanHTTP1Handler)?>(nil)

    /// A connection (opened lazily) to `host:port`, over TLS when `tls`.
    public init(host: String, port: Int, tls: Bool = false) {
        self.host = host
        self.port = port
        self.tls = tls
        loop = MultiThreadedEventLoopGroup.singleton.any()
    }

    /// Sends `request` (a whole serialized request) and returns the response status once the
    /// whole response is read. `head` is true for a HEAD request (no body follows).
    public func send(_ request: ByteBuffer, head: Bool = false, timeout: TimeAmount) async throws -> Int {
        try await exchange(request, head: head, timeout: timeout, maxBody: nil).status
    }

    /// Sends `request` and reads the whole response; with `maxBody`, its headers and its body
    /// too (a body longer than `maxBody` bytes throws `NIOTooManyBytesError`, as
    /// AsyncHTTPClient's `collect(upTo:)` does, and closes the connection).
    public func exchange(_ request: ByteBuffer, head: Bool = false, timeout: TimeAmount, maxBody: Int?) async throws -> LeanResponse {
        try Task.checkCancellation()
        // The timeout covers connecting too, as AsyncHTTPClient's deadline does.
        let deadline = NIODeadline.now() + timeout
        let handler = try await connected(within: timeout)
        // Cancelling fails this request only: not one sent on the connection after it.
        let id = requests.add(1, ordering: .relaxed).newValue
        return try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<LeanResponse, any Error>) in
                if loop.inEventLoop {
                    handler.start(id, request, head: head, deadline: deadline, maxBody: maxBody, continuation)
                } else {
                    loop.execute { handler.start(id, request, head: head, deadline: deadline, maxBody: maxBody, continuation) }
                }
            }
        } onCancel: {
            loop.execute { handler.cancel(id) }
        }
    }

    /// Numbers the requests sent on this connection.
    let requests = Atomic<UInt64>(0)

    /// A buffer to serialize a request into.
    public func buffer(capacity: Int) -> ByteBuffer { ByteBufferAllocator().buffer(capacity: capacity) }

    /// Closes the connection.
    public func close() {
        slot.withLock { s in
            s?.0.close(promise: nil)
            s = nil
        }
    }

    private func connected(within timeout: TimeAmount) async throws -> LeanHTTP1Handler {
        if let handler = slot.withLock({ s -> LeanHTTP1Handler? in s.flatMap { $0.0.isActive && $0.1.open.load(ordering: .acquiring) ? $0.1 : nil } }) { return handler }
        let tls = tls
        let opened: (any Channel, LeanHTTP1Handler)
        do {
            opened = try await LeanChannel.open(host: host, port: port, on: loop, timeout: timeout, tls: tls, http2: false) { pipeline in
                let handler = LeanHTTP1Handler()
                handler.handshaking = tls
                try pipeline.addHandler(handler)
                return handler
            }.get()
        } catch {
            throw LeanChannel.failure(error, host: host, port: port)
        }
        let (channel, handler) = opened
        slot.withLock { $0 = (channel, handler) }
        return handler
    }
}

/// Reads responses off one connection: a small state machine over the received bytes.
final class LeanHTTP1Handler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Phase: Equatable {
        case idle
        case head
        case fixed(Int)
        case chunkSize
        case chunkData(Int)
        case chunkEnd
        case trailers
        case untilClose
    }

    private var context: ChannelHandlerContext?
    private var pending: UnsafeContinuation<LeanResponse, any Error>?
    /// The number of the request `pending` belongs to.
    private var pendingID: UInt64 = 0
    /// With a limit: the response's headers and body are kept (the scenario API).
    private var maxBody: Int?
    private var headers: HTTPHeaders?
    private var body: ByteBuffer?
    private var phase = Phase.idle
    private var received: ByteBuffer?
    private var status = 0
    private var keepAlive = true
    private var isHead = false
    private var deadline = NIODeadline.distantFuture
    /// At most one timer per connection, armed while a request is outstanding: it fires at
    /// the deadline it was armed for and re-arms for a later one, so a busy keep-alive
    /// connection costs about one timer event per timeout, and an idle one none.
    private var timer = DeadlineTimer()
    /// The most a response head may take.
    static let maxHead = 64 * 1024

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    /// False once this side began to close the connection or it closed: the next request
    /// opens a new one. (Over TLS the channel stays active while close_notify is exchanged.)
    let open = Atomic<Bool>(true)

    private func closeChannel() {
        open.store(false, ordering: .releasing)
        context?.close(promise: nil)
    }

    private func armTimer(_ context: ChannelHandlerContext) {
        timer.arm(for: deadline, on: context.eventLoop) { [weak self] in self?.timerFired() }
    }

    private func timerFired() {
        timer.fired()
        guard pending != nil, let context else { return }
        if NIODeadline.now() >= deadline {
            fail(LeanHTTPError(errorClass: "timeout", message: "no complete response within the timeout"), close: true)
        } else {
            armTimer(context)
        }
    }

    func start(_ id: UInt64, _ request: ByteBuffer, head: Bool, deadline: NIODeadline, maxBody: Int?, _ continuation: UnsafeContinuation<LeanResponse, any Error>) {
        guard let context, context.channel.isActive, open.load(ordering: .relaxed), pending == nil else {
            // A TLS handshake that failed before the request reached the loop says so.
            continuation.resume(throwing: failure ?? LeanHTTPError(errorClass: "connection_closed", message: "the connection closed before the request was sent"))
            return
        }
        // Cancelled before it could start: nothing is sent.
        if id <= cancelledUpTo {
            continuation.resume(throwing: CancellationError())
            return
        }
        pending = continuation
        pendingID = id
        phase = .head
        isHead = head
        self.maxBody = maxBody
        headers = nil
        body = nil
        keepAlive = true
        self.deadline = deadline
        armTimer(context)
        context.writeAndFlush(NIOAny(request), promise: nil)
    }

    /// The highest request number cancelled before it started.
    private var cancelledUpTo: UInt64 = 0

    /// Request `id` was cancelled: failed (and the connection closed, the response being
    /// unread) if it is the one in flight; refused when it starts, if it has not yet.
    func cancel(_ id: UInt64) {
        if pending != nil, pendingID == id {
            fail(CancellationError(), close: true)
        } else if id > pendingID {
            cancelledUpTo = max(cancelledUpTo, id)
        }
    }

    func fail(_ error: any Error, close: Bool) {
        let p = pending
        pending = nil
        phase = .idle
        // Closed before the caller resumes, so its next request sees the connection gone.
        if close { closeChannel() }
        p?.resume(throwing: error)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if received == nil || received!.readableBytes == 0 {
            received = bytes
        } else {
            received!.writeBuffer(&bytes)
        }
        parse()
    }

    /// Over TLS: true until the handshake completes (a close before that is a TLS failure).
    var handshaking = false
    /// Why the connection failed while no request was outstanding (a refused handshake).
    private var failure: LeanHTTPError?

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted? = event as? TLSUserEvent { handshaking = false }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        open.store(false, ordering: .releasing)
        timer.cancel()
        if phase == .untilClose {
            complete()
        } else if handshaking {
            failure = failure ?? LeanHTTPError(errorClass: "tls", message: "the server closed the connection during the TLS handshake")
            fail(failure!, close: false)
        } else if pending != nil {
            fail(LeanHTTPError(errorClass: "connection_closed", message: "the server closed the connection before the response ended"), close: false)
        }
        self.context = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let failed = LeanHTTPError(errorClass: handshaking ? "tls" : LeanHTTP1Handler.errorClass(error), message: "\(error)")
        if pending == nil { failure = failure ?? failed }
        fail(failed, close: true)
    }

    /// A TLS failure (a certificate not trusted, a bad record) is `tls`; a server that closed
    /// without TLS' close_notify only closed the connection.
    static func errorClass(_ error: any Error) -> String {
        if let e = error as? NIOSSLError, case .uncleanShutdown = e { return "connection_closed" }
        return error is NIOSSLError || error is NIOSSLExtraError || error is BoringSSLError ? "tls" : "connection_closed"
    }

    private func complete() {
        let p = pending
        let response = LeanResponse(status: status, headers: headers, body: body)
        pending = nil
        phase = .idle
        headers = nil
        body = nil
        if !keepAlive { closeChannel() }
        p?.resume(returning: response)
    }

    /// Moves the reader of `buffer` past `n` body bytes, keeping them when the caller asked
    /// for the body; false (and the request failed) when they would pass the limit.
    private func consumeBody(_ buffer: inout ByteBuffer, _ n: Int) -> Bool {
        guard let maxBody else {
            buffer.moveReaderIndex(forwardBy: n)
            return true
        }
        guard (body?.readableBytes ?? 0) + n <= maxBody else {
            fail(NIOTooManyBytesError(maxBytes: maxBody), close: true)
            return false
        }
        var slice = buffer.readSlice(length: n)!
        if body == nil { body = ByteBufferAllocator().buffer(capacity: n) }
        body!.writeBuffer(&slice)
        return true
    }

    private func bad(_ why: String) {
        fail(LeanHTTPError(errorClass: "bad_response", message: why), close: true)
    }

    /// Consumes what has been received as far as the current response goes.
    private func parse() {
        guard var buffer = received else { return }
        defer {
            if buffer.readableBytes == 0 { buffer.clear() } else if buffer.readerIndex > 16 * 1024 { buffer.discardReadBytes() }
            received = buffer
        }
        while true {
            switch phase {
            case .idle:
                // Bytes with no request outstanding: the connection is out of step.
                if buffer.readableBytes > 0 { buffer.moveReaderIndex(forwardBy: buffer.readableBytes); closeChannel() }
                return
            case .head:
                guard let end = buffer.firstIndex(of: LeanHTTP1Handler.crlfcrlf) else {
                    if buffer.readableBytes > LeanHTTP1Handler.maxHead { bad("a response head longer than 64 KiB") }
                    return
                }
                let headLength = end + 4 - buffer.readerIndex
                guard let parsed = buffer.withUnsafeReadableBytes({ LeanHTTP1Handler.parseHead(UnsafeRawBufferPointer(rebasing: $0[..<headLength])) }) else {
                    bad("not an HTTP/1.x response head")
                    return
                }
                if maxBody != nil, !((100..<200).contains(parsed.status) && parsed.status != 101) {
                    headers = buffer.withUnsafeReadableBytes { LeanHTTP1Handler.allHeaders(UnsafeRawBufferPointer(rebasing: $0[..<headLength])) }
                }
                buffer.moveReaderIndex(forwardBy: headLength)
                if (100..<200).contains(parsed.status) && parsed.status != 101 { continue }  // 100 Continue and the like
                status = parsed.status
                keepAlive = parsed.keepAlive
                if isHead || parsed.status == 204 || parsed.status == 304 {
                    complete()
                } else if parsed.chunked {
                    phase = .chunkSize
                } else if let length = parsed.contentLength {
                    if length == 0 { complete() } else { phase = .fixed(length) }
                } else {
                    keepAlive = false
                    phase = .untilClose
                }
            case .fixed(let remaining):
                let n = min(remaining, buffer.readableBytes)
                guard consumeBody(&buffer, n) else { return }
                if n == remaining { complete() } else { phase = .fixed(remaining - n); return }
            case .chunkSize:
                guard let lineEnd = buffer.firstIndex(of: LeanHTTP1Handler.crlf) else {
                    if buffer.readableBytes > 1024 { bad("a chunk size line longer than 1 KiB") }
                    return
                }
                let length = lineEnd - buffer.readerIndex
                let size = buffer.withUnsafeReadableBytes { LeanHTTP1Handler.hexPrefix(UnsafeRawBufferPointer(rebasing: $0[..<length])) }
                buffer.moveReaderIndex(forwardBy: length + 2)
                guard let size else { bad("a chunk size that is not hexadecimal"); return }
                phase = size == 0 ? .trailers : .chunkData(size)
            case .chunkData(let remaining):
                let n = min(remaining, buffer.readableBytes)
                guard consumeBody(&buffer, n) else { return }
                if n == remaining { phase = .chunkEnd } else { phase = .chunkData(remaining - n); return }
            case .chunkEnd:
                guard buffer.readableBytes >= 2 else { return }
                buffer.moveReaderIndex(forwardBy: 2)
                phase = .chunkSize
            case .trailers:
                guard let lineEnd = buffer.firstIndex(of: LeanHTTP1Handler.crlf) else { return }
                let empty = lineEnd == buffer.readerIndex
                buffer.moveReaderIndex(forwardBy: lineEnd - buffer.readerIndex + 2)
                if empty { complete() }
            case .untilClose:
                _ = consumeBody(&buffer, buffer.readableBytes)
                return
            }
        }
    }
}

/// At most one timer for a connection, at the earliest deadline it was armed for: a timer
/// armed for a later deadline (a previous request's longer timeout) is moved up; one armed
/// for an earlier one stays, and its handler re-arms it for what is still outstanding.
struct DeadlineTimer {
    private var scheduled: Scheduled<Void>?
    private var deadline = NIODeadline.distantFuture

    mutating func arm(for deadline: NIODeadline, on loop: any EventLoop, _ fire: @escaping @Sendable () -> Void) {
        if let armed = scheduled, self.deadline > deadline {
            armed.cancel()
            scheduled = nil
        }
        guard scheduled == nil else { return }
        self.deadline = deadline
        scheduled = loop.scheduleTask(deadline: deadline, fire)
    }

    /// The timer fired: the next ``arm(for:on:_:)`` schedules anew.
    mutating func fired() { scheduled = nil }

    mutating func cancel() {
        scheduled?.cancel()
        scheduled = nil
    }
}
