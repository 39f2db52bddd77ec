import Foundation
import J4Core
import J4Redis
import Logging

/// The one reader of Redis in a dashboard process. Each run someone watches has one feed that
/// reads it once a second and sends the point to every open stream of that run, so 100
/// browser tabs on a run cost Redis what one does. The list of runs is read at most once a
/// second whoever asks. A feed stops reading 10 s after its last stream closed; once its run
/// has ended it reads twice more (the workers' last flushes), sends `end` and closes its
/// streams.
public actor DashboardHub {
    public let connection: RedisConnection
    let logger: Logger
    /// How long a feed keeps reading with nobody watching (a page being reloaded comes back).
    let linger: Duration
    private var feeds: [String: Feed] = [:]
    private var nextSubscriber = 0
    private var runsCache: (at: ContinuousClock.Instant, json: String)?
    private var runsLoading: Task<String, any Error>?

    /// A run's feed: its streams, what they were sent, and its reading task.
    final class Feed {
        var subscribers: [Int: AsyncStream<String>.Continuation] = [:]
        /// Subscribers that have had the history.
        var primed: Set<Int> = []
        /// Every second read so far (its last hour), by unix second.
        var history: [Int64: RunReport.Second] = [:]
        var latest: DashboardPoint?
        var task: Task<Void, Never>?
        var idleSince: ContinuousClock.Instant?
        /// Reads made since the run was seen ended.
        var readsAfterEnd = 0
        /// The run has ended and its streams were closed: nothing reads it any more.
        var ended: Bool { task == nil }
    }

    public init(connection: RedisConnection, logger: Logger, linger: Duration = .seconds(10)) {
        self.connection = connection
        self.logger = logger
        self.linger = linger
    }

    // MARK: streams

    /// A stream of `run`'s Server-Sent Events: `history` (every second so far, its last hour)
    /// then a `point` a second, `state` (before the point that shows it) when the run's state
    /// changes, `problem` when Redis cannot be read, and `end` once the run has ended, after
    /// which the stream finishes. Nil when there is no such run.
    public func subscribe(_ run: String) async throws -> AsyncStream<String>? {
        if feeds[run] == nil {
            guard try await exists(run) else { return nil }
        }
        let feed: Feed
        if let existing = feeds[run] {
            feed = existing
        } else {
            feed = Feed()
            feeds[run] = feed
            feed.task = Task { await self.read(run) }
        }
        nextSubscriber += 1
        let id = nextSubscriber
        let (stream, continuation) = AsyncStream<String>.makeStream(bufferingPolicy: .bufferingNewest(64))
        continuation.onTermination = { _ in Task { await self.unsubscribe(run, id) } }
        feed.subscribers[id] = continuation
        feed.idleSince = nil
        if let latest = feed.latest {
            prime(feed, id, continuation)
            continuation.yield(ServerSentEvent.format("point", latest.json))
            if feed.ended { end(feed, latest, only: continuation) }
        }
        return stream
    }

    /// Whether `run` is in Redis.
    public func exists(_ run: String) async throws -> Bool {
        try await RunStore.info(run, on: connection) != nil
    }

    /// Returns once the streams of `run` have been sent its end (or nobody watches it), or
    /// after `timeout`.
    public func waitForEnd(of run: String, timeout: Duration) async {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline, let feed = feeds[run], !feed.subscribers.isEmpty, !feed.ended {
            guard (try? await Task.sleep(for: .milliseconds(100))) != nil else { return }
        }
    }

    /// Open streams, all runs together.
    public var streams: Int { feeds.values.reduce(0) { $0 + $1.subscribers.count } }

    private func unsubscribe(_ run: String, _ id: Int) {
        guard let feed = feeds[run] else { return }
        feed.subscribers[id] = nil
        feed.primed.remove(id)
        guard feed.subscribers.isEmpty else { return }
        if feed.ended {
            feeds[run] = nil  // nothing reads it: the next stream reads it again
        } else {
            feed.idleSince = .now
        }
    }

    private func prime(_ feed: Feed, _ id: Int, _ continuation: AsyncStream<String>.Continuation) {
        let seconds = feed.history.values.sorted { $0.unix < $1.unix }
        continuation.yield(ServerSentEvent.format("history", DashboardJSON.line(["seconds": seconds])))
        feed.primed.insert(id)
    }

    /// `end` to the streams of `feed` (or to `only`), which then finish.
    private func end(_ feed: Feed, _ point: DashboardPoint, only: AsyncStream<String>.Continuation? = nil) {
        let event = ServerSentEvent.format("end", DashboardJSON.line(["run": point.run, "state": point.state]))
        for continuation in only.map({ [$0] }) ?? Array(feed.subscribers.values) {
            continuation.yield(event)
            continuation.finish()
        }
    }

    /// The feed's loop: a point a second while someone watches and the run is live. After a
    /// gap (Redis unreachable for longer than the seconds a point re-reads), the next read
    /// fills it in.
    private func read(_ run: String) async {
        var readThrough: Int64?
        var known: RunStore.KnownDefinition?
        var failing = false
        while !Task.isCancelled {
            var pause: Duration? = .seconds(1)
            do {
                let (point, backfill, definition) = try await Self.load(run, after: readThrough, known: known, on: connection)
                known = definition
                readThrough = point.seconds.last?.unix ?? readThrough
                failing = false
                pause = deliver(run, point, backfill)
            } catch {
                if !failing { logger.warning("dashboard cannot read the run", metadata: ["run": "\(run)", "error": "\(error)"]) }
                failing = true
                if !complain(run, "cannot read run \(run) from Redis: \(error)") { pause = nil }
            }
            guard let pause else { return }
            try? await Task.sleep(for: pause)
        }
    }

    /// From a read at server time `nowMs` to the next: 50 ms into the next server second, so
    /// that each point is of a second of its own (one a second, none skipped while a read takes
    /// less than a second).
    static func untilNextRead(nowMs: Int64) -> Duration {
        .milliseconds(1000 - ((nowMs % 1000) + 1000) % 1000 + 50)
    }

    /// A run that ended less than this long before a read is read twice more, for the
    /// workers' last flushes.
    static let settling: Int64 = 5000

    /// Sends `point` to the run's streams; how long until the next read, or nil to stop.
    private func deliver(_ run: String, _ point: DashboardPoint, _ backfill: [RunReport.Second]?) -> Duration? {
        guard let feed = feeds[run] else { return nil }
        for s in backfill ?? [] { feed.history[s.unix] = s }
        for s in point.seconds { feed.history[s.unix] = s }
        if feed.history.count > 3600, let cut = feed.history.keys.sorted().dropLast(3600).last {
            feed.history = feed.history.filter { $0.key > cut }
        }
        let previous = feed.latest?.state
        feed.latest = point
        // Made once for every stream.
        let pointEvent = ServerSentEvent.format("point", point.json)
        let stateEvent = previous.flatMap { $0 == point.state ? nil : ServerSentEvent.format("state", DashboardJSON.line(["run": run, "state": point.state, "previous": $0])) }
        for (id, continuation) in feed.subscribers {
            if !feed.primed.contains(id) { prime(feed, id, continuation) }
            if let stateEvent { continuation.yield(stateEvent) }
            continuation.yield(pointEvent)
        }
        if let idle = feed.idleSince, idle.duration(to: .now) >= linger {
            feeds[run] = nil
            return nil
        }
        guard !(RunState(rawValue: point.state)?.isLive ?? false) else { return Self.untilNextRead(nowMs: point.now_ms) }
        let recent = point.now_ms - (point.finished_ms ?? 0) < Self.settling
        if recent && feed.readsAfterEnd < 2 {
            feed.readsAfterEnd += 1
            return .seconds(1)
        }
        feed.task = nil
        end(feed, point)
        if feed.subscribers.isEmpty { feeds[run] = nil }
        return nil
    }

    /// Tells the run's streams that it cannot be read; false when the feed should stop.
    private func complain(_ run: String, _ message: String) -> Bool {
        guard let feed = feeds[run] else { return false }
        for (_, continuation) in feed.subscribers { continuation.yield(ServerSentEvent.format("problem", DashboardJSON.line(["message": message]))) }
        if let idle = feed.idleSince, idle.duration(to: .now) >= linger {
            feeds[run] = nil
            return false
        }
        return true
    }

    /// Reads `run`'s point, and the seconds from the one after `after` (from its start when
    /// nil; at most the last hour) up to the point's own: the history a feed starts with, or
    /// what a gap in its reads missed. The run's definition is parsed again only when it is
    /// not `known`; the one read is returned for the next read.
    static func load(_ run: String, after: Int64?, known: RunStore.KnownDefinition?, on c: RedisConnection) async throws
        -> (point: DashboardPoint, backfill: [RunReport.Second]?, known: RunStore.KnownDefinition) {
        guard let info = try await RunStore.info(run, on: c, reusing: known) else { throw RedisError.unexpectedReply("run \(run) is gone") }
        let keys = RunKeys(run: run)
        let (summary, time, replies) = try await RunSummary.load(info, on: c, with: [
            ["HGETALL", keys.owners], ["ZRANGE", keys.leases, "0", "-1", "WITHSCORES"], ["ZRANGE", keys.workers, "0", "-1", "WITHSCORES"],
            ["XREVRANGE", keys.events, "+", "-", "COUNT", "50"],
        ])
        let nowMs = time ?? 0
        var seconds: [(unix: Int64, fields: [String: String])] = []
        var backfilled: [RunReport.Second]?
        let endMs = info.state.isLive ? nil : info.finishedMs
        if let window = DashboardPoint.window(nowMs: nowMs, startMs: info.startMs, endMs: endMs, folded: info.compactedSecond), let start = info.startMs {
            let hashes = try await c.pipeline(window.map { ["HGETALL", keys.metrics(second: $0)] })
            seconds = zip(window, hashes).map { ($0, $1.hash ?? [:]) }
            let first = max(start / 1000, (after ?? Int64.min) + 1, window.lowerBound - 3600)
            if first < window.lowerBound {
                let folded = min(window.lowerBound, info.compactedSecond ?? first)
                backfilled = try await RunReport.loadSeries(keys: keys, first: first, last: window.lowerBound - 1, folded: folded, startMs: start, curve: info.curve, on: c).0
            }
        }
        func scores(_ v: RedisValue) -> [String: Int64] { (v.hash ?? [:]).compactMapValues { Double($0).map { Int64($0) } } }
        let point = DashboardPoint.make(info: info, summary: summary, nowMs: nowMs, seconds: seconds, owners: replies[0].hash ?? [:],
                                        leases: scores(replies[1]), heartbeats: scores(replies[2]), events: replies[3].streamEntries)
        return (point, backfilled, RunStore.KnownDefinition(hash: info.hash, definition: info.definition))
    }

    // MARK: one-off reads

    /// `GET /api/runs`: the recent runs, live ones first, read at most once a second.
    public func runsJSON() async throws -> String {
        if let cache = runsCache, cache.at.duration(to: .now) < .seconds(1) { return cache.json }
        if let loading = runsLoading { return try await loading.value }
        let task = Task { [connection] in try await Self.loadRuns(on: connection) }
        runsLoading = task
        defer { runsLoading = nil }
        let json = try await task.value
        runsCache = (.now, json)
        return json
    }

    static func loadRuns(on c: RedisConnection, limit: Int = 50) async throws -> String {
        let nowMs = try await c.send(["TIME"]).timeMs ?? 0
        var rows: [DashboardRunRow] = []
        for run in try await RunStore.recentRuns(on: c, limit: limit) {
            // A run whose data is broken is left out of the list; `j4 status` names its fault.
            guard let info = try? await RunStore.info(run, on: c) else { continue }
            let keys = RunKeys(run: run)
            let recent: [Int64] = info.state.isLive ? Array((nowMs / 1000 - 6)...(nowMs / 1000 - 2)) : []
            let (summary, _, started) = try await RunSummary.load(info, on: c, with: recent.map { ["HGET", keys.metrics(second: $0), MetricField.started.name] })
            rows.append(DashboardRunRow.make(info: info, summary: summary, recentStarted: started.map { $0.int ?? 0 }, nowMs: nowMs))
        }
        return DashboardJSON.line(DashboardRunRow.ordered(rows))
    }

    /// `GET /api/runs/{id}`: the JSON of `j4 status --json`; nil when there is no such run.
    public func summaryJSON(_ run: String) async throws -> String? {
        try await RunSummary.load(run, on: connection)?.json
    }

    /// The HTML report of `run`, as `j4 report --format html` writes it.
    public func reportHTML(_ run: String) async throws -> String? {
        try await RunReport.load(run, on: connection)?.rendered("html")
    }

    /// Carries out `control` on `run` as `who`: the JSON answer, or a refusal.
    public func control(_ run: String, _ control: RunControl, who: String) async -> Result<String, DashboardRefusal> {
        do {
            switch control {
            case .stop:
                let (state, tick) = try await RunControls.stop(run, who: who, on: connection)
                return .success(DashboardJSON.line(StateAnswer(run: run, state: state.rawValue, stop_tick: tick)))
            case .abort(let reason):
                let (state, tick) = try await RunControls.abort(run, reason: reason, who: who, on: connection)
                return .success(DashboardJSON.line(StateAnswer(run: run, state: state.rawValue, stop_tick: tick)))
            case .scale(let target):
                let text = target.rounded() == target && abs(target) < 1e15 ? String(Int64(target)) : String(target)
                let scaled = try await RunControls.scale(run, target: text, who: who, on: connection)
                return .success(DashboardJSON.line(ScaleAnswer(run: run, target: Double(scaled.targetMilli) / 1000, from_tick: scaled.fromTick)))
            }
        } catch let refusal as ControlRefusal {
            let status = switch refusal.kind {
            case .noRun: 404
            case .invalid: 400
            case .conflict: 409
            case .unavailable: 503
            }
            return .failure(DashboardRefusal(status: status, field: refusal.field, message: refusal.message))
        } catch RedisError.server(let code, let message) where code == "NOPERM" {
            return .failure(DashboardRefusal(status: 403, message: "the Redis user of this dashboard may not change runs (\(message)); start it with a user that may"))
        } catch {
            return .failure(DashboardRefusal(status: 503, message: "Redis did not carry it out: \(error)"))
        }
    }

    struct StateAnswer: Encodable { var run: String, state: String, stop_tick: Int64 }
    struct ScaleAnswer: Encodable { var run: String, target: Double, from_tick: Int64 }
}
