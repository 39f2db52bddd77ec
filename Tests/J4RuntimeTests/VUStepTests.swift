import Testing

@testable import J4Runtime

/// One VU before an iteration: iterate, wait for a late grant, or end. Times are ms from a
/// fixed origin; the tick is 100 ms and the VU's deadline the end of tick 3 (400 ms).
@Suite("A VU's step")
struct VUStepTests {
    enum Want: Equatable, Sendable { case iterate, waitUntilMs(Double), end }

    struct Row: CustomTestStringConvertible, Sendable {
        var name: String
        var nowMs: Double = 350
        var deadlineMs: Double? = 400
        var tickMs: Int64 = 100
        var currentTick: Int64? = 3
        var stopTick: Int64 = 100
        var aborted = false
        var leaving = false
        var trusted = true
        var expected: Want
        var testDescription: String { name }
    }

    static let rows: [Row] = [
        Row(name: "inside the granted tick", expected: .iterate),
        Row(name: "the last instant of the granted tick", nowMs: 399.9, expected: .iterate),
        // Found by the conformance harness: a VU ended at its deadline when the grant of the
        // next tick came a moment late, and the next grant set it up again from scratch.
        Row(name: "at the deadline, next grant not come yet: wait a tick", nowMs: 400, currentTick: 4, expected: .waitUntilMs(500)),
        Row(name: "60 ms past the deadline: still waiting", nowMs: 460, currentTick: 4, expected: .waitUntilMs(500)),
        Row(name: "a whole tick past the deadline: end", nowMs: 500, currentTick: 5, expected: .end),
        Row(name: "a 1.3 s tick: waits up to 1.3 s", nowMs: 2000, deadlineMs: 1300, tickMs: 1300, currentTick: 1, expected: .waitUntilMs(2600)),
        Row(name: "past the deadline, the next tick is the stop tick", nowMs: 410, currentTick: 4, stopTick: 4, expected: .end),
        Row(name: "past the deadline, leaving", nowMs: 410, currentTick: 4, leaving: true, expected: .end),
        Row(name: "past the deadline, no clock sample", nowMs: 410, currentTick: nil, expected: .end),
        Row(name: "ended by the worker (no deadline)", deadlineMs: nil, expected: .end),
        Row(name: "inside the tick but aborted", aborted: true, expected: .end),
        Row(name: "inside the tick but the lease not trusted", trusted: false, expected: .end),
        Row(name: "waiting, and the lease stops being trusted", nowMs: 420, currentTick: 4, trusted: false, expected: .end),
        Row(name: "inside the tick while leaving: the current iteration's tick still runs", leaving: true, expected: .iterate),
        // Found by review: ending a VU as soon as its shard had a later grant ended VUs the
        // curve still wanted when they were created after that grant was recorded (a
        // catch-up claim), and depended on the clock estimate. The VU waits instead.
        Row(name: "past the deadline, its clock estimate moved back (the current tick still its own): wait", nowMs: 410, currentTick: 3, expected: .waitUntilMs(500)),
    ]

    @Test("a late grant is waited for, for one tick, unless nothing can come", arguments: rows)
    func step(row: Row) {
        let origin = ContinuousClock.now
        func at(_ ms: Double) -> ContinuousClock.Instant { origin + .microseconds(Int64(ms * 1000)) }
        let facts = VUStep.Facts(
            now: at(row.nowMs), deadline: row.deadlineMs.map(at), tick: .milliseconds(row.tickMs), currentTick: row.currentTick,
            stopTick: row.stopTick, aborted: row.aborted, leaving: row.leaving, trusted: row.trusted)
        let want: VUStep = switch row.expected {
        case .iterate: .iterate
        case .end: .end
        case .waitUntilMs(let ms): .wait(until: at(ms))
        }
        #expect(VUStep.decide(facts) == want)
    }
}
