import J4Core

/// Leases: the heartbeat that takes and renews this worker's shards, sheds what is above
/// its fair share, and hands everything back when it leaves.
extension RunWorker {
    func leaseLoop() async {
        let interval = ttl / 3
        var first = true
        var fastPolls = 15
        var sinceRenewal = 0
        while !Task.isCancelled {
            let (held, wantMore, leaving) = state.withLock { s in (s.leases.held, s.leases.wantsMore, s.phase.isLeaving) }
            if leaving && held.isEmpty { return }
            let take = (first || wantMore) && !leaving
            first = false
            // Claims renew the leases they are made with; while they keep every lease fresh,
            // a renewal every other cycle is enough to keep the fair share and liveness current.
            let now = ContinuousClock.now
            let freshByClaims = state.withLock { s in
                LeaseCadence.mayRelyOnClaims(
                    table: s.leases, now: now, interval: interval, claiming: s.startMs != nil && s.claimingTick >= 0, taking: take, leaving: leaving,
                    renewedLastCycle: sinceRenewal < 1)
            }
            if freshByClaims {
                sinceRenewal += 1
                await leaseSleep(interval)
                continue
            }
            sinceRenewal = 0
            var sent = ContinuousClock.now
            var expiryDeadline: ContinuousClock.Instant? = nil
            do {
                var reply = take
                    ? try await client.acquire(connections.lease, worker: worker, nonce: nonce, take: true, held: held)
                    : try await client.renew(connections.lease, worker: worker, held: held)
                clock.observe(sent: sent, received: .now, serverMs: reply.nowMs)
                // The fair share grew (a worker left or died): take the room now, not a cycle later.
                if !take, !leaving, reply.state == .running || reply.state == .pending, reply.held.count < reply.cap {
                    await apply(reply, sent: sent)
                    sent = ContinuousClock.now
                    let mine = state.withLock { $0.leases.held }
                    reply = try await client.acquire(connections.lease, worker: worker, nonce: nonce, take: true, held: mine)
                    clock.observe(sent: sent, received: .now, serverMs: reply.nowMs)
                }
                let received = ContinuousClock.now
                await apply(reply, sent: sent)
                if !reply.state.isLive { return }
                let wantsMore = state.withLock { $0.leases.wantsMore && !$0.phase.isLeaving }
                if let d = LeaseCadence.untilNextExpiry(nextExpiryMs: reply.nextExpiryMs, nowMs: reply.nowMs, wantsMore: wantsMore) { expiryDeadline = received + d }
            } catch let e as CorruptRunError {
                await corrupt(e)
                return
            } catch {
                logger.warning("lease renewal failed; leases self-fence at their deadline", metadata: ["error": "\(error)"])
            }
            // Until it holds its fair share, a worker asks again soon, so a run's shards spread quickly.
            let (hungry, started) = state.withLock { s in (fastPolls > 0 && s.leases.wantsMore && !s.phase.isLeaving, s.startMs != nil) }
            if hungry { fastPolls -= 1 }
            var wait = LeaseCadence.wait(interval: interval, hungry: hungry, started: started)
            // Below its share: back the moment the next lease held now runs out, if sooner.
            if let deadline = expiryDeadline { wait = max(.zero, min(wait, deadline - .now)) }
            await leaseSleep(wait)
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
        let (newShards, claimedUpTo, abortNow) = state.withLock { s -> ([Int], Int64, Bool) in
            let fresh = s.leases.apply(held: reply.held.sorted { $0.key < $1.key }.map { ($0.key, $0.value.token) }, lost: reply.lost, cap: reply.cap, validUntil: validUntil)
            // A reply sent before an abort (heard on the signals channel) must not undo it.
            if !s.phase.isAborted { s.runState = reply.state }
            s.stopTick = min(s.stopTick, reply.stopTick)
            if s.startMs == nil { s.startMs = reply.startMs }
            let abortNow = (reply.state == .aborted || reply.state == .failed) && !s.phase.isAborted
            // Forget handed-off leases once their last granted tick is over.
            if let start = reply.startMs {
                s.leases.forgetSettled(currentTick: Int64((Double(reply.nowMs - start) / Double(definition.tickMs)).rounded(.down)))
            }
            telemetry.gauge("j4_leases_held", Double(s.leases.heldCount))
            return (fresh, s.claimingTick, abortNow)
        }
        if !newShards.isEmpty { telemetry.count("j4_leases_acquired_total", [], Int64(newShards.count)) }
        if !reply.lost.isEmpty { telemetry.count("j4_leases_lost_total", [], Int64(reply.lost.count)) }
        if abortNow { abort() }
        if reply.generation > curveState.withLock({ $0.generation }) { await refreshCurve() }
        await shedAboveShare()
        if !newShards.isEmpty {
            logger.debug("acquired leases", metadata: ["shards": "\(newShards)"])
            await catchUp(newShards, throughTick: claimedUpTo)
        }
    }

    /// Sheds down to the fair share (the table's cap, from the last renewal or claim reply),
    /// the highest shards first. Arrival-rate: handed back now, so others can claim the ticks
    /// after those already granted here, which still run here. VUs: drained first (renewed,
    /// not claimed with) until their VUs have ended, so no VU number runs on two workers.
    func shedAboveShare() async {
        let toRelease = state.withLock { $0.leases.shedToCap(drain: definition.model == .vus) }
        guard !toRelease.isEmpty else { return }
        telemetry.count("j4_leases_shed_total", [], Int64(toRelease.count))
        if definition.model == .vus {
            track(Task { [self] in
                await endVUs(ofShards: Set(toRelease.map(\.shard)))
                await release(state.withLock { $0.leases.handOff(toRelease.map(\.shard)) }, reason: "shed")
            })
        } else {
            await release(toRelease, reason: "shed")
        }
    }

    /// Another worker handed leases back (heard on the signals channel): one still short of
    /// its fair share asks for them now, not at its next renewal.
    func leasesReleased() {
        if state.withLock({ $0.leases.wantsMore && !$0.phase.isLeaving }) { leaseWake.store(true, ordering: .relaxed) }
    }

    /// Hands `leases` back to Redis (token-checked).
    func release(_ leases: [(shard: Int, token: String)], reason: String) async {
        guard !leases.isEmpty else { return }
        do {
            try await client.release(connections.lease, worker: worker, reason: reason, shards: leases.map { ($0.shard, $0.token) })
            logger.info("handed leases back", metadata: ["shards": "\(leases.map(\.shard))", "reason": "\(reason)"])
        } catch {
            logger.warning("could not hand leases back; they expire after their TTL", metadata: ["error": "\(error)", "reason": "\(reason)"])
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

    /// Hands every lease back (token-checked) and leaves the run's live set; ticks already
    /// granted keep running. VUs end first, so none runs on two workers at once.
    func handOff() async {
        if definition.model == .vus { await endVUs(ofShards: nil) }
        let held = state.withLock { s -> [(shard: Int, token: String)]? in
            let out = s.leases.handOffAll()
            // Leave the live set once; later calls have nothing to hand back.
            if out.isEmpty && s.leftLiveSet { return nil }
            s.leftLiveSet = true
            return out
        }
        guard let held else { return }
        // Even with nothing to hand back, the call takes this worker out of the live set.
        do {
            try await client.release(connections.lease, worker: worker, reason: "shutdown", shards: held.map { ($0.shard, $0.token) })
        } catch {
            logger.warning("could not hand leases back; they expire after their TTL", metadata: ["error": "\(error)"])
        }
    }
}
