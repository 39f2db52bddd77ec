import AsyncHTTPClient
import Foundation
import J4Core
import J4Scenario
import J4Redis
import Logging
import Synchronization

/// The connections a worker process shares between its runs: one per concern, so that a slow
/// metrics flush never delays a lease renewal.
public struct WorkerConnections: Sendable {
    /// Leases: acquire, renew, release (latency-critical).
    public let lease: RedisConnection
    /// Claims of ticks.
    public let claim: RedisConnection
    /// Metrics flushes.
    public let metrics: RedisConnection
    /// Discovery and reads.
    public let control: RedisConnection

    /// Four connections to `endpoint`, named after the worker.
    public init(endpoint: RedisEndpoint, worker: String) {
        func c(_ role: String) -> RedisConnection {
            RedisConnection(endpoint: endpoint, options: RedisConnectionOptions(clientName: "j4-worker:\(worker):\(role)"))
        }
        lease = c("lease")
        claim = c("claim")
        metrics = c("metrics")
        control = c("control")
    }
}

/// One worker's part in one run: its leases, its claims, the iterations or VUs it runs, and
/// its metrics. Its parts live in extensions, one responsibility each: leases
/// (`RunWorker+Leases`), ticks and claims (`+Ticks`), arrival-rate firing (`+ArrivalRate`),
/// the VU model (`+VUs`) and metric flushes (`+Flush`). The decisions they take are pure
/// types with the clock as a parameter: ``LeaseTable``, ``Admission``, ``WorkerPhase``.
///
/// ## Fencing
///
/// Leases are trusted only until a local deadline that comes before Redis' expiry
/// (``LeaseTable``), so a shard whose lease cannot be confirmed stops producing load before
/// Redis would give it to another worker. Grants themselves are fenced in Redis: claim.lua
/// grants a (tick, shard) once, to the token that owns an unexpired lease. So a lease handed
/// back on purpose (leaving, shedding) is handed back at once, and the ticks already granted
/// with it still run here: nobody else can be granted them.
final class RunWorker: Sendable {
    struct State {
        var leases = LeaseTable()
        var phase = WorkerPhase.running
        var runState: RunState = .pending
        var startMs: Int64?
        var stopTick: Int64
        /// The last tick whose shards the tick loop has captured for a claim.
        var claimingTick: Int64 = -1
        /// True once release.lua has taken this worker out of the run's live set.
        var leftLiveSet = false
        var inFlight = 0
        var tickLoop: Task<Void, Never>?
        var fires: [Int: Task<Void, Never>] = [:]
        var nextFireID = 0
        /// VU number → the end of the last tick it was granted for.
        var vuDeadlines: [Int64: ContinuousClock.Instant] = [:]
        var vuTasks: [Int64: Task<Void, Never>] = [:]
    }

    let run: String
    let worker: String
    let definition: RunDefinition
    /// The run's curve with its live scales, and the generation it was read at.
    let curveState: Mutex<(generation: Int64, curve: Curve)>
    var curve: Curve { curveState.withLock { $0.curve } }
    let striping: Striping
    let scenario: Scenario
    let client: RunClient
    let connections: WorkerConnections
    let http: HTTPClient
    let logger: Logger
    let clock = ServerClock()
    let metrics = MetricsRecorder()
    let nonce = String(UInt64.random(in: 0...UInt64.max), radix: 36)
    let state: Mutex<State>
    /// Arrival-rate: VUs set up here and idle, how many exist, and numbers free for reuse.
    let vuPool = Mutex<(idle: [PooledVU], count: Int64, free: [Int64])>(([], 0, []))
    let pools: PoolKeeper
    let telemetry: Telemetry
    let flushSeq = Atomic<Int64>(0)
    /// Set when a claim reply shows room for more shards: the lease loop acquires at once.
    let leaseWake = Atomic<Bool>(false)
    let pendingFlushes = Mutex<[(seq: Int64, second: Int64, fields: [(String, Int64)])]>([])

    var ttl: Duration { .milliseconds(definition.leaseTTLMs) }
    var margin: Duration { max(.milliseconds(100), ttl / 10) }
    var tick: Duration { .milliseconds(definition.tickMs) }
    /// The rule that starts or drops each arrival-rate iteration.
    var admission: Admission { Admission(tick: tick, maxInFlight: definition.maxInFlight) }

    let caps: WorkerCaps
    let targets: TargetGuard
    let reportedCorrupt = Atomic<Bool>(false)
    /// Caps this run has met here, each reported once (an event and a log line).
    let capsMet = Mutex<Set<String>>([])

    init(info: RunInfo, worker: String, scenario: Scenario, connections: WorkerConnections, http: HTTPClient, logger: Logger, caps: WorkerCaps) {
        run = info.id
        self.caps = caps
        self.worker = worker
        definition = info.definition
        curveState = Mutex((info.generation, info.curve))
        striping = Striping(shards: info.definition.shards)
        self.scenario = scenario
        client = RunClient(run: info.id)
        self.connections = connections
        self.http = http
        var l = logger
        l[metadataKey: "run"] = "\(info.id)"
        self.logger = l
        state = Mutex(State(stopTick: min(info.stopTick, info.ticks)))
        pools = PoolKeeper(connection: connections.control, worker: worker, ttl: .milliseconds(info.definition.leaseTTLMs), logger: l)
        telemetry = Telemetry(run: info.id, scenario: info.definition.scenario)
        let control = connections.control
        targets = TargetGuard(allowlist: caps.limits.allowlist) { [l, worker, run] refusal in
            l.error("refused a target outside --allow-target; nothing is sent to it", metadata: ["target": "\(refusal.target)", "reason": "\(refusal.reason)"])
            let event = RunStore.eventCommand(run, type: "target_refused", ["worker", worker, "target", refusal.target, "reason", refusal.reason])
            Task { _ = try? await control.send(event) }
        }
    }

