import NIOCore
import NIOPosix
import Synchronization

/// A failure of the lean HTTP/1.1 client, counted under its class.
public struct LeanHTTPError: ClassifiedError, CustomStringConvertible {
    /// `connect`, `timeout`, `connection_closed` or `bad_response`.
    public let errorClass: String
    /// What happened.
    public let message: String
    public var description: String { "\(errorClass): \(message)" }
}

/// One keep-alive HTTP/1.1 connection over plain TCP, for the built-in `http` scenario: the
/// request is serialized once per VU, so an iteration only appends its own headers, and the
/// response is parsed just enough to find its status and its end (the body is skipped).
/// One request at a time; a broken or timed-out connection is closed and the next request
/// opens a new one (as wrk and hey do).
///
/// Why not AsyncHTTPClient here: its connection pool, request and response objects and
/// header validation cost about twice the CPU of the whole request at the rates a load
/// generator runs (BENCHMARKS.md). Scenarios written in Swift still get AsyncHTTPClient
/// through `vu.http`, with TLS, HTTP/2 and redirects.
public final class LeanHTTP1Connection: Sendable {
    let host: String
    let port: Int
    let loop: any EventLoop
    /// The open channel and its handler (the handler itself is touched on `loop` only).
    let slot = Mutex<(any Channel, LeanHTTP1Handler)?>(nil)

