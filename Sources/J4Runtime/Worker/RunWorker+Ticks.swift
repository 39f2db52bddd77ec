import J4Core
import J4Scenario

/// Ticks: the loop that claims each tick's quota a little before it starts, and hands what
/// was granted to the arrival-rate or VU model.
extension RunWorker {
    func tickLoop() async {
        // Wait for the run to start (the lease loop learns start_ms from Redis).
        while state.withLock({ $0.startMs == nil }) {
            if Task.isCancelled || state.withLock({ !$0.runState.isLive || $0.phase.isLeaving }) { return }
            try? await Task.sleep(for: .milliseconds(50))
        }
        guard let now = currentTick() else { return }
        var n = max(0, now)
        // Claims go out a little before their tick (three quarters of a tick, at most 200 ms),
        // so that its first iterations are on time and a VU goes on across the boundary
        // although the process was starved for a moment; a `j4 stop` that comes later than
        // this before a boundary ends the run one tick later.
        let claimLead = min(tick * 3 / 4, .milliseconds(200))
        while true {
            let (stop, live, phase) = state.withLock { ($0.stopTick, $0.runState.isLive, $0.phase) }
            guard live, n < stop, n < curve.tickCount, !phase.isAborted else { return }
            if let last = phase.leaveTick {
                await claimThrough(last, from: n)
                await handOff()
                return
            }
            guard let start = tickStart(n) else { return }
            do { try await RunWorker.sleep(until: start - claimLead) } catch {
                // Cancelled: by leave() (claim through the last tick, above) or by abort().
                if state.withLock({ $0.phase.leaveTick != nil }) { continue }
                return
            }
            let shards = state.withLock { s -> [(shard: Int, token: String)] in
                s.claimingTick = n
                return s.leases.forClaim(at: .now)
            }
            if !shards.isEmpty { await claimAndFire(tick: n, pairs: shards) }
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
            let shards = state.withLock { s -> [(shard: Int, token: String)] in
                guard n > s.claimingTick, n < s.stopTick else { return [] }
                s.claimingTick = n
                return s.leases.forClaim(at: .now)
            }
            if !shards.isEmpty { await claimAndFire(tick: n, pairs: shards) }
            n += 1
        }
    }

    /// Claims tick `n` for `shards` (with the tokens held now) and starts firing what was granted.
    func claimAndFire(tick n: Int64, shards: [Int]) async {
        let pairs = state.withLock { s in shards.compactMap { sh in s.leases.leases[sh].map { (shard: sh, token: $0.token) } } }
        await claimAndFire(tick: n, pairs: pairs)
    }

    /// Claims tick `n` with `pairs` and starts firing what was granted.
    func claimAndFire(tick n: Int64, pairs: [(shard: Int, token: String)]) async {
        guard !pairs.isEmpty else { return }
        var reply: ClaimReply?
        var sent = ContinuousClock.now
        for attempt in 0..<2 where reply == nil {
            sent = ContinuousClock.now
            do {
                let r = try await client.claim(connections.claim, worker: worker, tick: n, shards: pairs.map { ($0.shard, $0.token) })
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
        let share = state.withLock { s -> LeaseTable.ShareChange in
            s.stopTick = min(s.stopTick, reply.stopTick)
            s.leases.renewedByClaim(pairs, renewed: reply.renewed, validUntil: validUntil)
            return s.leases.noteShare(reply.cap, leaving: s.phase.isLeaving)
        }
        switch share {
        case .room: leaseWake.store(true, ordering: .relaxed)
        // Off the tick's path: the release is a round trip, and this tick's grant fires first.
        case .over: track(Task { await shedAboveShare() })
        case .none: break
        }
        if reply.code == "aborted" { abort() }
        guard reply.code == "ok" else {
            logger.debug("claim refused", metadata: ["tick": "\(n)", "code": "\(reply.code)"])
            return
        }
        let granted = Set(reply.statuses.filter { $0.value == .granted }.keys)
        guard !granted.isEmpty else { return }
        let vusEnd = definition.model == .vus ? tickEnd(n) : nil
        state.withLock { s in
            s.leases.granted(granted, tick: n)
            // VUs already running carry on into this tick: extended as soon as the grant is
            // recorded, so that one waiting for it (VUStep) goes on at once.
            if let vusEnd { extendVUs(&s, shards: granted, vus: reply.first, until: vusEnd) }
        }
        let task: Task<Void, Never>
        if definition.model == .arrivalRate {
            // The fire loop wakes on a thread of its own (TimingExecutor); each iteration runs on the shared executor.
            task = Task(executorPreference: TimingExecutor.shared) { [self] in await fireIterations(tick: n, shards: granted, range: reply.first..<reply.end) }
        } else {
            task = Task { await fireVUs(tick: n, shards: granted, vus: reply.first) }
        }
        track(task)
    }

    /// Keeps `task` among those the run waits for before it leaves (ticks firing, drains).
    func track(_ task: Task<Void, Never>) {
        state.withLock { s in
            let id = s.nextFireID
            s.nextFireID += 1
            s.fires[id] = task
            Task { await task.value; _ = state.withLock { $0.fires.removeValue(forKey: id) } }
        }
    }
}
