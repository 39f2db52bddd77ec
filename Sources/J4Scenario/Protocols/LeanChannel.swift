import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// Opening the channel of a lean connection, HTTP/1.1 or HTTP/2 alike: TCP with no delay, a
/// connect timeout of at most 5 s, NIOSSL in front over TLS (SNI and the name checked are
/// the host's; for an IP address, its SAN entry), then the protocol's own handlers.
enum LeanChannel {
    /// Connects to `host:port` on `loop`; over `tls`, with the lean TLS context (offering `h2`
    /// first when `http2`). `handlers` adds the protocol's handlers to each attempt's pipeline
    /// and returns the one that reads responses; the connected channel's is returned with it.
    static func open<Handler: Sendable>(
        host: String, port: Int, on loop: any EventLoop, timeout: TimeAmount, tls: Bool, http2: Bool,
        handlers: @escaping @Sendable (ChannelPipeline.SynchronousOperations) throws -> Handler
    ) -> EventLoopFuture<(any Channel, Handler)> {
        let context: NIOSSLContext?
        do { context = tls ? try LoadTrust.leanContext(http2: http2) : nil } catch {
            return loop.makeFailedFuture(LeanHTTPError(errorClass: "tls", message: "cannot set up TLS to \(host): \(error)"))
        }
        let serverName = (try? SocketAddress(ipAddress: host, port: 0)) == nil ? host : nil
        // Each attempt's handler, by its channel: connecting to a name with several addresses
        // tries more than one channel, and a handler shared with a losing attempt would be
        // closed under the winner. The winner's is taken from here, not from its pipeline: a
        // handshake refused at once may have emptied the pipeline already, and the handler says why.
        let made = Mutex<[ObjectIdentifier: Handler]>([:])
        return ClientBootstrap(group: loop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(min(.seconds(5), timeout))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let context { try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: serverName)) }
                    let handler = try handlers(channel.pipeline.syncOperations)
                    made.withLock { $0[ObjectIdentifier(channel)] = handler }
                }
            }
            .connect(host: host, port: port)
            .flatMapThrowing { channel in
                guard let handler = made.withLock({ $0[ObjectIdentifier(channel)] }) else {
                    throw LeanHTTPError(errorClass: "connect", message: "cannot connect to \(host):\(port)")
                }
                return (channel, handler)
            }
    }

    /// A failure to open the channel, classed: `timeout` (connecting), `tls`, else `connect`.
    static func failure(_ error: any Error, host: String, port: Int) -> LeanHTTPError {
        if let error = error as? LeanHTTPError { return error }
        if case ChannelError.connectTimeout(let after)? = error as? ChannelError {
            return LeanHTTPError(errorClass: "timeout", message: "no connection to \(host):\(port) within \(after)")
        }
        if LeanHTTP1Handler.errorClass(error) == "tls" {
            return LeanHTTPError(errorClass: "tls", message: "cannot set up TLS to \(host): \(error)")
        }
        return LeanHTTPError(errorClass: "connect", message: "cannot connect to \(host):\(port): \(error)")
    }
}
