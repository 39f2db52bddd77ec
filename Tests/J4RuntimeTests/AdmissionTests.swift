import Testing

@testable import J4Runtime

/// One arrival-rate iteration: started or dropped, and why. Times are ms from a fixed origin.
@Suite("Admission of one iteration")
struct AdmissionTests {
    struct Row: CustomTestStringConvertible, Sendable {
        var name: String
        var tickMs: Int64 = 100
        var tick: Int64 = 3
        /// Intended start (nil: no clock), ms.
        var intendedMs: Double? = 350
        /// When the process woke for it, ms.
        var nowMs: Double = 350
        var stopTick: Int64 = 100
        var leaveTick: Int64?
        var aborted = false
        var leaseTrusted = true
        var inFlight = 0
        var maxInFlight = 10
        var expected: DropReason?
        var testDescription: String { name }
    }

    static let rows: [Row] = [
        Row(name: "on time", expected: nil),
        Row(name: "woken 0.4 ms early (the sleep's tolerance)", intendedMs: 350, nowMs: 349.6, expected: nil),
        // Found by the harness: an iteration meant for the last instant of a ramp's tick was
        // dropped as "tick over" when the process woke just after the tick's end.
        Row(name: "meant for the tick's last instant, woken 3 ms after the tick ended", intendedMs: 399.999, nowMs: 403, expected: nil),
        Row(name: "meant for the run's last instant (a ramp to 0), woken 1 ms later", tick: 9, intendedMs: 1000, nowMs: 1001, expected: nil),
        Row(name: "late by 20 ms at a 100 ms tick: within max(20 ms, tick/10)", intendedMs: 350, nowMs: 370, expected: nil),
        Row(name: "late by 21 ms at a 100 ms tick", intendedMs: 350, nowMs: 371, expected: .late),
        Row(name: "late by 99 ms at a 1 s tick: within tick/10", tickMs: 1000, tick: 0, intendedMs: 500, nowMs: 599, expected: nil),
        Row(name: "late by 101 ms at a 1 s tick", tickMs: 1000, tick: 0, intendedMs: 500, nowMs: 601, expected: .late),
        Row(name: "late by 170 ms at a 1.7 s tick: within tick/10", tickMs: 1700, tick: 1, intendedMs: 1800, nowMs: 1970, expected: nil),
        Row(name: "no sample of Redis' clock yet", intendedMs: nil, expected: .noClock),
        Row(name: "aborted", aborted: true, expected: .aborted),
        Row(name: "the run's stop tick", tick: 7, intendedMs: 750, nowMs: 750, stopTick: 7, expected: .stopped),
        Row(name: "the tick before the stop tick", tick: 6, intendedMs: 650, nowMs: 650, stopTick: 7, expected: nil),
        Row(name: "leaving: the last tick still runs", tick: 5, intendedMs: 550, nowMs: 550, leaveTick: 5, expected: nil),
        Row(name: "leaving: the tick after the last", tick: 6, intendedMs: 650, nowMs: 650, leaveTick: 5, expected: .stopped),
        Row(name: "the shard's lease is no longer trusted", leaseTrusted: false, expected: .lease),
        Row(name: "maxInFlight reached", inFlight: 10, expected: .maxInFlight),
        Row(name: "one below maxInFlight", inFlight: 9, expected: nil),
        Row(name: "late and the lease gone: the lease is named", intendedMs: 350, nowMs: 500, leaseTrusted: false, expected: .lease),
    ]

    @Test("decided by the intended start, the tick and the tolerance, never by the wake-up alone", arguments: rows)
    func admission(row: Row) {
        let origin = ContinuousClock.now
        func at(_ ms: Double) -> ContinuousClock.Instant { origin + .microseconds(Int64(ms * 1000)) }
        let rule = Admission(tick: .milliseconds(row.tickMs), maxInFlight: row.maxInFlight)
        let facts = Admission.Facts(
            tick: row.tick, intendedAt: row.intendedMs.map(at), now: at(row.nowMs), stopTick: row.stopTick, leaveTick: row.leaveTick,
            aborted: row.aborted, leaseTrusted: row.leaseTrusted, inFlight: row.inFlight)
        #expect(rule.decide(facts) == row.expected)
    }

    @Test("the late tolerance is max(20 ms, tick / 10)", arguments: [(Int64(100), Int64(20)), (150, 20), (200, 20), (500, 50), (1000, 100), (1300, 130), (2000, 200)])
    func tolerance(tickMs: Int64, toleranceMs: Int64) {
        let tolerance = Admission.lateTolerance(tick: .milliseconds(tickMs))
        #expect(tolerance >= .milliseconds(toleranceMs) && tolerance < .milliseconds(toleranceMs) + .microseconds(100))
    }

    @Test("every drop reason has the name the worker logs")
    func reasonNames() {
        #expect(DropReason.allCases.map(\.rawValue) == ["no clock", "late", "aborted", "stopped", "lease", "maxInFlight", "max-vus", "max-rate"])
    }

    @Test("a batch's iterations are counted once per second, started and dropped apart, in the order the seconds came", arguments: [
        ([(Int64(7), true)], [(Int64(7), Int64(1), Int64(0))]),
        ([(7, true), (7, false), (7, true)], [(7, 2, 1)]),
        // A batch that crosses a second: two entries, the first second first.
        ([(7, false), (7, false), (8, true), (8, false)], [(7, 0, 2), (8, 1, 1)]),
        ([(7, true), (8, true), (9, false)], [(7, 1, 0), (8, 1, 0), (9, 0, 1)]),
    ] as [([(Int64, Bool)], [(Int64, Int64, Int64)])])
    func tally(items: [(Int64, Bool)], expected: [(Int64, Int64, Int64)]) {
        var tally = SecondTally()
        for (second, started) in items { tally.add(second, started: started) }
        #expect(tally.counts.map { [$0.second, $0.started, $0.dropped] } == expected.map { [$0.0, $0.1, $0.2] })
    }
}
