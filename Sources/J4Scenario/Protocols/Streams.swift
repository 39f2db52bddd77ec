import J4Core
import Synchronization

/// One connection of a reconnecting stream, as its body sees it.
public struct StreamLink: Sendable {
    let onConnected: @Sendable () -> Void

    /// Tells J4 the stream is up (the handshake is done): the reconnect gap ends here.
    public func connected() { onConnected() }
}

extension VUContext {
    /// A long-living stream bound to this VU (a WebSocket, a gRPC server stream…) that
    /// reconnects with jittered exponential backoff until the VU ends.
    ///
    /// `session` runs one connection: it connects, calls `link.connected()` once it is up,
    /// and returns or throws when the stream ends. J4 counts `<name>.connects`,
    /// `<name>.disconnects` and `<name>.connect_failures` (counters) and records
    /// `<name>.reconnect_gap` (from the end of one connection to the next `connected()`), and
    /// cancels the session when the VU ends.
    public func reconnecting(
        _ name: String, minBackoff: Duration = .milliseconds(100), maxBackoff: Duration = .seconds(5),
        _ session: @escaping @Sendable (StreamLink) async throws -> Void
    ) {
        background(name) { [self] in
            var failures = 0
            let downSince = Mutex<ContinuousClock.Instant?>(nil)
            while !Task.isCancelled {
                let up = Atomic<Bool>(false)
                let link = StreamLink { [self] in
                    guard !up.exchange(true, ordering: .relaxed) else { return }
                    metrics.count(name + ".connects")
                    if let since = downSince.withLock({ d in defer { d = nil }; return d }) {
                        metrics.record(name + ".reconnect_gap", since.duration(to: .now))
                    }
                }
                var failure: (any Error)?
                do { try await session(link) } catch { failure = error }
                if Task.isCancelled || isEnded { return }
                if up.load(ordering: .relaxed) {
                    failures = 0
                    metrics.count(name + ".disconnects")
                    downSince.withLock { $0 = .now }
                    logger.debug("stream ended; reconnecting", metadata: ["stream": "\(name)", "error": "\(failure.map { "\($0)" } ?? "closed")"])
                } else {
                    failures += 1
                    metrics.count(name + ".connect_failures")
                }
                let base = minBackoff * Int(1 << min(max(failures - 1, 0), 16))
                try await Task.sleep(for: min(base, maxBackoff) * Double.random(in: 0.5...1.0))
            }
        }
    }
}
