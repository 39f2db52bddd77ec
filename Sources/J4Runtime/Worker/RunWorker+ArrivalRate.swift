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
        // Per-tick accounting next to the per-second counters (flush.lua puts t:* in the ticks hash).
        var schedule = TickSchedule(curve: curve, tick: n)
        let rule = admission
        await withDiscardingTaskGroup { group in
            var why: [DropReason: Int64] = [:]  // for the log
            var g = range.lowerBound
            while g < range.upperBound {
                defer { g += 1 }
                let shard = Int(g % S)
                guard shards.contains(shard) else { continue }
                let intendedMs = startMs + schedule.startMs(ofIteration: g)
                let second = Int64(intendedMs / 1000)
                let at = clock.instant(forServerMs: intendedMs)
                // The timing thread's own timer (this loop runs there, see claimAndFire).
                if let at { await TimingExecutor.shared.sleep(until: at) }
                let now = ContinuousClock.now
                // Decided by the intended start, the tick and the lease, never by how late the
                // process woke up beyond the tolerance (see Admission).
                let refusal = state.withLock { s -> DropReason? in
                    let facts = Admission.Facts(
                        tick: n, intendedAt: at, now: now, stopTick: s.stopTick, leaveTick: s.phase.leaveTick,
                        aborted: s.phase.isAborted || Task.isCancelled, leaseTrusted: s.leases.covers(shard, at: now), inFlight: s.inFlight)
                    if let reason = rule.decide(facts) { return reason }
                    if !caps.takeVU() { return .maxVUs }
                    if !caps.takeStart(second: second) {
                        caps.returnVU()
                        return .maxRate
                    }
                    s.inFlight += 1
                    return nil
                }
                if let refusal {
                    // Recorded as it happens (and flushed with its second), not at the tick's end.
                    metrics.add(.dropped, second: second)
                    metrics.add(.tickDropped(n), second: second)
                    telemetry.iterationsDropped.increment(by: 1)
                    why[refusal, default: 0] += 1
                    if refusal == .maxRate { capMet(refusal.rawValue, caps.limits.maxRate ?? 0) }
                    if refusal == .maxVUs { capMet(refusal.rawValue, caps.limits.maxVUs ?? 0) }
                    continue
                }
                guard let at else { continue }
                metrics.add(.started, second: second)
                metrics.add(.tickStarted(n), second: second)
                telemetry.scheduleLag.recordNanoseconds(max(0, Telemetry.nanos(at.duration(to: now))))  // may start up to 0.5 ms early; a negative duration breaks the Prometheus histogram
                let iteration = g
                group.addTask(executorPreference: globalConcurrentExecutor) { [self] in
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
                logger.info("dropped iterations", metadata: ["tick": "\(n)", "why": "\(why.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key.rawValue): \($0.value)" }.joined(separator: ", "))"])
            }
        }
    }
}