    /// Reports the first time this run meets one of the worker's caps here.
    func capMet(_ cap: String, _ value: Int) {
        guard capsMet.withLock({ $0.insert(cap).inserted }) else { return }
        logger.warning("this worker's cap holds the run back", metadata: ["cap": "\(cap)", "value": "\(value)"])
        let event = RunStore.eventCommand(run, type: "capped", ["worker", worker, "cap", cap, "value", String(value)])
        Task { [connections] in _ = try? await connections.control.send(event) }
    }

    // MARK: - Life

    /// Runs this worker's part until the run ends or ``leave()`` is called; then releases every
    /// lease and flushes the last metrics.
    func execute() async {
        let leaseTask = Task { await leaseLoop() }
        let flushTask = Task { await flushLoop() }
        let poolTask = Task { await pools.renewLoop() }
        // Claims go out on time, whatever runs on the shared executor (TimingExecutor).
        let tickTask = Task(executorPreference: TimingExecutor.shared) { [self] in await tickLoop() }
        state.withLock { $0.tickLoop = tickTask }
        await tickTask.value
        // Wait for every tick still firing and every VU still looping.
        while true {
            let pending = state.withLock { s in Array(s.fires.values) + Array(s.vuTasks.values) }
            if pending.isEmpty { break }
            for t in pending { await t.value }
        }
        leaseTask.cancel()
        await leaseTask.value
        flushTask.cancel()
        await flushTask.value
        await endIdleVUs()
        poolTask.cancel()
        await poolTask.value
        await handOff()
        await flushNow(final: true)
        telemetry.close()
        logger.info("worker left run", metadata: ["worker": "\(worker)"])
    }

    /// Graceful hand-off (SIGTERM, scale-in). Arrival-rate: the next tick is claimed if it is
    /// not yet, then every lease is handed back at once, so other workers can take the shards
    /// while this one still runs the current and the next tick; nothing later is claimed.
    /// VUs end after their current iteration, and only then are their shards handed back,
    /// so that no VU runs on two workers at once.
    func leave() {
        let current = currentTick() ?? -1
        let tickTask: Task<Void, Never>? = state.withLock { s in
            s.phase = s.phase.leaving(at: current, arrivalRate: definition.model == .arrivalRate)
            let now = ContinuousClock.now
            for j in s.vuDeadlines.keys { s.vuDeadlines[j] = now }
            return s.tickLoop
        }
        tickTask?.cancel()
    }

    /// This run's data in Redis cannot be used: it is marked failed (once, with the reason),
    /// and this worker stops it here at once; its other runs go on.
    func corrupt(_ e: CorruptRunError) async {
        guard !reportedCorrupt.exchange(true, ordering: .relaxed) else { return }
        logger.error("failing a run whose data cannot be used; other runs go on", metadata: ["reason": "\(e.reason)"])
        await RunStore.markFailed(run, reason: e.reason, by: worker, deactivate: false, on: connections.control)
        abort()
    }

    /// The kill switch: every iteration in flight is cancelled, nothing more is claimed.
    func abort() {
        let tasks = state.withLock { s in
            s.phase = .aborted
            s.runState = .aborted
            return Array(s.fires.values) + Array(s.vuTasks.values) + (s.tickLoop.map { [$0] } ?? [])
        }
        for t in tasks { t.cancel() }
    }

    /// A stop or abort heard on the signals channel (the same facts also reach the worker
    /// through its next claim or renew, should the message be lost).
    func signal(state runState: RunState, stopTick: Int64) {
        // Aborted, or failed (its data unusable, or over the cluster's ceiling): stop at once.
        if runState == .aborted || runState == .failed { abort() }
        state.withLock { s in
            s.stopTick = min(s.stopTick, stopTick)
            if s.runState.isLive, runState != .aborted { s.runState = runState }
        }
    }

    // MARK: - Time

    func currentTick(at instant: ContinuousClock.Instant = .now) -> Int64? {
        tick(at: instant, start: state.withLock { $0.startMs })
    }

    /// The run's tick at `instant` for a run that started at `start` (server ms); for callers
    /// that hold the state lock already.
    func tick(at instant: ContinuousClock.Instant, start: Int64?) -> Int64? {
        guard let start, let now = clock.serverMs(at: instant) else { return nil }
        return Int64(((now - Double(start)) / Double(definition.tickMs)).rounded(.down))
    }

    func tickStart(_ n: Int64) -> ContinuousClock.Instant? {
        guard let start = state.withLock({ $0.startMs }) else { return nil }
        return clock.instant(forServerMs: Double(start + n * definition.tickMs))
    }

    func tickEnd(_ n: Int64) -> ContinuousClock.Instant? {
        guard let start = state.withLock({ $0.startMs }) else { return nil }
        let end = min((n + 1) * definition.tickMs, curve.durationMs)
        return clock.instant(forServerMs: Double(start + end))
    }

    static func sleep(until instant: ContinuousClock.Instant) async throws {
        if instant > .now { try await Task.sleep(until: instant, tolerance: .microseconds(500), clock: .continuous) }
    }
}
