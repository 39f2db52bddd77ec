import Foundation
import J4Core
import J4Redis
import Logging
import Metrics
import Synchronization

/// Computes the target curve of every active run and publishes it ahead of time; starts and
/// finishes runs; reaps; deletes runs past their retention. Any number may run: one leads (j4:leader), the others stand by.
/// It keeps no state of its own that matters: kill it and another continues from Redis.
/// If none runs, the workers run out of published ticks and the load stops.
public final class Supervisor: Sendable {
    /// This supervisor's id.
    public let id: String
    let connection: RedisConnection
    /// Retention's own connection, so that its deletions never queue before a plan.
    let retentionConnection: RedisConnection
    let logger: Logger
    /// How far ahead of now the plan is published: the longer of this and 10 ticks. The
    /// leadership TTL and 2 s, so that the load goes on while a standby takes over from a
    /// leader that died (the TTL, then its next cycle and first publication, on a machine
    /// that may be slow; a leader that stops gracefully hands over at once).
    public let horizon: Duration
    /// Leadership lease length.
    public let leaderTTL: Duration
    let token = String(UInt64.random(in: 0...UInt64.max), radix: 36)
    /// Per run: its definition hash and definition (so the stored JSON is parsed once, not
    /// every cycle), its scales, and the curve they make.
    let curves = Mutex<[String: (String, RunDefinition, [Curve.Scale], Curve)]>([:])
    let stopping = Atomic<Bool>(false)
    let reachable = Atomic<Bool>(false)
    /// True once a cycle has reached Redis, until one fails to (the readiness probe).
    public var isConnected: Bool { reachable.load(ordering: .relaxed) }
    /// Prometheus: 1 while leading; the duration of a supervision cycle; active runs.
    let leadingGauge: Gauge
    let cycleTimer: Metrics.Timer
    let runsGauge: Gauge

    /// The ceiling on any one run this supervisor publishes when it leads, and enforces.
    public let limits: RunLimits
    /// How long a run is kept after it was submitted and has ended (nil: forever).
    public let retain: Duration?
    /// How much of a run's recent past stays in full detail; the rest is folded.
    public let compaction: Compaction
    /// Per run: when its last compaction pass began.
    let lastCompaction = Mutex<[String: ContinuousClock.Instant]>([:])
    /// When the last retention sweep began, and whether one is running.
    let lastRetentionSweep = Mutex<(last: ContinuousClock.Instant?, running: Bool)>((nil, false))

    /// A supervisor with its own connection to `endpoint`; `limits` is the ceiling it
    /// publishes in `j4:limits` when it leads, and fails runs above.
    public init(
        id: String, endpoint: RedisEndpoint, logger: Logger, horizon: Duration? = nil, leaderTTL: Duration = .seconds(3), limits: RunLimits = RunLimits(),
        retain: Duration? = nil, compaction: Compaction = Compaction()
    ) {
        self.id = id
        self.compaction = compaction
        self.limits = limits
        self.retain = retain
        self.connection = RedisConnection(endpoint: endpoint, options: RedisConnectionOptions(clientName: "j4-supervisor:\(id)"))
        self.retentionConnection = RedisConnection(endpoint: endpoint, options: RedisConnectionOptions(clientName: "j4-supervisor:\(id):retention"))
        var l = logger
        l[metadataKey: "supervisor"] = "\(id)"
        self.logger = l
        self.horizon = horizon ?? Supervisor.defaultHorizon(leaderTTL: leaderTTL)
        self.leaderTTL = leaderTTL
        leadingGauge = Gauge(label: "j4_supervisor_leading", dimensions: [("supervisor", id)])
        cycleTimer = Metrics.Timer(label: "j4_supervision_cycle_seconds", dimensions: [("supervisor", id)], preferredDisplayUnit: .seconds)
        runsGauge = Gauge(label: "j4_runs_active", dimensions: [("supervisor", id)])
    }

    var ttlMs: Int64 { Int64(leaderTTL.components.seconds * 1000 + leaderTTL.components.attoseconds / 1_000_000_000_000_000) }

