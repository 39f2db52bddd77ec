import Foundation
import J4Core
import J4Redis
import J4Runtime
import J4TestSupport
import Testing

/// A redis-server whose clock the test moves: `scripts/clockshift.c`, preloaded, adds the
/// offset in a file to the wall clock on every call (Redis' `TIME` and its key expiry); the
/// monotonic clock is left alone. (libfaketime cannot be used: Debian's redis-server is built
/// with jemalloc, which reads the clock while libfaketime is still initialising.)
struct SteppedClockRedis {
    let redis: EmbeddedRedis
    let file: String

    /// The shim, compiled with the system's C compiler into `out`.
    static func buildShim(_ out: String) async throws {
        let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let cc = try ChildProcess("/usr/bin/env", ["cc", "-shared", "-fPIC", "-O2", "-o", out, repository.appendingPathComponent("scripts/clockshift.c").path])
        guard await cc.wait() == 0 else { throw TestSupportError(description: "cc could not build scripts/clockshift.c: \(cc.output.tail())") }
    }

    static func start() async throws -> SteppedClockRedis {
        let file = NSTemporaryDirectory() + "j4-clock-offset-\(UInt32.random(in: 0...UInt32.max))"
        try "0\n".write(toFile: file, atomically: true, encoding: .utf8)
        let shim = file + ".so"
        try await buildShim(shim)
        let redis = try await EmbeddedRedis.start(wrapper: ["/usr/bin/env", "LD_PRELOAD=\(shim)", "J4_CLOCK_OFFSET_FILE=\(file)"])
        return SteppedClockRedis(redis: redis, file: file)
    }

    /// Sets Redis' clock to the real time plus `seconds`.
    func offset(_ seconds: Int) throws {
        try "\(seconds * 1000)\n".write(toFile: file, atomically: true, encoding: .utf8)
    }

    func stop() async {
        await redis.stop()
        try? FileManager.default.removeItem(atPath: file)
        try? FileManager.default.removeItem(atPath: file + ".so")
    }
}

@Suite("Redis' clock steps: no tick is granted twice, the run's time never goes back")
struct ClockStepTests {
    @Test("after Redis' clock steps back 100 s, ticks below the highest granted one stay over: past for claims, frozen for the plan, after it for a scale")
    func stepBack() async throws {
        let clock = try await SteppedClockRedis.start()
        let r = try await StartedRun.make(shards: 4, tick: "1s", duration: "300s", redis: clock.redis)
        try clock.offset(150)
        let a = try await r.client.acquire(r.c, worker: "A", nonce: "na", take: true, held: [])
        let tokens = a.held.map { ($0.key, $0.value.token) }
        let n = try await r.nextTick()
        let granted = try await r.client.claim(r.c, worker: "A", tick: n, shards: tokens)
        #expect(granted.code == "ok" && granted.statuses.values.allSatisfy { $0 == .granted }, "\(granted)")
        let planned = try await r.c.send(["HGET", r.client.keys.plan, String(n)]).string

        try clock.offset(50)  // 100 s back: A's leases still run for 100 s on this clock
        let m = try await r.nextTick()
        #expect(m < n - 90, "the clock stepped back: \(m) vs \(n)")
        let reopened = try await r.client.claim(r.c, worker: "A", tick: m, shards: tokens)
        #expect(reopened.code == "past", "tick \(m), below the granted tick \(n), was claimed again: \(reopened)")
        #expect(try await r.client.claim(r.c, worker: "A", tick: n, shards: tokens).statuses.values.allSatisfy { $0 == .granted }, "a retry of the granted tick")
        // The supervisor, on the stepped clock, sends values from m on: tick n keeps its value.
        _ = try await r.client.plan(r.c, holder: "sup", token: "t1", ttlMs: 60_000, leadMs: 0, generation: 1, from: m, values: Array(repeating: 999_999, count: Int(n - m) + 3))
        #expect(try await r.c.send(["HGET", r.client.keys.plan, String(n)]).string == planned)
        let scaled = try await r.client.scale(r.c, targetMilli: 50_000, who: "test")
        #expect(scaled.code == "ok" && scaled.fromTick > n, "a scale on the stepped clock starts after the granted tick: \(scaled)")
        await clock.stop()
    }

    @Test("a grant record outlives a clock step: forward 200 s (the leases expire, B takes the shards), back again: B's claim of A's tick is taken")
    func recordOutlivesStep() async throws {
        let clock = try await SteppedClockRedis.start()
        let r = try await StartedRun.make(shards: 2, tick: "10s", duration: "60s", redis: clock.redis)
        let a = try await r.client.acquire(r.c, worker: "A", nonce: "na", take: true, held: [])
        let n = try await r.nextTick()
        let first = try await r.client.claim(r.c, worker: "A", tick: n, shards: a.held.map { ($0.key, $0.value.token) })
        #expect(first.code == "ok" && first.statuses.values.allSatisfy { $0 == .granted }, "\(first)")

        try clock.offset(200)
        let b = try await r.client.acquire(r.c, worker: "B", nonce: "nb", take: true, held: [])
        #expect(b.held.count == 2, "A's leases expired on the forward clock: \(b.held)")
        #expect(try await r.c.send(["EXISTS", r.client.keys.claims(tick: n)]).int == 1, "the record is kept while tick \(n) can be claimed")

        try clock.offset(0)
        let second = try await r.client.claim(r.c, worker: "B", tick: n, shards: b.held.map { ($0.key, $0.value.token) })
        #expect(second.code == "ok" && second.statuses.values.allSatisfy { $0 == .taken }, "tick \(n) granted twice: \(second)")
        await clock.stop()
    }

    @Test("grant records of ticks the run has moved past expire a minute later; the two claimable ticks' records keep a day")
    func recordsExpire() async throws {
        let clock = try await SteppedClockRedis.start()
        let r = try await StartedRun.make(shards: 2, tick: "1s", duration: "300s", redis: clock.redis)
        var held: [(Int, String)] = []
        var claimed: [Int64] = []
        for step in 0..<4 {
            try clock.offset(10 + step)
            let a = try await r.client.acquire(r.c, worker: "A", nonce: "na", take: true, held: held)
            held = a.held.map { ($0.key, $0.value.token) }
            let n = try await r.nextTick()
            #expect(try await r.client.claim(r.c, worker: "A", tick: n, shards: held).code == "ok")
            claimed.append(n)
        }
        let last = try #require(claimed.last)
        for n in claimed {
            let ttl = try await r.c.send(["PTTL", r.client.keys.claims(tick: n)]).int ?? -3
            if n >= last - 1 {
                #expect(ttl > 3_600_000, "tick \(n), still claimable: \(ttl) ms left")
            } else {
                #expect(ttl > 0 && ttl <= 60_000, "tick \(n), over: \(ttl) ms left")
            }
        }
        await clock.stop()
    }
}
