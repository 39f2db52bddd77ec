import J4Core
import J4Scenario

/// Arrival-rate: the pool of VUs that run iterations, and the loop that fires each granted
/// iteration at its intended start, or drops it with a reason.
extension RunWorker {
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

    /// One granted iteration, placed in time.
    struct Placed {
        let iteration: Int64
        let shard: Int
        let intendedMs: Double
        let second: Int64
        /// Its intended start on the local clock (nil: no clock sample yet).
        let at: ContinuousClock.Instant?
    }

    /// Fires the iterations of tick `n` granted to this worker (those of `shards` in `range`),
    /// each at its intended start.
    ///
    /// The loop sleeps until the next iteration is due, then takes as one batch every
    /// iteration of the tick due within ``fireWindow`` of then (more than one when the rate is
    /// high or the process woke late): one lock of the worker's state decides them all, in
    /// order, by ``Admission``, their counts go to the metrics once per second of the batch,
    /// and they are handed to the executor together, so a busy run wakes its threads once a
    /// window rather than once an iteration. An iteration may so start up to the window
    /// before its intended time, never before its tick (the batch waits for its first), and
    /// its latency is then measured from when it started.
    func fireIterations(tick n: Int64, shards: Set<Int>, range: Range<Int64>) async {
        // A grant that does not match this worker's curve means a scale it has not heard of yet.
        var curve = self.curve
        if curve.firstIteration(ofTick: n) != range.lowerBound || curve.firstIteration(ofTick: n + 1) != range.upperBound {
            await refreshCurve()
            curve = self.curve
        }
        guard let start = state.withLock({ $0.startMs }) else { return }
        let S = Int64(definition.shards)
        let startMs = Double(start)
        var schedule = TickSchedule(curve: curve, tick: n)
        let clock = self.clock
        // The next iteration of a held shard from `g` on, placed; nil past the range.
        func place(from g: inout Int64) -> Placed? {
            while g < range.upperBound {
                defer { g += 1 }
                let shard = Int(g % S)
                guard shards.contains(shard) else { continue }
                let intendedMs = startMs + schedule.startMs(ofIteration: g)
                return Placed(iteration: g, shard: shard, intendedMs: intendedMs, second: Int64(intendedMs / 1000), at: clock.instant(forServerMs: intendedMs))
            }
            return nil
        }
        await withDiscardingTaskGroup { group in
            var why: [DropReason: Int64] = [:]  // for the log
            var g = range.lowerBound
            var next = place(from: &g)
            var batch: [Placed] = []
            var admitted: [Bool] = []
            while let first = next {
                // The timing thread's own timer (this loop runs there, see claimAndFire).
                if let at = first.at { await TimingExecutor.shared.sleep(until: at) }
                let now = ContinuousClock.now
                batch.removeAll(keepingCapacity: true)
                batch.append(first)
                next = place(from: &g)
                while let p = next, batch.count < 1024, p.at.map({ $0 <= now + RunWorker.fireWindow }) ?? true {
                    batch.append(p)
                    next = place(from: &g)
                }
                admitted.removeAll(keepingCapacity: true)
                var reasons: [DropReason] = []
                // Decided by each iteration's intended start, the tick and the lease, never by
                // how late the process woke up beyond the tolerance (see Admission).
                state.withLock { s in
                    for p in batch {
                        let facts = Admission.Facts(
                            tick: n, intendedAt: p.at, now: now, stopTick: s.stopTick, leaveTick: s.phase.leaveTick,
                            aborted: s.phase.isAborted || Task.isCancelled, leaseTrusted: s.leases.covers(p.shard, at: now), inFlight: s.inFlight)
                        var refusal = admission.decide(facts)
                        if refusal == nil, !caps.takeVU() { refusal = .maxVUs }
                        if refusal == nil, !caps.takeStart(second: p.second) {
                            caps.returnVU()
                            refusal = .maxRate
                        }
                        if let refusal {
                            reasons.append(refusal)
                            admitted.append(false)
                        } else {
                            s.inFlight += 1
                            admitted.append(true)
                        }
                    }
                }
                // Counted as they happen (and flushed with their second), once per second of the batch.
                var tally = SecondTally()
                for (p, ok) in zip(batch, admitted) { tally.add(p.second, started: ok) }
                for (second, started, dropped) in tally.counts {
                    metrics.add(.started, started, second: second)
                    metrics.add(.tickStarted(n), started, second: second)
                    metrics.add(.dropped, dropped, second: second)
                    metrics.add(.tickDropped(n), dropped, second: second)
                }
                if !reasons.isEmpty {
                    telemetry.iterationsDropped.increment(by: Int64(reasons.count))
                    for reason in reasons { why[reason, default: 0] += 1 }
                    if reasons.contains(.maxRate) { capMet(DropReason.maxRate.rawValue, caps.limits.maxRate ?? 0) }
                    if reasons.contains(.maxVUs) { capMet(DropReason.maxVUs.rawValue, caps.limits.maxVUs ?? 0) }
                }
                for (p, ok) in zip(batch, admitted) where ok {
                    guard let at = p.at else { continue }
                    telemetry.scheduleLag.recordNanoseconds(max(0, Telemetry.nanos(at.duration(to: now))))  // may start up to fireWindow early; a negative duration breaks the Prometheus histogram
                    group.addTask(executorPreference: globalConcurrentExecutor) { [self] in
                        await runGranted(p, tick: n, at: at)
                    }
                }
            }
            if !why.isEmpty {
                logger.info("dropped iterations", metadata: ["tick": "\(n)", "why": "\(why.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key.rawValue): \($0.value)" }.joined(separator: ", "))"])
            }
        }
    }

    /// How far ahead of now a wake-up of the fire loop takes iterations into its batch.
    static let fireWindow: Duration = .milliseconds(1)

    /// Runs one admitted iteration on a pooled VU and records how it ended: its latency runs
    /// from its intended start, or from when it started if that was earlier (``fireWindow``).
    func runGranted(_ p: Placed, tick n: Int64, at intended: ContinuousClock.Instant) async {
        let at = min(intended, ContinuousClock.now)
        var ok = true
        var errorClassName: String?
        var traceID = ""
        var vuNumber: Int64 = -1
        do {
            let vu = try await checkoutVU()
            defer { checkinVU(vu) }
            let context = IterationContext(vu: vu.context, iteration: p.iteration, tick: n, shard: p.shard)
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
        let latency = at.duration(to: ContinuousClock.now)
        metrics.finished(second: p.second, ok: ok, errorClass: errorClassName, latencyUs: MetricsRecorder.micros(latency))
        metrics.noteSlow(latencyUs: MetricsRecorder.micros(latency), member: "\(traceID) \(worker) \(vuNumber) \(p.iteration) \(Int64(p.intendedMs))")
        telemetry.iteration(ok: ok, took: latency)
        state.withLock { $0.inFlight -= 1 }
        caps.returnVU()
    }
}

/// Started and dropped iterations of a batch, by second, in the order the seconds came.
struct SecondTally {
    private(set) var counts: [(second: Int64, started: Int64, dropped: Int64)] = []

    mutating func add(_ second: Int64, started: Bool) {
        if counts.last?.second != second { counts.append((second, 0, 0)) }
        if started { counts[counts.count - 1].started += 1 } else { counts[counts.count - 1].dropped += 1 }
    }
}