    /// Runs until cancelled or ``resign()``; resigns leadership on the way out.
    public func run() async {
        var leading = false
        while !Task.isCancelled && !stopping.load(ordering: .relaxed) {
            do {
                let nowLeading = try await GlobalScripts.leader(connection, leading ? "renew" : "acquire", holder: id, token: token, ttlMs: ttlMs)
                if nowLeading != leading {
                    logger.info(nowLeading ? "leading" : "standing by")
                    // The leader's ceiling is the cluster's: submit and scale read it.
                    if nowLeading { try await RunStore.publish(limits, on: connection) }
                    leading = nowLeading
                }
                reachable.store(true, ordering: .relaxed)
                leadingGauge.record(leading ? 1 : 0)
                if leading {
                    let began = ContinuousClock.now
                    try await superviseAll()
                    startRetentionSweep()
                    let (s, atto) = began.duration(to: .now).components
                    cycleTimer.recordNanoseconds(s * 1_000_000_000 + atto / 1_000_000_000)
                }
            } catch {
                logger.warning("supervision cycle failed", metadata: ["error": "\(error)"])
                if error is RedisError { reachable.store(false, ordering: .relaxed) }
                leading = false
            }
            try? await Task.sleep(for: .milliseconds(250))
        }
        if leading {
            // Hand over at once: give up each run's hold, then the leadership, so the standby
            // that takes over publishes on its next cycle instead of waiting for them to expire.
            for run in curves.withLock({ Array($0.keys) }) {
                _ = try? await RunClient(run: run).resign(connection, holder: id, token: token)
            }
            _ = try? await GlobalScripts.leader(connection, "resign", holder: id, token: token, ttlMs: ttlMs)
            logger.info("resigned: leadership and every run's hold handed over")
        }
        await connection.close()
        await retentionConnection.close()
    }

    /// Ends ``run()`` at its next cycle.
    public func resign() { stopping.store(true, ordering: .relaxed) }

    func superviseAll() async throws {
        let runs = try await RunStore.activeRuns(on: connection)
        runsGauge.record(runs.count)
        for run in runs {
            do {
                try await supervise(run)
            } catch let e as CorruptRunError {
                logger.error("marking a run failed: its data cannot be used", metadata: ["run": "\(run)", "reason": "\(e.reason)"])
                await fail(run, reason: e.reason)
            } catch let e as DefinitionError {
                logger.error("marking a run failed: it asks for more than this cluster allows", metadata: ["run": "\(run)", "reason": "\(e.problems.map(\.description).joined(separator: "; "))"])
                await fail(run, reason: e.problems.map(\.description).joined(separator: "; "))
            } catch let e as RedisError where e.isUnreachable {
                throw e
            } catch {
                // One run's trouble does not hold up the others: they are supervised this cycle.
                logger.warning("cannot supervise a run this cycle", metadata: ["run": "\(run)", "error": "\(error)"])
            }
        }
    }

    /// Marks `run` failed with `reason` and takes it out of the active set.
    func fail(_ run: String, reason: String) async {
        await RunStore.markFailed(run, reason: reason, by: id, deactivate: true, on: connection)
        _ = curves.withLock { $0.removeValue(forKey: run) }
    }

