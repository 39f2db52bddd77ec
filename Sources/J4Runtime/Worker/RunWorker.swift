import AsyncHTTPClient
import Foundation
import J4Core
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
/// its metrics.
///
/// ## Fencing
///
/// A lease confirmed by a reply to a request *sent* at local instant `s` is trusted only
/// until `s + TTL − margin` on the monotonic clock: Redis set its expiry to (its time when the
/// script ran) + TTL, which is later than `s` on any clock that agrees on durations. So a
/// shard whose lease cannot be confirmed stops producing load before Redis would give it to
/// another worker, whether or not Redis can be reached. Grants themselves are fenced in
/// Redis: claim.lua grants a (tick, shard) once, to the token that owns an unexpired lease.
/// So a lease handed back on purpose (leaving, shedding) is handed back at once, and the
/// ticks already granted with it still run here: nobody else can be granted them.
final class RunWorker: Sendable {
    struct Lease {
        var token: String
        var validUntil: ContinuousClock.Instant
        /// The last tick claimed with this lease (-1: none).
        var claimedThrough: Int64 = -1
        /// Handed back on leaving: no longer renewed or claimed with, but the ticks already
        /// granted with it still run (a grant is this worker's alone).
        var handedOff = false
    }

    struct State {
        var leases: [Int: Lease] = [:]
        var cap = Int.max
        var runState: RunState = .pending
        var startMs: Int64?
        var stopTick: Int64
        /// The last tick whose shards the tick loop has captured for a claim.
        var claimingTick: Int64 = -1
        var leaving = false
        var leaveTick = Int64.max
        /// True once release.lua has taken this worker out of the run's live set.
        var leftLiveSet = false
        var aborted = false
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
    /// How far behind its intended start an iteration may still start: max(20 ms, tick / 10).
    var lateTolerance: Duration { max(.milliseconds(20), tick / 10) }

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
        let tickTask = Task { await tickLoop() }
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
    /// VUs end after their current iteration; their shards are handed back at once.
    func leave() {
        let current = currentTick() ?? -1
        let lastTick = definition.model == .arrivalRate ? current + 1 : current
        let tickTask: Task<Void, Never>? = state.withLock { s in
            s.leaving = true
            s.leaveTick = lastTick
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
            s.aborted = true
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
        guard let start = state.withLock({ $0.startMs }), let now = clock.serverMs(at: instant) else { return nil }
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

    // MARK: - Leases

    func leaseLoop() async {
        let interval = ttl / 3
        var first = true
        var fastPolls = 15
        var sinceRenewal = 0
        while !Task.isCancelled {
            let (held, wantMore, leaving) = state.withLock { s in
                let mine = s.leases.filter { !$0.value.handedOff }.map { ($0.key, $0.value.token) }
                return (mine, mine.count < s.cap, s.leaving)
            }
            if leaving && held.isEmpty { return }
            let take = (first || wantMore) && !leaving
            first = false
            // Claims renew the leases they are made with; while they keep every lease fresh,
            // a renewal every other cycle is enough to keep the fair share and liveness current.
            let now = ContinuousClock.now
            // (Skipped only while every lease stays trusted past the next cycle, once in a row.)
            let freshByClaims = !take && !leaving && !held.isEmpty && sinceRenewal < 1
                && state.withLock { s in s.leases.values.allSatisfy { $0.handedOff || $0.validUntil - now > interval + .milliseconds(100) } }
            if freshByClaims {
                sinceRenewal += 1
                await leaseSleep(interval)
                continue
            }
            sinceRenewal = 0
            var sent = ContinuousClock.now
            do {
                var reply = take
                    ? try await client.acquire(connections.lease, worker: worker, nonce: nonce, take: true, held: held)
                    : try await client.renew(connections.lease, worker: worker, held: held)
                clock.observe(sent: sent, received: .now, serverMs: reply.nowMs)
                // The fair share grew (a worker left or died): take the room now, not a cycle later.
                if !take, !leaving, reply.state == .running || reply.state == .pending, reply.held.count < reply.cap {
                    await apply(reply, sent: sent)
                    sent = ContinuousClock.now
                    let mine = state.withLock { s in s.leases.filter { !$0.value.handedOff }.map { ($0.key, $0.value.token) } }
                    reply = try await client.acquire(connections.lease, worker: worker, nonce: nonce, take: true, held: mine)
                    clock.observe(sent: sent, received: .now, serverMs: reply.nowMs)
                }
                await apply(reply, sent: sent)
                if !reply.state.isLive { return }
            } catch let e as CorruptRunError {
                await corrupt(e)
                return
            } catch {
                logger.warning("lease renewal failed; leases self-fence at their deadline", metadata: ["error": "\(error)"])
            }
            // Until it holds its fair share, a worker asks again soon, so a run's shards spread quickly.
            let hungry = fastPolls > 0 && state.withLock { s in s.leases.values.filter { !$0.handedOff }.count < s.cap && !s.leaving }
            if hungry { fastPolls -= 1 }
            await leaseSleep(hungry ? min(interval, .milliseconds(200)) : interval)
        }
    }

    /// Sleeps `d`, or less when a claim reply says there is room for more shards.
    func leaseSleep(_ d: Duration) async {
        let until = ContinuousClock.now + d
        while ContinuousClock.now < until, !Task.isCancelled {
            if leaseWake.exchange(false, ordering: .relaxed) { return }
            try? await Task.sleep(for: min(.milliseconds(50), until - .now))
        }
    }

    func apply(_ reply: LeaseReply, sent: ContinuousClock.Instant) async {
        let validUntil = sent + ttl - margin
        let (newShards, claimedUpTo, abortNow, toRelease) = state.withLock { s -> ([Int], Int64, Bool, [(Int, String)]) in
            var fresh: [Int] = []
            for shard in reply.lost where s.leases[shard]?.handedOff != true { s.leases[shard] = nil }
            for (shard, h) in reply.held {
                if var lease = s.leases[shard], lease.token == h.token, !lease.handedOff {
                    lease.validUntil = validUntil
                    s.leases[shard] = lease
                } else {
                    s.leases[shard] = Lease(token: h.token, validUntil: validUntil)
                    fresh.append(shard)
                }
            }
            s.cap = reply.cap
            // A reply sent before an abort (heard on the signals channel) must not undo it.
            if !s.aborted { s.runState = reply.state }
            s.stopTick = min(s.stopTick, reply.stopTick)
            if s.startMs == nil { s.startMs = reply.startMs }
            let abortNow = (reply.state == .aborted || reply.state == .failed) && !s.aborted
            // Shed down to the fair share, the highest shards first: handed back now, so others
            // can claim the ticks after those already granted here, which still run here.
            let active = s.leases.filter { !$0.value.handedOff }.keys.sorted()
            var release: [(Int, String)] = []
            if active.count > s.cap {
                for shard in active.suffix(active.count - s.cap) {
                    s.leases[shard]?.handedOff = true
                    release.append((shard, s.leases[shard]!.token))
                }
            }
            // Forget handed-off leases once their last granted tick is over.
            if let start = reply.startMs {
                let nowTick = Int64((Double(reply.nowMs - start) / Double(definition.tickMs)).rounded(.down))
                for (shard, lease) in s.leases where lease.handedOff && lease.claimedThrough < nowTick - 1 && !release.contains(where: { $0.0 == shard }) {
                    s.leases[shard] = nil
                }
            }
            telemetry.gauge("j4_leases_held", Double(s.leases.values.filter { !$0.handedOff }.count))
            return (fresh, s.claimingTick, abortNow, release)
        }
        if !newShards.isEmpty { telemetry.count("j4_leases_acquired_total", [], Int64(newShards.count)) }
        if !reply.lost.isEmpty { telemetry.count("j4_leases_lost_total", [], Int64(reply.lost.count)) }
        if !toRelease.isEmpty { telemetry.count("j4_leases_shed_total", [], Int64(toRelease.count)) }
        if abortNow { abort() }
        if reply.generation > curveState.withLock({ $0.generation }) { await refreshCurve() }
        if !toRelease.isEmpty {
            do {
                try await client.release(connections.lease, worker: worker, reason: "shed", shards: toRelease)
                logger.info("shed leases", metadata: ["shards": "\(toRelease.map(\.0))"])
            } catch {
                logger.warning("could not release shed leases; they expire after their TTL", metadata: ["error": "\(error)"])
            }
        }
        if !newShards.isEmpty {
            logger.debug("acquired leases", metadata: ["shards": "\(newShards)"])
            await catchUp(newShards, throughTick: claimedUpTo)
        }
    }

    /// Claims, for leases just acquired, the ticks the tick loop has already claimed without them.
    func catchUp(_ shards: [Int], throughTick last: Int64) async {
        guard let current = currentTick(), last >= 0 else { return }
        var n = max(0, current)
        while n <= last {
            await claimAndFire(tick: n, shards: shards)
            n += 1
        }
    }

    // MARK: - Ticks

    func tickLoop() async {
        // Wait for the run to start (the lease loop learns start_ms from Redis).
        while state.withLock({ $0.startMs == nil }) {
            if Task.isCancelled || state.withLock({ !$0.runState.isLive }) { return }
            try? await Task.sleep(for: .milliseconds(50))
        }
        guard let now = currentTick() else { return }
        var n = max(0, now)
        // Claims go out a little before their tick, so that its first iterations are on time;
        // a `j4 stop` that comes later than this before a boundary ends the run one tick later.
        let claimLead = min(tick / 4, .milliseconds(200))
        while true {
            let (stop, live, leaving, leaveTick) = state.withLock { ($0.stopTick, $0.runState.isLive, $0.leaving, $0.leaveTick) }
            guard live, n < stop, n < curve.tickCount else { return }
            if leaving {
                await claimThrough(leaveTick, from: n)
                await handOff()
                return
            }
            guard let start = tickStart(n) else { return }
            do { try await RunWorker.sleep(until: start - claimLead) } catch {
                // Cancelled: by leave() (claim through the last tick, above) or by abort().
                if state.withLock({ $0.leaving }) { continue }
                return
            }
            let shards = state.withLock { s -> [Int] in
                s.claimingTick = n
                return s.leases.filter { !$0.value.handedOff && $0.value.validUntil > start }.keys.sorted()
            }
            if !shards.isEmpty { await claimAndFire(tick: n, shards: shards) }
            if let current = currentTick(), current > n + 1 { n = current } else { n += 1 }
        }
    }

    /// Reads the run's scales again (after `j4 scale` bumped its generation).
    func refreshCurve() async {
        guard let info = try? await RunStore.info(run, on: connections.control) else { return }
        curveState.withLock { c in
            if info.generation > c.generation { c = (info.generation, info.curve) }
        }
        state.withLock { $0.stopTick = min($0.stopTick, info.stopTick) }
    }

    /// On leaving: claims the ticks from `first` through `last` that are not claimed yet.
    func claimThrough(_ last: Int64, from first: Int64) async {
        var n = max(first, (currentTick() ?? 0))
        while n <= last {
            let shards = state.withLock { s -> [Int] in
                guard n > s.claimingTick, n < s.stopTick else { return [] }
                s.claimingTick = n
                return s.leases.filter { !$0.value.handedOff && $0.value.validUntil > .now }.keys.sorted()
            }
            if !shards.isEmpty { await claimAndFire(tick: n, shards: shards) }
            n += 1
        }
    }

    /// Hands every lease back (token-checked) and leaves the run's live set; ticks already
    /// granted keep running.
    func handOff() async {
        let held = state.withLock { s -> [(Int, String)]? in
            var out: [(Int, String)] = []
            for (shard, lease) in s.leases where !lease.handedOff {
                s.leases[shard]?.handedOff = true
                out.append((shard, lease.token))
            }
            // Leave the live set once; later calls have nothing to hand back.
            if out.isEmpty && s.leftLiveSet { return nil }
            s.leftLiveSet = true
            return out
        }
        guard let held else { return }
        do {
            try await client.release(connections.lease, worker: worker, reason: "shutdown", shards: held)
        } catch {
            logger.warning("could not release leases; they expire after their TTL", metadata: ["error": "\(error)"])
        }
    }

    /// Claims tick `n` for `shards` and starts firing what was granted.
    func claimAndFire(tick n: Int64, shards: [Int]) async {
        let pairs = state.withLock { s in shards.compactMap { sh in s.leases[sh].map { (sh, $0.token) } } }
        guard !pairs.isEmpty else { return }
        var reply: ClaimReply?
        var sent = ContinuousClock.now
        for attempt in 0..<2 where reply == nil {
            sent = ContinuousClock.now
            do {
                let r = try await client.claim(connections.claim, worker: worker, tick: n, shards: pairs)
                clock.observe(sent: sent, received: .now, serverMs: r.nowMs)
                telemetry.time("j4_claim_duration_seconds", nanoseconds: Telemetry.nanos(sent.duration(to: .now)))
                reply = r
            } catch let e as CorruptRunError {
                await corrupt(e)
                return
            } catch {
                logger.warning("claim failed", metadata: ["tick": "\(n)", "attempt": "\(attempt)", "error": "\(error)"])
            }
        }
        guard let reply else { return }
        // A claim is also a heartbeat: the leases it extended are trusted as after a renewal.
        let validUntil = sent + ttl - margin
        let room = state.withLock { s -> Bool in
            defer { if let cap = reply.cap { s.cap = cap } }
            s.stopTick = min(s.stopTick, reply.stopTick)
            for (shard, token) in pairs where reply.renewed.contains(shard) {
                if var lease = s.leases[shard], lease.token == token, !lease.handedOff {
                    lease.validUntil = max(lease.validUntil, validUntil)
                    s.leases[shard] = lease
                }
            }
            // The fair share grew (a worker died or left): take the room now, not at the next renewal.
            guard let cap = reply.cap, !s.leaving else { return false }
            return s.leases.values.filter { !$0.handedOff }.count < cap
        }
        if room { leaseWake.store(true, ordering: .relaxed) }
        if reply.code == "aborted" { abort() }
        guard reply.code == "ok" else {
            logger.debug("claim refused", metadata: ["tick": "\(n)", "code": "\(reply.code)"])
            return
        }
        let granted = Set(reply.statuses.filter { $0.value == .granted }.keys)
        guard !granted.isEmpty else { return }
        state.withLock { s in
            for shard in granted {
                if var lease = s.leases[shard] {
                    lease.claimedThrough = max(lease.claimedThrough, n)
                    s.leases[shard] = lease
                }
            }
        }
        let task: Task<Void, Never>
        if definition.model == .arrivalRate {
            task = Task { await fireIterations(tick: n, shards: granted, range: reply.first..<reply.end) }
        } else {
            task = Task { await fireVUs(tick: n, shards: granted, vus: reply.first) }
        }
        state.withLock { s in
            let id = s.nextFireID
            s.nextFireID += 1
            s.fires[id] = task
            Task { await task.value; _ = state.withLock { $0.fires.removeValue(forKey: id) } }
        }
    }

    // MARK: - Arrival rate

    /// What a VU's custom metrics, steps and checks record into.
    var scenarioMetrics: ScenarioMetrics {
        ScenarioMetrics(recorder: metrics, telemetry: telemetry) { [clock] in Int64((clock.serverMs(at: .now) ?? 0) / 1000) }
    }

    func makeContext(vu: Int64) -> VUContext {
        VUContext(run: run, worker: worker, vu: vu, params: definition.params, logger: logger, http: http, metrics: scenarioMetrics, pools: pools, targets: targets)
    }

    /// Arrival-rate: an idle VU, or a new one set up now. At most `maxInFlight` exist, since
    /// each runs one iteration at a time and no more than that many are in flight.
    func checkoutVU() async throws -> PooledVU {
        while let taken = vuPool.withLock({ p in p.idle.popLast() }) {
            if taken.context.holdsTrusted { return taken }
            // A pool item of this VU may be someone else's now: end it, set up another.
            await taken.context.end()
            vuPool.withLock { p in
                p.count -= 1
                p.free.append(taken.context.vu)
            }
        }
        let number = vuPool.withLock { p -> Int64 in
            p.count += 1
            return p.free.popLast() ?? (p.count - 1)
        }
        let context = makeContext(vu: number)
        do {
            return PooledVU(context: context, body: try await context.run { try await scenario.setup(context) })
        } catch {
            await context.end()
            vuPool.withLock { p in
                p.count -= 1
                p.free.append(number)
            }
            throw SetupFailed(underlying: error)
        }
    }

    func checkinVU(_ vu: PooledVU) {
        vuPool.withLock { $0.idle.append(vu) }
    }

    /// Ends every arrival-rate VU (all are idle once no iteration is in flight).
    func endIdleVUs() async {
        let idle = vuPool.withLock { p in
            defer { p.idle = []; p.count = 0; p.free = [] }
            return p.idle
        }
        for vu in idle { await vu.context.end() }
    }

    func fireIterations(tick n: Int64, shards: Set<Int>, range: Range<Int64>) async {
        // A grant that does not match this worker's curve means a scale it has not heard of yet.
        var curve = self.curve
        if curve.firstIteration(ofTick: n) != range.lowerBound || curve.firstIteration(ofTick: n + 1) != range.upperBound {
            await refreshCurve()
            curve = self.curve
        }
        guard let start = state.withLock({ $0.startMs }), let end = tickEnd(n) else { return }
        let S = Int64(definition.shards)
        let startMs = Double(start)
        // Per-tick accounting next to the per-second counters (flush.lua puts t:* in the ticks hash).
        let tickStarted = "t:\(n):s", tickDropped = "t:\(n):d"
        var schedule = TickSchedule(curve: curve, tick: n)
        await withDiscardingTaskGroup { group in
            var dropped: [Int64: Int64] = [:]  // second → count
            var why: [String: Int64] = [:]  // reason → count, for the log
            var g = range.lowerBound
            while g < range.upperBound {
                defer { g += 1 }
                let shard = Int(g % S)
                guard shards.contains(shard) else { continue }
                let intendedMs = startMs + schedule.startMs(ofIteration: g)
                let second = Int64(intendedMs / 1000)
                guard let at = clock.instant(forServerMs: intendedMs) else {
                    dropped[second, default: 0] += 1
                    why["no clock", default: 0] += 1
                    continue
                }
                if at > .now + .microseconds(500) {
                    do { try await RunWorker.sleep(until: at) } catch {}
                }
                let now = ContinuousClock.now
                // Late is dropped, not bunched: an iteration more than the tolerance behind its
                // intended start (a takeover mid-tick, a stalled process) is counted as dropped.
                let late = at.duration(to: now) > lateTolerance
                let refusal: String? = late ? "late" : state.withLock { s -> String? in
                    if s.aborted || Task.isCancelled { return "aborted" }
                    if n >= s.stopTick || (s.leaving && n > s.leaveTick) || now >= end { return "tick over" }
                    guard let lease = s.leases[shard], lease.handedOff || lease.validUntil > now else { return "lease" }
                    if s.inFlight >= definition.maxInFlight { return "maxInFlight" }
                    if !caps.takeVU() { return "max-vus" }
                    if !caps.takeStart(second: second) {
                        caps.returnVU()
                        return "max-rate"
                    }
                    s.inFlight += 1
                    return nil
                }
                if let refusal {
                    dropped[second, default: 0] += 1
                    why[refusal, default: 0] += 1
                    if refusal == "max-rate" { capMet(refusal, caps.limits.maxRate ?? 0) }
                    if refusal == "max-vus" { capMet(refusal, caps.limits.maxVUs ?? 0) }
                    continue
                }
                metrics.add("started", second: second)
                metrics.add(tickStarted, second: second)
                telemetry.scheduleLag.recordNanoseconds(max(0, Telemetry.nanos(at.duration(to: now))))  // may start up to 0.5 ms early; a negative duration breaks the Prometheus histogram
                let iteration = g
                group.addTask { [self] in
                    var ok = true
                    var errorClassName: String?
                    var traceID = ""
                    var vuNumber: Int64 = -1
                    do {
                        let vu = try await checkoutVU()
                        defer { checkinVU(vu) }
                        let context = IterationContext(vu: vu.context, iteration: iteration, tick: n, shard: shard)
                        traceID = context.traceID
                        vuNumber = vu.context.vu
                        try await vu.context.run { try await runIteration(vu.body, context) }
                    } catch {
                        ok = false
                        errorClassName = Task.isCancelled ? "aborted" : (error as? SetupFailed).map { $0.underlying is TargetRefused ? "target_refused" : "setup" } ?? errorClass(of: error)
                        // A refused target is logged once, by the guard, not once per iteration.
                        if let failed = error as? SetupFailed, !(failed.underlying is TargetRefused) {
                            logger.warning("VU setup failed", metadata: ["error": "\(failed.underlying)"])
                        }
                    }
                    let doneAt = ContinuousClock.now
                    let latency = at.duration(to: doneAt)
                    metrics.finished(second: second, ok: ok, errorClass: errorClassName, latencyUs: MetricsRecorder.micros(latency))
                    metrics.noteSlow(latencyUs: MetricsRecorder.micros(latency), member: "\(traceID) \(worker) \(vuNumber) \(iteration) \(Int64(intendedMs))")
                    telemetry.iteration(ok: ok, took: latency)
                    state.withLock { $0.inFlight -= 1 }
                    caps.returnVU()
                }
            }
            if !why.isEmpty {
                logger.info("dropped iterations", metadata: ["tick": "\(n)", "why": "\(why.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", "))"])
            }
            for (second, count) in dropped {
                metrics.add("dropped", count, second: second)
                metrics.add(tickDropped, count, second: second)
                telemetry.iterationsDropped.increment(by: count)
            }
        }
    }

    // MARK: - VUs

    func fireVUs(tick n: Int64, shards: Set<Int>, vus: Int64) async {
        guard let begin = tickStart(n), let end = tickEnd(n) else { return }
        let S = Int64(definition.shards)
        let wanted = (0..<vus).filter { shards.contains(Int($0 % S)) }
        // Extend the VUs that continue into this tick now, so none ends at the boundary.
        state.withLock { s in
            for j in wanted where s.vuTasks[j] != nil { s.vuDeadlines[j] = max(s.vuDeadlines[j] ?? end, end) }
        }
        do { try await RunWorker.sleep(until: begin) } catch {}
        var capped = false
        let running = state.withLock { s -> Int in
            guard !s.aborted, !(s.leaving && n > s.leaveTick), n < s.stopTick else { return s.vuTasks.count }
            for j in wanted {
                if s.vuTasks[j] == nil {
                    guard caps.takeVU() else {
                        capped = true
                        continue
                    }
                    s.vuTasks[j] = Task { await runVU(j) }
                }
                s.vuDeadlines[j] = max(s.vuDeadlines[j] ?? end, end)
            }
            return s.vuTasks.count
        }
        if capped { capMet("max-vus", caps.limits.maxVUs ?? 0) }
        telemetry.gauge("j4_vus", Double(running))
    }

    /// One VU of a `vus` run on this worker: set up, loop while the curve wants it and its
    /// shard's lease is trusted, then end (its routines cancelled, its teardown hooks run).
    func runVU(_ j: Int64) async {
        let context = makeContext(vu: j)
        await loopVU(j, context)
        await context.end()
        caps.returnVU()
        let running = state.withLock { s in
            s.vuTasks.removeValue(forKey: j)
            return s.vuTasks.count
        }
        telemetry.gauge("j4_vus", Double(running))
    }

    func loopVU(_ j: Int64, _ context: VUContext) async {
        let shard = Int(j % Int64(definition.shards))
        let body: IterationBody
        do {
            body = try await context.run { try await scenario.setup(context) }
        } catch {
            let second = Int64((clock.serverMs(at: .now) ?? 0) / 1000)
            metrics.add("started", second: second)
            metrics.finished(second: second, ok: false, errorClass: error is TargetRefused ? "target_refused" : "setup", latencyUs: 0)
            if !(error is TargetRefused) { logger.warning("VU setup failed", metadata: ["vu": "\(j)", "error": "\(error)"]) }
            return
        }
        var i: Int64 = 0
        while !Task.isCancelled {
            let began = ContinuousClock.now
            let go = state.withLock { s -> Bool in
                guard !s.aborted, let deadline = s.vuDeadlines[j], began < deadline, let lease = s.leases[shard], lease.validUntil > began,
                      context.holdsTrusted else {
                    s.vuDeadlines[j] = nil
                    return false
                }
                return true
            }
            guard go else { return }
            let second = Int64((clock.serverMs(at: began) ?? 0) / 1000)
            metrics.add("started", second: second)
            var ok = true
            var cls: String?
            let iterationContext = IterationContext(vu: context, iteration: i, tick: currentTick(at: began) ?? 0, shard: shard)
            do {
                try await context.run { try await runIteration(body, iterationContext) }
            } catch {
                ok = false
                cls = Task.isCancelled ? "aborted" : errorClass(of: error)
            }
            let took = began.duration(to: .now)
            metrics.finished(second: second, ok: ok, errorClass: cls, latencyUs: MetricsRecorder.micros(took))
            metrics.noteSlow(latencyUs: MetricsRecorder.micros(took), member: "\(iterationContext.traceID) \(worker) \(j) \(i) \(Int64(clock.serverMs(at: began) ?? 0))")
            telemetry.iteration(ok: ok, took: took)
            i += 1
        }
    }

    // MARK: - Metrics

    func flushLoop() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            await flushNow(final: false)
        }
    }

