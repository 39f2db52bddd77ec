import J4Core
import J4Scenario

/// The VU model: each granted tick extends the deadlines of its VUs; a VU loops while the
/// curve wants it and its shard's lease is trusted, and ends before its shard leaves.
extension RunWorker {
    func fireVUs(tick n: Int64, shards: Set<Int>, vus: Int64) async {
        guard let begin = tickStart(n), let end = tickEnd(n) else { return }
        let S = Int64(definition.shards)
        let wanted = (0..<vus).filter { shards.contains(Int($0 % S)) }
        // A shard being given up (shed while this tick was granted) keeps no VU: its VUs are
        // ending so that the shard can go back, and a VU started or extended now would
        // outlive the drain and run beside its next owner's.
        func mine(_ s: RunWorker.State, _ j: Int64) -> Bool { !s.leases.isGoingBack(Int(j % S)) }
        // The VUs that continue into this tick were extended when the grant came (claimAndFire).
        do { try await RunWorker.sleep(until: begin) } catch {}
        var capped = false
        let running = state.withLock { s -> Int in
            guard s.phase.mayRun(tick: n), n < s.stopTick else { return s.vuTasks.count }
            for j in wanted where mine(s, j) {
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

    /// Extends the deadline of every running VU below `vus` on `shards` (and not on a shard
    /// going back) to `end`: the VUs that continue into a tick just granted. Under the state lock.
    func extendVUs(_ s: inout RunWorker.State, shards: Set<Int>, vus: Int64, until end: ContinuousClock.Instant) {
        let S = Int64(definition.shards)
        for (j, _) in s.vuTasks where j < vus && shards.contains(Int(j % S)) && !s.leases.isGoingBack(Int(j % S)) {
            s.vuDeadlines[j] = max(s.vuDeadlines[j] ?? end, end)
        }
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
            metrics.add(.started, second: second)
            metrics.finished(second: second, ok: false, errorClass: error is TargetRefused ? "target_refused" : "setup", latencyUs: 0)
            if !(error is TargetRefused) { logger.warning("VU setup failed", metadata: ["vu": "\(j)", "error": "\(error)"]) }
            return
        }
        var i: Int64 = 0
        while !Task.isCancelled {
            let began = ContinuousClock.now
            let trustedItems = context.holdsTrusted
            let step = state.withLock { s -> VUStep in
                let step = VUStep.decide(.init(
                    now: began, deadline: s.vuDeadlines[j], tick: tick, currentTick: self.tick(at: began, start: s.startMs), stopTick: s.stopTick,
                    aborted: s.phase.isAborted, leaving: s.phase.isLeaving || s.leases.isGoingBack(shard),
                    trusted: s.leases.trusts(shard, at: began) && trustedItems))
                if step == .end { s.vuDeadlines[j] = nil }
                return step
            }
            switch step {
            case .end: return
            case .wait(let until):
                // The next tick's grant is late: look again shortly, with the same setup.
                try? await Task.sleep(until: min(until, began + max(.milliseconds(2), tick / 50)), clock: .continuous)
                continue
            case .iterate: break
            }
            let second = Int64((clock.serverMs(at: began) ?? 0) / 1000)
            metrics.add(.started, second: second)
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

    /// Ends the VUs of `shards` (every VU when nil) and waits for them: each finishes its
    /// current iteration (k6's graceful stop), and one still running after
    /// ``gracefulVUStop`` is cancelled. Called before their shards go back to Redis, while
    /// their leases are still renewed, so that no VU number runs on two workers at once.
    func endVUs(ofShards shards: Set<Int>?) async {
        let S = Int64(definition.shards)
        let tasks = state.withLock { s -> [Task<Void, Never>] in
            let now = ContinuousClock.now
            var out: [Task<Void, Never>] = []
            for (j, task) in s.vuTasks where shards.map({ $0.contains(Int(j % S)) }) ?? true {
                s.vuDeadlines[j] = now
                out.append(task)
            }
            return out
        }
        guard !tasks.isEmpty else { return }
        let overdue = Task {
            try? await Task.sleep(for: RunWorker.gracefulVUStop)
            if !Task.isCancelled { for t in tasks { t.cancel() } }
        }
        for t in tasks { await t.value }
        overdue.cancel()
    }

    /// How long a VU that must end may take to finish its current iteration (k6's default).
    static let gracefulVUStop: Duration = .seconds(30)
}
