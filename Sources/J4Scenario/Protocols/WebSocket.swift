import HTTPTypes
import J4Core
import Logging
import NIOCore
import Synchronization
import WSClient

/// A WebSocket that lives as long as its VU and reconnects when it drops (built on
/// ``VUContext/reconnecting(_:minBackoff:maxBackoff:_:)``, so it has the same metrics).
///
/// Every handshake carries J4's attribution headers and a W3C `traceparent`, and is timed as
/// the step `<name> connect`.
public final class WebSocketChannel: Sendable {
    /// The stream's name, the prefix of its metrics.
    public let name: String
    let writer = Mutex<WebSocketOutboundWriter?>(nil)

    init(name: String) { self.name = name }

    /// True while connected.
    public var isConnected: Bool { writer.withLock { $0 != nil } }

    /// Sends a text message; throws ``WebSocketNotConnected`` while the socket is down.
    public func send(_ text: String) async throws {
        guard let w = writer.withLock({ $0 }) else { throw WebSocketNotConnected(name: name) }
        try await w.write(.text(text))
    }

    /// Waits until the socket is connected (at once if it is), or throws after `timeout`.
    public func waitUntilConnected(timeout: Duration = .seconds(10)) async throws {
        let deadline = ContinuousClock.now + timeout
        while !isConnected {
            guard ContinuousClock.now < deadline else { throw WebSocketNotConnected(name: name) }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    func up(_ w: WebSocketOutboundWriter) { writer.withLock { $0 = w } }
    func down() { writer.withLock { $0 = nil } }
}

/// A WebSocket was used while it was down (between a drop and its reconnection).
public struct WebSocketNotConnected: ClassifiedError, CustomStringConvertible {
    /// The socket's name.
    public let name: String
    public var errorClass: String { "ws_disconnected" }
    public var description: String { "WebSocket \(name) is not connected" }
}

extension VUContext {
    /// Opens a WebSocket to `url` (ws:// or wss://) for this VU, with `headers` on the
    /// handshake; each text message received goes to `onMessage`. It reconnects with backoff
    /// until the VU ends; see ``VUContext/reconnecting(_:minBackoff:maxBackoff:_:)`` for its
    /// metrics.
    public func webSocket(
        _ name: String, url: String, headers: [(String, String)] = [], maxMessage: Int = 1 << 20,
        onMessage: @escaping @Sendable (String) async -> Void
    ) -> WebSocketChannel {
        let channel = WebSocketChannel(name: name)
        let logger = self.logger
        let fields = attributionHeaders + headers
        reconnecting(name) { [self] link in
            var configuration = WebSocketClientConfiguration()
            for (k, v) in fields + [("traceparent", TraceContext.traceparent(traceID: TraceContext.newTraceID()))] {
                if let field = HTTPField.Name(k) { configuration.additionalHeaders[field] = v }
            }
            defer { channel.down() }
            // The handshake is the step `<name> connect`.
            let handshake = openStep(name + " connect")
            do {
                try targets.check(url: url)
                try await WebSocketClient.connect(url: url, configuration: configuration, logger: logger) { inbound, outbound, _ in
                    handshake.end(errorClass: nil)
                    channel.up(outbound)
                    link.connected()
                    var messages = inbound.messages(maxSize: maxMessage).makeAsyncIterator()
                    while let message = try await messages.next() {
                        if case .text(let text) = message { await onMessage(text) }
                    }
                }
            } catch {
                handshake.end(errorClass: errorClass(of: error))
                throw error
            }
        }
        return channel
    }
}