    /// Sends what was recorded, one flush per second of data; a failed flush is retried with
    /// the same sequence number (flush.lua counts it once).
    func flushNow(final: Bool) async {
        let fresh = metrics.drain(before: final ? nil : clock.serverMs(at: .now).map { Int64($0 / 1000) })
        pendingFlushes.withLock { p in
            for (second, fields) in fresh {
                let seq = flushSeq.add(1, ordering: .relaxed).newValue
                // max:w:<worker> = 1 marks this worker as active in that second (kept as a maximum).
                p.append((seq, second, fields + [("max:w:" + worker, 1)]))
            }
        }
        let attempts = final ? 3 : 1
        for attempt in 0..<attempts {
            let batch = pendingFlushes.withLock { $0 }
            if batch.isEmpty { return }
            var sent = 0
            for item in batch {
                do {
                    try await client.flush(connections.metrics, worker: worker, seq: item.seq, second: item.second, fields: item.fields)
                    sent += 1
                } catch let e as CorruptRunError {
                    // The run's metrics keys cannot take them: the run is failed, they are dropped.
                    await corrupt(e)
                    pendingFlushes.withLock { $0 = [] }
                    return
                } catch {
                    logger.warning("metrics flush failed; kept for the next one", metadata: ["error": "\(error)", "attempt": "\(attempt)"])
                    break
                }
            }
            pendingFlushes.withLock { $0.removeFirst(sent) }
            if final, sent < batch.count { try? await Task.sleep(for: .milliseconds(200)) }
        }
    }
}

/// A VU's setup threw: its iteration is counted failed with class `setup`.
struct SetupFailed: Error {
    let underlying: any Error
}

/// An arrival-rate VU of the pool: its context and iteration body. A class on purpose: a
/// closure kept in a generic container (an array of tuples) is reabstracted each time it
/// goes in and comes out, and the thunks pile up, one more layer per iteration (measured:
/// about 1 KiB of memory per iteration, and slower calls). A class reference is not.
final class PooledVU: Sendable {
    let context: VUContext
    let body: IterationBody

    init(context: VUContext, body: @escaping IterationBody) {
        self.context = context
        self.body = body
    }
}