    func supervise(_ run: String) async throws {
        let known = curves.withLock { $0[run].map { ($0.0, $0.1) } }
        guard let info = try await RunStore.info(run, on: connection, reusing: known.map { RunStore.KnownDefinition(hash: $0.0, definition: $0.1) }) else {
            // Active, but its ctl hash is gone: said in its events (a new ctl hash holding only
            // a state would be worse than none), and no longer supervised.
            logger.error("an active run has no ctl hash; it is dropped", metadata: ["run": "\(run)"])
            await RunStore.markFailed(run, reason: CorruptRunError.ctlMissing, by: id, deactivate: true, on: connection)
            return
        }
        let client = RunClient(run: run)
        let cached = curves.withLock { c -> Curve? in
            guard let (hash, _, scales, cv) = c[run], hash == info.hash, scales == info.scales else { return nil }
            return cv
        }
        let curve: Curve
        if let cached {
            curve = cached
        } else {
            // A new definition or scale: a run above the ceiling (written past submit and
            // scale) never gets a plan; else its curve is kept until the next change.
            var over = limits.problems(info.definition)
            for scale in info.scales {
                if let p = limits.problem(scaling: info.definition.model, to: scale.targetMilli) { over.append(p) }
            }
            if !over.isEmpty, info.state.isLive { throw DefinitionError(problems: over) }
            curve = info.curve
            curves.withLock { $0[run] = (info.hash, info.definition, info.scales, curve) }
        }
        let tickMs = info.definition.tickMs
        switch info.state {
        case .pending, .running, .stopping:
            let lead = max(3000, 2 * tickMs)
            // Publish from the current tick (estimated from the last known start) up to the horizon.
            var from: Int64 = 0
            if let start = info.startMs, let now = try await serverNowMs() {
                from = max(0, (now - start) / tickMs)
            }
            let last = min(from + horizonTicks(tickMs: tickMs), curve.tickCount)
            let values = from <= last ? (from...last).map { curve.planValue(tick: $0) } : []
            let reply = try await client.plan(connection, holder: id, token: token, ttlMs: ttlMs, leadMs: lead, generation: info.generation, from: from, values: values)
            if reply.code == "stale" { logger.debug("the run changed while its plan was computed; planned again next cycle", metadata: ["run": "\(run)"]) }
            guard reply.code == "ok", let start = reply.startMs else { return }
            if info.state == .pending {
                // A pending run has no start yet, so `from` was 0: the call that started it also
                // published ticks 0 through the horizon.
                logger.info("run started", metadata: ["run": "\(run)", "start_in_ms": "\(start - reply.nowMs)"])
            }
            try await client.reap(connection)
            if info.state == .running, try await abortOnFailedThreshold(info, client: client, nowMs: reply.nowMs, startMs: start) { return }
            await compactIfDue(info, client: client, startMs: start)
            // The run is over once its last granted tick has ended, plus a grace for the
            // workers' last iterations and flushes.
            let endTick = min(info.stopTick, curve.tickCount)
            let endMs = start + min(endTick * tickMs, curve.durationMs)
            let grace = max(2000, 2 * tickMs)
            if reply.nowMs >= endMs + grace {
                let (state, _) = try await client.stop(connection, mode: "finish", who: id)
                logger.info("run ended", metadata: ["run": "\(run)", "state": "\(state.rawValue)"])
                await compactIfDue(info, client: client, startMs: start, final: true)
                try await RunStore.deactivate(run, on: connection)
                _ = curves.withLock { $0.removeValue(forKey: run) }
            }
        case .finished, .stopped, .aborted, .failed:
            // Best effort: an ended run whose keys are broken is still taken out of the active set.
            _ = try? await client.reap(connection)
            try await RunStore.deactivate(run, on: connection)
            _ = curves.withLock { $0.removeValue(forKey: run) }
            _ = lastCompaction.withLock { $0.removeValue(forKey: run) }
        }
    }

    /// Evaluates the run's `abortOnFail` thresholds whose delay has passed on its merged
    /// metrics so far; aborts the run when one fails (a threshold without data yet waits).
    func abortOnFailedThreshold(_ info: RunInfo, client: RunClient, nowMs: Int64, startMs: Int64) async throws -> Bool {
        let elapsed = nowMs - startMs
        let due = info.definition.thresholds.filter { $0.abortOnFail && elapsed >= $0.delayAbortEvalMs }
        guard !due.isEmpty, elapsed > 0 else { return false }
        let totals = try await connection.send(["HGETALL", RunKeys(run: info.id).totals]).hash ?? [:]
        // Metrics reach Redis about a second after they happen (flushes): `rate` is measured over
        // the time they cover, not to now.
        let covered = Double(max(1000, elapsed - 2000)) / 1000
        let failed = ThresholdEvaluator.evaluate(due, totals: totals, durationS: covered).filter { $0.value != nil && !$0.ok }
        guard let first = failed.first else { return false }
        let reason = "threshold \(first.threshold) failed: \(first.shown)"
        logger.warning("aborting a run: a threshold with abortOnFail failed", metadata: ["run": "\(info.id)", "threshold": "\(first.threshold)", "value": "\(first.shown)"])
        try await client.abort(connection, who: id, reason: reason)
        try await RunStore.deactivate(info.id, on: connection)
        _ = curves.withLock { $0.removeValue(forKey: info.id) }
        return true
    }

    /// The horizon when none is given: the leadership TTL and 2 s (see `horizon`).
    static func defaultHorizon(leaderTTL: Duration) -> Duration { max(.seconds(2), leaderTTL + .seconds(2)) }

    /// Ticks published ahead of the current one: the horizon, and never fewer than 10.
    func horizonTicks(tickMs: Int64) -> Int64 { Supervisor.horizonTicks(horizon, tickMs: tickMs) }

    /// Ticks of `tickMs` that cover `horizon`, and never fewer than 10.
    static func horizonTicks(_ horizon: Duration, tickMs: Int64) -> Int64 {
        let ms = horizon.components.seconds * 1000 + horizon.components.attoseconds / 1_000_000_000_000_000
        return max(10, (ms + tickMs - 1) / tickMs)
    }

    func serverNowMs() async throws -> Int64? {
        try await connection.send(["TIME"]).timeMs
    }
}
