import NIOCore
import NIOPosix
import Synchronization

/// One HTTP/2 connection that carries any number of requests at once, each on its own
/// stream: over TLS with `h2` chosen by ALPN (the same ``LoadTrust`` as HTTP/1.1), or over
/// plain TCP by prior knowledge (h2c, as h2load does). Opened on the first request; a
/// connection that closed, failed, went away or stayed silent through a request's timeout is
/// replaced on the next one, once for all the requests that ask at the same time.
///
/// Over TLS, a server that does not choose `h2` fails the request with ``HTTP2NotOffered``,
/// and the caller sends it over HTTP/1.1 instead.
final class LeanHTTP2Connection: Sendable {
    let host: String
    let port: Int
    let tls: Bool
    let loop: any EventLoop

    enum Slot {
        case none
        /// A connection being opened: every request that asks meanwhile waits for this one.
        case connecting(EventLoopFuture<LeanHTTP2Handler>)
        case open(any Channel, LeanHTTP2Handler)
        /// Closed for good: the VU ended.
        case closed
    }
    let slot = Mutex(Slot.none)
    /// Numbers the requests sent on this connection (a cancelled one is found by its number).
    let requests = Atomic<UInt64>(0)

    init(host: String, port: Int, tls: Bool) {
        self.host = host
        self.port = port
        self.tls = tls
        loop = MultiThreadedEventLoopGroup.singleton.any()
    }

    /// Sends `request` on a stream of its own and reads its whole response (with `maxBody`,
    /// its headers and body too; a longer body throws `NIOTooManyBytesError`). The timeout
    /// covers connecting.
    func exchange(_ request: LeanH2Request, timeout: TimeAmount, maxBody: Int?) async throws -> LeanResponse {
        try Task.checkCancellation()
        let deadline = NIODeadline.now() + timeout
        let handler = try await connected(within: timeout)
        let number = requests.add(1, ordering: .relaxed).newValue
        return try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<LeanResponse, any Error>) in
                if loop.inEventLoop {
                    handler.start(number, request, deadline: deadline, maxBody: maxBody, continuation)
                } else {
                    loop.execute { handler.start(number, request, deadline: deadline, maxBody: maxBody, continuation) }
                }
            }
        } onCancel: {
            loop.execute { handler.cancel(number) }
        }
    }

    /// Closes the connection; a later request fails with `connection_closed`.
    func close() {
        let previous = slot.withLock { s -> Slot in
            defer { s = .closed }
            return s
        }
        switch previous {
        case .open(let channel, _): channel.close(promise: nil)
        case .connecting: break  // closed when it connects: the slot is no longer `connecting`
        case .none, .closed: break
        }
    }

    private func connected(within timeout: TimeAmount) async throws -> LeanHTTP2Handler {
        // Decided under the lock, connected outside it (a connect that fails at once calls back at once).
        let (future, promise) = try slot.withLock { s -> (EventLoopFuture<LeanHTTP2Handler>, EventLoopPromise<LeanHTTP2Handler>?) in
            switch s {
            case .open(let channel, let handler) where channel.isActive && handler.open.load(ordering: .acquiring):
                return (loop.makeSucceededFuture(handler), nil)
            case .connecting(let future):
                return (future, nil)
            case .closed:
                throw LeanHTTPError(errorClass: "connection_closed", message: "the VU has ended")
            case .none, .open:
                let promise = loop.makePromise(of: LeanHTTP2Handler.self)
                s = .connecting(promise.futureResult)
                return (promise.futureResult, promise)
            }
        }
        if let promise { settle(connect(within: timeout)).cascade(to: promise) }
        do {
            return try await future.get()
        } catch {
            throw LeanChannel.failure(error, host: host, port: port)
        }
    }

    /// The slot holds the channel once connected, or is emptied if that failed (the next request tries again).
    private func settle(_ connecting: EventLoopFuture<(any Channel, LeanHTTP2Handler)>) -> EventLoopFuture<LeanHTTP2Handler> {
        connecting.map { channel, handler in
            let kept = self.slot.withLock { s -> Bool in
                guard case .connecting = s else { return false }
                s = .open(channel, handler)
                return true
            }
            // Closed while it was connecting: the VU has ended.
            if !kept { channel.close(promise: nil) }
            return handler
        }.flatMapErrorThrowing { error in
            self.slot.withLock { s in if case .connecting = s { s = .none } }
            throw error
        }
    }

    /// Opens a channel with the handlers of HTTP/2 (over TLS, NIOHTTP2's is added once ALPN chose `h2`).
    private func connect(within timeout: TimeAmount) -> EventLoopFuture<(any Channel, LeanHTTP2Handler)> {
        let tls = tls
        return LeanChannel.open(host: host, port: port, on: loop, timeout: timeout, tls: tls, http2: true) { pipeline in
            let handler = LeanHTTP2Handler(tls: tls)
            if !tls { try pipeline.addHandler(LeanHTTP2Handler.http2Handler()) }
            try pipeline.addHandler(handler)
            return handler
        }
    }
}
