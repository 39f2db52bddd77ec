import Testing

@testable import J4Runtime

@Suite("A worker's life in a run, its identity, the supervisor's horizon")
struct WorkerLifeTests {
    @Test("leaving: the last tick run", arguments: [
        // (current tick, arrival-rate, last tick)
        (Int64(7), true, Int64(8)),  // the next tick may already be claimed: it runs here
        (7, false, 7),  // VUs end with the current tick
        (-1, true, 0),  // not started yet: tick 0 at most
        (-1, false, -1),
    ])
    func leaveTick(current: Int64, arrivalRate: Bool, last: Int64) {
        let phase = WorkerPhase.running.leaving(at: current, arrivalRate: arrivalRate)
        #expect(phase == .leaving(lastTick: last))
        #expect(phase.mayRun(tick: last) && !phase.mayRun(tick: last + 1))
        #expect(phase.isLeaving && !phase.isAborted && phase.leaveTick == last)
    }

    @Test("phases only move forward")
    func forward() {
        #expect(WorkerPhase.aborted.leaving(at: 3, arrivalRate: true) == .aborted)
        #expect(WorkerPhase.leaving(lastTick: 4).leaving(at: 9, arrivalRate: true) == .leaving(lastTick: 4), "a second SIGTERM does not move the last tick")
        #expect(!WorkerPhase.aborted.mayRun(tick: 0))
        #expect(WorkerPhase.running.mayRun(tick: 1_000_000) && WorkerPhase.running.leaveTick == nil)
    }

    @Test("a worker id held by another process: wait out a dead one, refuse a live one", arguments: [
        // (held, ms left, waited so far, TTL, decision)
        (true, Int64(0), Int64(0), Int64(3000), IdentityDecision.registered),
        (false, 2500, 0, 3000, .wait(ms: 2550)),  // a predecessor killed 0.5 s ago: its registration lapses in 2.5 s
        (false, 3000, 2550, 3000, .wait(ms: 3050)),  // renewed meanwhile: ask once more after a full TTL
        (false, 3000, 5600, 3000, .refuse),  // still renewed after more than a TTL: a live process holds it
        (false, -2, 0, 3000, .wait(ms: 50)),  // no expiry: ask again soon
        (false, 90_000, 0, 3000, .wait(ms: 3050)),  // never wait more than a TTL at a time
        (true, 0, 9000, 3000, .registered),
    ])
    func identity(held: Bool, msLeft: Int64, waited: Int64, ttl: Int64, decision: IdentityDecision) {
        #expect(IdentityDecision.decide(held: held, msLeft: msLeft, waitedMs: waited, ttlMs: ttl) == decision)
    }

    @Test("the plan horizon covers a leader's takeover whatever the tick: at least 5 s and 10 ticks", arguments: [
        (Int64(100), Int64(50)), (170, 30), (250, 20), (400, 13), (700, 10), (1000, 10), (2000, 10), (10_000, 10),
    ])
    func horizon(tickMs: Int64, ticks: Int64) {
        let horizon = Supervisor.defaultHorizon(leaderTTL: .seconds(3))
        #expect(horizon == .seconds(5))
        #expect(Supervisor.horizonTicks(horizon, tickMs: tickMs) == ticks)
        #expect(ticks * tickMs >= 5000)
        // scale.lua rewrites the plan from two ticks ahead over the longer of 20 ticks and
        // 7 s: past the whole published horizon, so that no value from before a scale is left.
        #expect(ticks <= 2 + max(20, (7000 + tickMs - 1) / tickMs))
    }
}
