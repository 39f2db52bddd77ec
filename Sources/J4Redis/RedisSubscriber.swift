import CHiredis
import Foundation
import Logging
import Synchronization

/// A pub/sub subscription to one channel on its own hiredis connection and OS thread.
///
/// It waits on the socket with `poll(2)`, so a message is handed to `onMessage` as soon as it
/// arrives and ``close()`` takes effect within a quarter of a second. It pings the server
/// every few seconds and reconnects (with jittered backoff) when the connection breaks or
/// stays silent. Pub/sub does not queue: a message sent while the connection is down is
/// lost, so a subscriber is a fast path only, never the one way a fact reaches its reader.
public final class RedisSubscriber: Sendable {
    /// Where it connects.
    public let endpoint: RedisEndpoint
    /// The channel it listens to.
    public let channel: String
    let options: RedisConnectionOptions
    let onMessage: @Sendable (String) -> Void
    let logger: Logger
    let stopping = Atomic<Bool>(false)
    let subscriptions = Atomic<Int>(0)

    /// Starts listening to `channel`; `onMessage` runs on the subscriber's thread, in order.
    public init(endpoint: RedisEndpoint, channel: String, clientName: String, logger: Logger = Logger(label: "j4.redis"), onMessage: @escaping @Sendable (String) -> Void) {
        self.endpoint = endpoint
        self.channel = channel
        self.options = RedisConnectionOptions(clientName: clientName)
        self.onMessage = onMessage
        self.logger = logger
        let thread = Thread { [self] in loop() }
        thread.name = "redis-sub:\(clientName)"
        thread.stackSize = 1 << 20
        thread.start()
    }

    /// How many times it has (re)subscribed: for tests and status.
    public var subscribeCount: Int { subscriptions.load(ordering: .relaxed) }

    /// Stops listening; the thread ends within a quarter of a second.
    public func close() { stopping.store(true, ordering: .relaxed) }

    private func loop() {
        var failures = 0
        while !stopping.load(ordering: .relaxed) {
            do {
                let ctx = try RedisConnection.open(endpoint, options)
                defer { redisFree(ctx) }
                failures = 0
                try listen(ctx)
            } catch {
                failures += 1
                logger.debug("subscriber connection failed", metadata: ["channel": "\(channel)", "error": "\(error)"])
                let base = options.minBackoff * Int(1 << min(failures - 1, 16))
                let wait = min(base, options.maxBackoff) * Double.random(in: 0.5...1.0)
                let until = ContinuousClock.now + wait
                while ContinuousClock.now < until, !stopping.load(ordering: .relaxed) {
                    Thread.sleep(forTimeInterval: 0.05)
                }
            }
        }
    }

    /// Subscribes on `ctx` and hands messages over until it is closed or the connection fails.
    private func listen(_ ctx: UnsafeMutablePointer<redisContext>) throws(RedisError) {
        try send(ctx, ["SUBSCRIBE", channel])
        var lastHeard = ContinuousClock.now
        var lastPing = ContinuousClock.now
        let pingEvery = Duration.seconds(10)
        while !stopping.load(ordering: .relaxed) {
            var fd = pollfd(fd: ctx.pointee.fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&fd, 1, 250)
            if ready < 0 && errno != EINTR { throw .connection("poll: \(String(cString: strerror(errno)))") }
            if ready > 0 {
                guard redisBufferRead(ctx) == REDIS_OK else { throw .connection(RedisConnection.errorText(ctx)) }
                lastHeard = .now
                while true {
                    var raw: UnsafeMutableRawPointer?
                    guard redisGetReplyFromReader(ctx, &raw) == REDIS_OK else { throw .connection(RedisConnection.errorText(ctx)) }
                    guard let raw else { break }
                    let value = RedisConnection.copy(raw.assumingMemoryBound(to: redisReply.self))
                    freeReplyObject(raw)
                    handle(value)
                }
            }
            let now = ContinuousClock.now
            if now - lastHeard > pingEvery * 3 { throw .connection("no answer to PING for \(pingEvery * 3)") }
            if now - lastPing > pingEvery {
                try send(ctx, ["PING"])
                lastPing = now
            }
        }
    }

    private func handle(_ value: RedisValue) {
        guard let parts = value.array, let kind = parts.first?.string else { return }
        switch kind {
        case "message" where parts.count == 3:
            if let text = parts[2].string { onMessage(text) }
        case "subscribe":
            subscriptions.add(1, ordering: .relaxed)
        default:
            break  // "pong"
        }
    }

    private func send(_ ctx: UnsafeMutablePointer<redisContext>, _ command: [String]) throws(RedisError) {
        let rc = withArgv(command.map { Array($0.utf8) }) { argc, argv, lens in redisAppendCommandArgv(ctx, argc, argv, lens) }
        guard rc == REDIS_OK else { throw .connection(RedisConnection.errorText(ctx)) }
        var done: Int32 = 0
        while done == 0 {
            guard redisBufferWrite(ctx, &done) == REDIS_OK else { throw .connection(RedisConnection.errorText(ctx)) }
        }
    }
}