    /// A connection (opened lazily) to `host:port`.
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
        loop = MultiThreadedEventLoopGroup.singleton.any()
    }

    /// Sends `request` (a whole serialized request) and returns the response status once the
    /// whole response is read. `head` is true for a HEAD request (no body follows).
    public func send(_ request: ByteBuffer, head: Bool = false, timeout: TimeAmount) async throws -> Int {
        let handler = try await connected()
        return try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Int, any Error>) in
                if loop.inEventLoop {
                    handler.start(request, head: head, timeout: timeout, continuation)
                } else {
                    loop.execute { handler.start(request, head: head, timeout: timeout, continuation) }
                }
            }
        } onCancel: {
            loop.execute { handler.fail(CancellationError(), close: true) }
        }
    }

    /// A buffer to serialize a request into.
    public func buffer(capacity: Int) -> ByteBuffer { ByteBufferAllocator().buffer(capacity: capacity) }

    /// Closes the connection.
    public func close() {
        slot.withLock { s in
            s?.0.close(promise: nil)
            s = nil
        }
    }

    private func connected() async throws -> LeanHTTP1Handler {
        if let handler = slot.withLock({ s -> LeanHTTP1Handler? in s.flatMap { $0.0.isActive ? $0.1 : nil } }) { return handler }
        let handler = LeanHTTP1Handler()
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: loop)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .connectTimeout(.seconds(5))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(handler) }
                }
                .connect(host: host, port: port).get()
        } catch {
            throw LeanHTTPError(errorClass: "connect", message: "cannot connect to \(host):\(port): \(error)")
        }
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
    private var pending: UnsafeContinuation<Int, any Error>?
    private var phase = Phase.idle
    private var received: ByteBuffer?
    private var status = 0
    private var keepAlive = true
    private var isHead = false
    private var deadline = NIODeadline.distantFuture
    /// At most one timer per connection, armed while a request is outstanding: it fires at
    /// the deadline it was armed for and re-arms for a later one, so a busy keep-alive
    /// connection costs about one timer event per timeout, and an idle one none.
    private var timer: Scheduled<Void>?
    /// The most a response head may take.
    static let maxHead = 64 * 1024

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    private func armTimer(_ context: ChannelHandlerContext) {
        guard timer == nil else { return }
        timer = context.eventLoop.scheduleTask(deadline: deadline) { [weak self] in self?.timerFired() }
    }

    private func timerFired() {
        timer = nil
        guard pending != nil, let context else { return }
        if NIODeadline.now() >= deadline {
            fail(LeanHTTPError(errorClass: "timeout", message: "no complete response within the timeout"), close: true)
        } else {
            armTimer(context)
        }
    }

    func start(_ request: ByteBuffer, head: Bool, timeout: TimeAmount, _ continuation: UnsafeContinuation<Int, any Error>) {
        guard let context, context.channel.isActive, pending == nil else {
            continuation.resume(throwing: LeanHTTPError(errorClass: "connection_closed", message: "the connection closed before the request was sent"))
            return
        }
        pending = continuation
        phase = .head
        isHead = head
        keepAlive = true
        deadline = .now() + timeout
        armTimer(context)
        context.writeAndFlush(NIOAny(request), promise: nil)
    }

    func fail(_ error: any Error, close: Bool) {
        let p = pending
        pending = nil
        phase = .idle
        // Closed before the caller resumes, so its next request sees the connection gone.
        if close { context?.close(promise: nil) }
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

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        if phase == .untilClose {
            complete()
        } else if pending != nil {
            fail(LeanHTTPError(errorClass: "connection_closed", message: "the server closed the connection before the response ended"), close: false)
        }
        self.context = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(LeanHTTPError(errorClass: "connection_closed", message: "\(error)"), close: true)
    }

    private func complete() {
        let p = pending
        pending = nil
        phase = .idle
        if !keepAlive { context?.close(promise: nil) }
        p?.resume(returning: status)
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
                if buffer.readableBytes > 0 { buffer.moveReaderIndex(forwardBy: buffer.readableBytes); context?.close(promise: nil) }
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
                buffer.moveReaderIndex(forwardBy: n)
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
                buffer.moveReaderIndex(forwardBy: n)
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
                buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
                return
            }
        }
    }

    static let crlf: [UInt8] = Array("\r\n".utf8)
    static let crlfcrlf: [UInt8] = Array("\r\n\r\n".utf8)

    struct Head {
        var status: Int
        var contentLength: Int?
        var chunked = false
        var keepAlive = true
    }

    /// The status line and the headers that frame the body.
    static func parseHead(_ bytes: UnsafeRawBufferPointer) -> Head? {
        // "HTTP/1.1 200 ..."
        guard bytes.count >= 12, bytes[0] == UInt8(ascii: "H"), bytes[4] == UInt8(ascii: "/"), bytes[8] == UInt8(ascii: " ") else { return nil }
        var status = 0
        for i in 9..<12 {
            let d = Int(bytes[i]) - 48
            guard (0...9).contains(d) else { return nil }
            status = status * 10 + d
        }
        var head = Head(status: status)
        head.keepAlive = bytes[7] == UInt8(ascii: "1")  // HTTP/1.0 closes unless it says keep-alive
        var i = 0
        // Skip the status line.
        while i + 1 < bytes.count, !(bytes[i] == 13 && bytes[i + 1] == 10) { i += 1 }
        i += 2
        while i + 1 < bytes.count {
            var lineEnd = i
            while lineEnd + 1 < bytes.count, !(bytes[lineEnd] == 13 && bytes[lineEnd + 1] == 10) { lineEnd += 1 }
            if lineEnd == i { break }
            var colon = i
            while colon < lineEnd, bytes[colon] != UInt8(ascii: ":") { colon += 1 }
            if colon < lineEnd {
                var v = colon + 1
                while v < lineEnd, bytes[v] == 32 || bytes[v] == 9 { v += 1 }
                var vEnd = lineEnd
                while vEnd > v, bytes[vEnd - 1] == 32 || bytes[vEnd - 1] == 9 { vEnd -= 1 }
                let name = UnsafeRawBufferPointer(rebasing: bytes[i..<colon])
                let value = UnsafeRawBufferPointer(rebasing: bytes[v..<vEnd])
                if equalsLowercased(name, "content-length") {
                    var n = 0
                    for b in value {
                        let d = Int(b) - 48
                        guard (0...9).contains(d), n < Int.max / 16 else { return nil }
                        n = n * 10 + d
                    }
                    head.contentLength = n
                } else if equalsLowercased(name, "transfer-encoding") {
                    head.chunked = containsLowercased(value, "chunked")
                } else if equalsLowercased(name, "connection") {
                    if containsLowercased(value, "close") { head.keepAlive = false }
                    if containsLowercased(value, "keep-alive") { head.keepAlive = true }
                }
            }
            i = lineEnd + 2
        }
        return head
    }

    static func lower(_ b: UInt8) -> UInt8 { (65...90).contains(b) ? b + 32 : b }

    static func equalsLowercased(_ bytes: UnsafeRawBufferPointer, _ name: StaticString) -> Bool {
        guard bytes.count == name.utf8CodeUnitCount else { return false }
        let n = name.utf8Start
        for i in 0..<bytes.count where lower(bytes[i]) != n[i] { return false }
        return true
    }

    static func containsLowercased(_ bytes: UnsafeRawBufferPointer, _ word: StaticString) -> Bool {
        let count = word.utf8CodeUnitCount
        guard bytes.count >= count else { return false }
        let w = word.utf8Start
        outer: for start in 0...(bytes.count - count) {
            for j in 0..<count where lower(bytes[start + j]) != w[j] { continue outer }
            return true
        }
        return false
    }

    /// The hexadecimal number a chunk size line starts with (extensions after `;` ignored).
    static func hexPrefix(_ bytes: UnsafeRawBufferPointer) -> Int? {
        var n = 0
        var digits = 0
        for b in bytes {
            let d: Int
            switch b {
            case 48...57: d = Int(b) - 48
            case 97...102: d = Int(b) - 87
            case 65...70: d = Int(b) - 55
            default:
                if digits > 0 && (b == UInt8(ascii: ";") || b == 32 || b == 9) { return n }
                return nil
            }
            guard digits < 15 else { return nil }
            n = n * 16 + d
            digits += 1
        }
        return digits > 0 ? n : nil
    }
}

extension ByteBuffer {
    /// The index (absolute) where `needle` first starts in the readable bytes.
    func firstIndex(of needle: [UInt8]) -> Int? {
        withUnsafeReadableBytes { bytes -> Int? in
            guard bytes.count >= needle.count, let first = needle.first else { return nil }
            var i = 0
            let last = bytes.count - needle.count
            while i <= last {
                if bytes[i] == first {
                    var j = 1
                    while j < needle.count, bytes[i + j] == needle[j] { j += 1 }
                    if j == needle.count { return readerIndex + i }
                }
                i += 1
            }
            return nil
        }
    }
}
