import Foundation
import J4Core
import J4Redis
import J4Runtime
import J4Sink
import J4TestSupport
import Testing

/// A cluster of real processes for failure tests: redis-server, one supervisor, N workers,
/// and a sink counting per second and per worker.
struct Cluster {
    let redis: EmbeddedRedis
    let sink: SinkProcess
    let supervisor: ChildProcess
    var workers: [String: ChildProcess]
    let c: RedisConnection

    static func start(workers: Int, redisArguments: [String] = [], sinkArguments: [String] = []) async throws -> Cluster {
        let redis = try await EmbeddedRedis.start(extraArguments: redisArguments)
        let sink = try await SinkProcess.start(sinkArguments)
        let supervisor = try J4Binary.start(["supervisor", "--redis", redis.url, "--id", "s0"])
        var cluster = Cluster(redis: redis, sink: sink, supervisor: supervisor, workers: [:], c: redis.connect())
        for i in 0..<workers { try await cluster.addWorker("w\(i)") }
        return cluster
    }

    /// Starts a worker and waits until it is connected.
    mutating func addWorker(_ id: String) async throws {
        workers[id] = try J4Binary.start(["worker", "--redis", redis.url, "--id", id])
        let c = self.c
        try await waitForWorkers([id], on: c, timeout: .seconds(10))
    }

    /// Waits until `run` has started; its tick-0 time (unix ms).
    func waitForStart(_ run: String) async throws -> Int64 {
        var start: Int64 = 0
        try await waitFor("run \(run) to start", timeout: .seconds(10)) {
            start = try await c.send(["HGET", RunKeys(run: run).ctl, "start_ms"]).int ?? 0
            return start > 0
        }
        return start
    }

    /// Submits a hold at `rate`/s for `seconds`; returns the run id and its tick-0 time (unix s).
    func submitHold(rate: Int, seconds: Int, shards: Int = 12) async throws -> (run: String, startSecond: Int64) {
        let file = try holdDefinition(rate: rate, seconds: seconds, shards: shards, target: sink.url)  // leaseTTL: the default 3 s
        let run = try await submitRun(file, ["--redis", redis.url])
        return (run, try await waitForStart(run) / 1000)
    }

    /// Waits until Redis' clock reaches unix second `second`.
    func waitUntil(second: Int64) async throws {
        try await waitUntil(ms: second * 1000)
    }

    /// Waits until Redis' clock reaches unix time `ms`.
    func waitUntil(ms: Int64) async throws {
        try await waitUntilRedisTime(ms, on: c)
    }

    /// The run's per-tick accounting: granted, started and dropped iterations of each tick.
    func ticks(_ run: String) async throws -> [Int64: (g: Int64, s: Int64, d: Int64)] {
        var out: [Int64: (g: Int64, s: Int64, d: Int64)] = [:]
        for (field, value) in try await c.send(["HGETALL", RunKeys(run: run).ticks]).hash ?? [:] {
            let p = field.split(separator: ":")
            guard p.count == 2, let n = Int64(p[0]), let v = Int64(value) else { continue }
            var t = out[n] ?? (0, 0, 0)
            switch p[1] { case "g": t.g = v; case "s": t.s = v; case "d": t.d = v; default: break }
            out[n] = t
        }
        return out
    }

    /// The run's events, oldest first, as field maps.
    func events(_ run: String) async throws -> [[String: String]] {
        (try await c.send(["XRANGE", RunKeys(run: run).events, "-", "+"]).array ?? []).compactMap { $0.array?.last?.hash }
    }

    /// SIGTERM to every worker still running; each must exit 0 (after its last flush).
    mutating func stopWorkers() async {
        for (id, w) in workers where w.isRunning {
            w.send(SIGTERM)
            let code = await w.wait()
            #expect(code == 0, "worker \(id) exited \(code): \(w.output.tail())")
        }
        workers = [:]
    }

    func waitForState(_ run: String, _ wanted: Set<String>) async throws -> String {
        var state = ""
        try await waitFor("run \(run) to be \(wanted.sorted())", timeout: .seconds(60), every: .milliseconds(100)) {
            // After a Redis restart the first call on an old connection fails; the next reconnects.
            state = (try? await c.send(["HGET", RunKeys(run: run).ctl, "state"]))?.string ?? ""
            return wanted.contains(state)
        }
        return state
    }

    /// Prints the per-second counts of the run at the sink (the figures for docs/FAILURES.md).
    func report(_ label: String, from t0: Int64, seconds n: Int64) async throws {
        let counts = try await seconds()
        print("figures \(label): per second at the sink from tick 0: " + (t0..<(t0 + n)).map { String(counts[$0] ?? 0) }.joined(separator: " "))
    }

    /// Per-second counts at the sink, keyed by unix second.
    func seconds() async throws -> [Int64: Int64] {
        Self.seconds(try await sink.stats())
    }

    /// `stats`' per-second counts, keyed by unix second.
    static func seconds(_ stats: SinkStats) -> [Int64: Int64] {
        Dictionary(uniqueKeysWithValues: stats.by_second.map { ($0.t, $0.n) })
    }

    /// How many of `run`'s leases each worker holds now.
    func leasesByWorker(_ run: String) async throws -> [String: Int] {
        var held: [String: Int] = [:]
        for o in (try await c.send(["HGETALL", RunKeys(run: run).owners]).hash ?? [:]).values { held[String(o.split(separator: "|").first ?? ""), default: 0] += 1 }
        return held
    }

    func stop() async {
        for w in workers.values where w.isRunning { w.send(SIGKILL) }
        supervisor.send(SIGKILL)
        for w in workers.values { _ = await w.wait() }
        _ = await supervisor.wait()
        await sink.stop()
        await redis.stop()
    }
}

extension EndToEndTests {
    @Test("kill -9 one of three workers at 300/s: back within 5 % of target by TTL + 1 tick after the kill; nothing doubled")
    func killOneOfThree() async throws {
        var cluster = try await Cluster.start(workers: 3)
        let (run, t0) = try await cluster.submitHold(rate: 300, seconds: 16)
        let killAt = t0 + 5
        try await cluster.waitUntil(second: killAt)
        cluster.workers["w1"]!.send(SIGKILL)
        _ = await cluster.workers["w1"]!.wait()
        _ = try await cluster.waitForState(run, ["finished"])
        try await cluster.report("kill -9 w1 at second 5", from: t0, seconds: 16)
        let seconds = try await cluster.seconds()
        // TTL (3 s) + 1 tick after the kill, every whole second is within 5 % of 300.
        for s in (killAt + 4)..<(t0 + 16) {
            #expect((seconds[s] ?? 0) >= 285, "second \(s - t0) of the run: \(seconds[s] ?? 0) at the sink")
        }
        // Before the kill, all 300 every second.
        for s in t0..<killAt { #expect((seconds[s] ?? 0) >= 285, "second \(s - t0): \(seconds[s] ?? 0)") }
        cluster.workers["w1"] = nil
        await cluster.stopWorkers()
        let stats = try await cluster.sink.stats()
        #expect(stats.requests <= 4800, "more than the curve asked for: \(stats.requests)")
        // Per tick: granted = started + dropped + lost, where lost (granted to w1 and never
        // reported) is only around the kill, and the sink got what was started plus at most
        // what was lost with w1.
        let ticks = try await cluster.ticks(run)
        let killTick = killAt - t0
        for n in Int64(0)..<16 {
            let t = ticks[n] ?? (0, 0, 0)
            let atSink = stats.by_tick[String(n)] ?? 0
            let lost = t.g - t.s - t.d
            #expect(t.g <= 300 && lost >= 0, "tick \(n): \(t)")
            #expect(atSink >= t.s && atSink <= t.s + lost, "tick \(n): \(atSink) at the sink, \(t)")
            if lost > 0 { #expect(n >= killTick - 2 && n <= killTick + 1, "tick \(n) lost \(lost)") }
        }
        let s = try await J4Binary.summary(run, redis: cluster.redis)
        let (target, started, dropped, unclaimed, lost) = (s["target"] as? Int ?? -1, s["started"] as? Int ?? -1, s["dropped"] as? Int ?? -1, s["unclaimed"] as? Int ?? -1, s["lost"] as? Int ?? -1)
        print("figures kill -9: target \(target) started \(started) dropped \(dropped) unclaimed \(unclaimed) lost \(lost), sink \(stats.requests)")
        #expect(target == 4800 && started + dropped + unclaimed + lost == target, "\(s)")
        #expect(Int(stats.requests) >= started && Int(stats.requests) <= started + lost)
        let events = try await cluster.events(run)
        // w1's shards change hands on the record: taken over from w1 by a survivor, or reaped
        // as expired leases of w1 by the supervisor first (whichever comes first after its TTL).
        #expect(events.contains { ($0["type"] == "takeover" && $0["from"] == "w1") || ($0["type"] == "lease_expired" && $0["worker"] == "w1") }, "\(events)")
        await cluster.stop()
    }

    @Test("SIGTERM one of three workers at 300/s: no second below 95 % of target; the worker exits 0")
    func sigtermOneOfThree() async throws {
        var cluster = try await Cluster.start(workers: 3)
        let (run, t0) = try await cluster.submitHold(rate: 300, seconds: 12)
        try await cluster.waitUntil(second: t0 + 4)
        let leaver = cluster.workers["w1"]!
        leaver.send(SIGTERM)
        #expect(await leaver.wait() == 0)
        _ = try await cluster.waitForState(run, ["finished"])
        try await cluster.report("SIGTERM w1 at second 4", from: t0, seconds: 12)
        let stats = try await cluster.sink.stats()
        let seconds = Dictionary(uniqueKeysWithValues: stats.by_second.map { ($0.t, $0.n) })
        for s in t0..<(t0 + 12) {
            #expect((seconds[s] ?? 0) >= 285, "second \(s - t0) of the run: \(seconds[s] ?? 0) at the sink")
        }
        #expect(stats.requests == 3600)
        cluster.workers["w1"] = nil
        await cluster.stopWorkers()
        let s = try await J4Binary.summary(run, redis: cluster.redis)
        #expect(s["started"] as? Int == 3600 && s["target"] as? Int == 3600 && s["lost"] as? Int == 0, "\(s)")
        let events = try await cluster.events(run)
        #expect(events.contains { $0["type"] == "released" && $0["worker"] == "w1" && $0["reason"] == "shutdown" && $0["count"] != "0" }, "\(events)")
        await cluster.stop()
    }

    @Test("two workers, then two more join mid-hold: fair shares within 3 s, every tick claimed, exact accounting")
    func scaleOut() async throws {
        var cluster = try await Cluster.start(workers: 2)
        let (run, t0) = try await cluster.submitHold(rate: 200, seconds: 12, shards: 16)
        try await cluster.waitUntil(second: t0 + 3)
        try await cluster.addWorker("w2")
        try await cluster.addWorker("w3")
        // Within 3 s of the newcomers' first leases, each of the four holds its fair share ± 1.
        var held: [String: Int] = [:]
        try await waitFor("w2 and w3 hold leases", timeout: .seconds(15), every: .milliseconds(20)) {
            let owners = try await cluster.leasesByWorker(run)
            return owners["w2"] != nil && owners["w3"] != nil
        }
        try? await waitFor("fair shares", timeout: .seconds(3)) {
            held = try await cluster.leasesByWorker(run)
            return held.count == 4 && held.values.allSatisfy { abs($0 - 4) <= 1 }
        }
        #expect(held.count == 4 && held.values.allSatisfy { abs($0 - 4) <= 1 }, "\(held)")
        _ = try await cluster.waitForState(run, ["finished"])
        try await cluster.report("w2, w3 join at second 3", from: t0, seconds: 12)
        await cluster.stopWorkers()
        let stats = try await cluster.sink.stats()
        let s = try await J4Binary.summary(run, redis: cluster.redis)
        let (started, dropped, unclaimed, lost) = (s["started"] as? Int ?? -1, s["dropped"] as? Int ?? -1, s["unclaimed"] as? Int ?? -1, s["lost"] as? Int ?? -1)
        print("figures join: started \(started) dropped \(dropped) unclaimed \(unclaimed) lost \(lost), sink \(stats.requests)")
        // Every tick claimed and every iteration accounted for, each counted one at the sink.
        // On a quiet machine all 2400 start; two processes starting on a busy 2-core CI
        // machine may stall a worker past an iteration's late tolerance, and J4 then drops it
        // as late rather than send it late: a handful at most.
        #expect(unclaimed == 0 && lost == 0 && started + dropped == 2400, "\(s)")
        #expect(stats.requests == Int64(started) && dropped <= 12, "sink \(stats.requests), \(s)")
        // w0 and w1 shed down to their fair share when the others joined.
        let events = try await cluster.events(run)
        #expect(events.contains { $0["type"] == "released" && $0["reason"] == "shed" }, "\(events)")
        await cluster.stop()
    }

    @Test("kill the leading supervisor while a standby runs: every tick has its target, the load stays on the curve")
    func supervisorFailover() async throws {
        let cluster = try await Cluster.start(workers: 2)
        let standby = try J4Binary.start(["supervisor", "--redis", cluster.redis.url, "--id", "s1"])
        let (run, t0) = try await cluster.submitHold(rate: 200, seconds: 12)
        try await cluster.waitUntil(second: t0 + 3)
        let leader = try await cluster.c.send(["GET", GlobalKeys.leader]).string ?? ""
        #expect(leader.hasPrefix("s0|"), "the first supervisor leads: \(leader)")
        cluster.supervisor.send(SIGKILL)
        _ = await cluster.supervisor.wait()
        #expect(try await cluster.waitForState(run, ["finished"]) == "finished")
        try await cluster.report("leading supervisor killed at second 3", from: t0, seconds: 12)
        let plan = try await cluster.c.send(["HGETALL", RunKeys(run: run).plan]).hash ?? [:]
        #expect((0...12).allSatisfy { plan[String($0)] != nil }, "ticks without a target: \((0...12).filter { plan[String($0)] == nil })")
        let stats = try await cluster.sink.stats()
        #expect(stats.requests == 2400)
        let seconds = try await cluster.seconds()
        for s in t0..<(t0 + 12) { #expect((seconds[s] ?? 0) >= 190, "second \(s - t0): \(seconds[s] ?? 0)") }
        let events = try await cluster.c.send(["XRANGE", RunKeys(run: run).events, "-", "+"]).array ?? []
        #expect(events.contains { $0.array?.last?.hash?["type"] == "supervisor" && $0.array?.last?.hash?["holder"] == "s1" && $0.array?.last?.hash?["previous"] == "s0" })
        standby.send(SIGTERM)
        #expect(await standby.wait() == 0)
        await cluster.stop()
    }

    @Test("redis-server stopped for 5 s mid-run: load stops within a TTL, resumes, workers stay up, accounting exact")
    func redisOutage() async throws {
        // AOF on, so the run survives the restart, as it would on a production Redis.
        var cluster = try await Cluster.start(workers: 2, redisArguments: ["--appendonly", "yes", "--appendfsync", "always"])
        let (run, t0) = try await cluster.submitHold(rate: 100, seconds: 16, shards: 8)
        try await cluster.waitUntil(second: t0 + 3)
        await cluster.redis.kill(SIGTERM)
        let before = try await cluster.sink.stats().requests
        try await Task.sleep(for: .seconds(5))  // the outage itself: the test's input, not a wait for an event
        let during = try await cluster.sink.stats().requests
        try await cluster.redis.restart()
        #expect(try await cluster.waitForState(run, ["finished"]) == "finished")
        try await cluster.report("redis-server down from second 3 for 5 s", from: t0, seconds: 16)
        // Within one TTL (3 s) of the outage every worker fenced itself: at most 3 s of load after it.
        #expect(during - before <= 300, "sent during the outage: \(during - before)")
        let seconds = try await cluster.seconds()
        // The restarted server is a new process: the first claim on it sets the barrier two
        // ticks ahead (a grant it lost cannot be made again), after the workers' reconnect
        // backoff. The server is back at about second 8: the barrier is at 13 at the latest,
        // and the load is back in full from it to the end.
        let barrier = Int64((try await cluster.events(run)).first { $0["type"] == "redis_changed" }?["barrier_tick"] ?? "") ?? 99
        #expect(barrier >= 10 && barrier <= 13, "barrier tick \(barrier)")
        for s in (t0 + min(barrier, 16))..<(t0 + 16) { #expect((seconds[s] ?? 0) >= 95, "second \(s - t0) after the restart: \(seconds[s] ?? 0)") }
        for (id, w) in cluster.workers { #expect(w.isRunning, "worker \(id) exited: \(w.output.tail())") }
        await cluster.stopWorkers()
        let s = try await J4Binary.summary(run, redis: cluster.redis)
        let (target, started, dropped, unclaimed, lost) = (s["target"] as? Int ?? -1, s["started"] as? Int ?? -1, s["dropped"] as? Int ?? -1, s["unclaimed"] as? Int ?? -1, s["lost"] as? Int ?? -1)
        let atSink = Int(try await cluster.sink.stats().requests)
        print("figures redis outage: target \(target) started \(started) dropped \(dropped) unclaimed \(unclaimed) lost \(lost), sink \(atSink)")
        // A claim that ran just before the server went down but whose reply never came back
        // is granted and never fired: it shows as lost, not as a hole in the accounting.
        #expect(target == 1600 && started + dropped + unclaimed + lost == target, "\(s)")
        #expect(unclaimed > 0)
        #expect(atSink == started)
        await cluster.stop()
    }

    @Test("SIGSTOP a worker for 2 × TTL, then SIGCONT: the others take over, nothing is sent twice or late, it stays up")
    func stalledWorker() async throws {
        var cluster = try await Cluster.start(workers: 3)
        let (run, t0) = try await cluster.submitHold(rate: 300, seconds: 16)
        try await cluster.waitUntil(second: t0 + 3)
        let stalled = cluster.workers["w1"]!
        stalled.send(SIGSTOP)
        try await cluster.waitUntil(second: t0 + 9)
        stalled.send(SIGCONT)
        #expect(try await cluster.waitForState(run, ["finished"]) == "finished")
        try await cluster.report("w1 stopped from second 3 to 9", from: t0, seconds: 16)
        let stats = try await cluster.sink.stats()
        let seconds = Dictionary(uniqueKeysWithValues: stats.by_second.map { ($0.t, $0.n) })
        // A resumed worker fires none of its stale iterations: its backlog (a third of the
        // load for the ticks it held) would show as a burst. An iteration up to a tenth of a
        // tick late may still cross into the next second at the sink, hence 10 %.
        for s in t0..<(t0 + 16) { #expect((seconds[s] ?? 0) <= 330, "second \(s - t0): \(seconds[s] ?? 0)") }
        #expect(stats.requests <= 4800)
        let granted = try await cluster.c.send(["HGET", RunKeys(run: run).ctl, "granted"]).int ?? -1
        #expect(granted <= 4800)
        // The survivors take its shards within TTL + 1 tick.
        for s in (t0 + 7)..<(t0 + 9) { #expect((seconds[s] ?? 0) >= 285, "second \(s - t0): \(seconds[s] ?? 0)") }
        #expect(stalled.isRunning)
        // Every (tick, shard) the sink got load for came from one worker, the one claim.lua
        // granted it to: w1 sent nothing for the shards it lost, before or after SIGCONT.
        let attribution = try await cluster.sink.attribution()
        #expect(attribution.overflow == 0 && !attribution.by_tick_shard.isEmpty)
        var claims: [Int64: [String: String]] = [:]
        for n in Int64(0)..<16 { claims[n] = try await cluster.c.send(["HGETALL", RunKeys(run: run).claims(tick: n)]).hash ?? [:] }
        var fromStalled = 0
        for (key, senders) in attribution.by_tick_shard {
            let p = key.split(separator: "/").map(String.init)
            guard p.count == 2, let n = Int64(p[0]) else { Issue.record("bad attribution key \(key)"); continue }
            #expect(senders.count == 1, "(tick, shard) \(key) was sent by \(senders)")
            let holder = claims[n]?[p[1]]?.split(separator: "|").first.map(String.init)
            for worker in senders.keys { #expect(worker == holder, "(tick, shard) \(key): sent by \(worker), granted to \(holder ?? "nobody")") }
            if senders["w1"] != nil && n >= 3 { fromStalled += 1 }
        }
        print("figures SIGSTOP: (tick, shard) pairs sent by w1 from tick 3 on, each one granted to it: \(fromStalled)")
        await cluster.stopWorkers()
        let events = try await cluster.events(run)
        #expect(events.contains { $0["type"] == "lost" && $0["worker"] == "w1" }, "\(events)")
        await cluster.stop()
    }

    @Test("j4 scale from 100/s to 300/s mid-hold: the sink follows within 2 ticks; the total is the scaled curve's")
    func scaleUp() async throws {
        var cluster = try await Cluster.start(workers: 2)
        let (run, t0) = try await cluster.submitHold(rate: 100, seconds: 12)
        try await cluster.waitUntil(second: t0 + 3)
        let (code, out) = try await J4Binary.run(["scale", run, "--target", "300", "--redis", cluster.redis.url])
        #expect(code == 0, "\(out)")
        let from = Int64(out.split(separator: " ").last?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? -1
        #expect(from >= 4 && from <= 6, "\(out)")
        #expect(try await cluster.waitForState(run, ["finished"]) == "finished")
        try await cluster.report("scale 100 → 300/s asked at second 3", from: t0, seconds: 12)
        let counted = try await cluster.sink.stats()
        let seconds = Cluster.seconds(counted)
        // Exact per tick (each request names its tick): 100 before the scale's tick, 300 from it on.
        let byTick = counted.by_tick
        for n in 0..<Int64(12) { #expect(byTick[String(n)] == (n < from ? 100 : 300), "tick \(n): \(byTick[String(n)] ?? 0)") }
        // Per second: an iteration sent up to its late tolerance (100 ms) after its start may
        // arrive in the next second on a loaded machine.
        for s in t0..<(t0 + from) { #expect((seconds[s] ?? 0) <= 110, "second \(s - t0): \(seconds[s] ?? 0)") }
        // Per second at the sink, within 2 %: iterations near a second's boundary land on either side of it.
        // Within 10 %: an iteration sent up to its late tolerance (100 ms here) after its
        // intended start may cross into the next second at the sink on a stalled machine.
        for s in (t0 + from)..<(t0 + 12) { #expect(abs((seconds[s] ?? 0) - 300) <= 30, "second \(s - t0): \(seconds[s] ?? 0)") }
        await cluster.stopWorkers()
        let stats = try await cluster.sink.stats()
        #expect(stats.requests == 100 * from + 300 * (12 - from))
        let s = try await J4Binary.summary(run, redis: cluster.redis)
        #expect(s["target"] as? Int == Int(stats.requests) && s["started"] as? Int == Int(stats.requests), "\(s)")
        await cluster.stop()
    }

    @Test("no supervisor at all: the load stops when the published horizon runs out (safe, not runaway)")
    func noSupervisor() async throws {
        var cluster = try await Cluster.start(workers: 2)
        let (run, t0) = try await cluster.submitHold(rate: 100, seconds: 30, shards: 8)
        try await cluster.waitUntil(second: t0 + 3)
        cluster.supervisor.send(SIGKILL)
        _ = await cluster.supervisor.wait()
        // The supervisor published about 10 ticks ahead; wait well past that.
        try await cluster.waitUntil(second: t0 + 18)
        let lastPublished = (try await cluster.c.send(["HKEYS", RunKeys(run: run).plan]).array ?? []).compactMap { $0.string.flatMap { Int64($0) } }.max() ?? -1
        try await cluster.report("the only supervisor killed at second 3", from: t0, seconds: 18)
        let counted = try await cluster.sink.stats()
        let seconds = Cluster.seconds(counted)
        try #require(lastPublished >= 12 && lastPublished < 18, "last published tick \(lastPublished)")
        // Full load while ticks have targets; nothing once they run out (claims need F(n) and F(n+1)).
        for s in t0..<(t0 + lastPublished - 1) { #expect((seconds[s] ?? 0) >= 95, "second \(s - t0): \(seconds[s] ?? 0)") }
        // By tick (each request names its own): nothing from tick L = lastPublished on. By
        // arrival second, second L may still hold the tail of tick L - 1, sent up to its late
        // tolerance (100 ms) after its start at +990 ms; nothing after it.
        let byTick = counted.by_tick
        for n in lastPublished..<30 { #expect((byTick[String(n)] ?? 0) == 0, "tick \(n): \(byTick[String(n)] ?? 0)") }
        #expect((seconds[t0 + lastPublished] ?? 0) <= 10, "second \(lastPublished): \(seconds[t0 + lastPublished] ?? 0)")
        for s in (t0 + lastPublished + 1)..<(t0 + 18) { #expect((seconds[s] ?? 0) == 0, "second \(s - t0): \(seconds[s] ?? 0)") }
        #expect(try await cluster.c.send(["HGET", RunKeys(run: run).ctl, "state"]).string == "running")
        await cluster.stopWorkers()
        await cluster.stop()
    }

    @Test("j4 stop ends the load at the next tick boundary, j4 abort within one tick: measured at the sink, exact per tick", arguments: ["stop", "abort"])
    func stopAndAbort(command: String) async throws {
        var cluster = try await Cluster.start(workers: 2)
        let (run, t0) = try await cluster.submitHold(rate: 100, seconds: 30, shards: 4)
        // Asked 100 ms into tick 3, well before the next tick's claims go out (200 ms before it).
        try await cluster.waitUntil(ms: (t0 + 3) * 1000 + 100)
        let (code, out) = try await J4Binary.run([command, run, "--redis", cluster.redis.url])
        #expect(code == 0, "\(out)")
        let final = command == "stop" ? "stopped" : "aborted"
        #expect(try await cluster.waitForState(run, [final]) == final)
        await cluster.stopWorkers()
        let events = try await cluster.events(run)
        let asked = events.first { $0["type"] == (command == "stop" ? "stop" : "aborted") }
        let at = Int64(asked?["at"] ?? "") ?? -1, stopTick = Int64(asked?["stop_tick"] ?? "") ?? -1
        let nowTick = (at - t0 * 1000) / 1000
        // The next boundary, unless a worker had already claimed the next tick (it cannot be taken back).
        let nextClaimed = try await cluster.c.send(["EXISTS", RunKeys(run: run).claims(tick: nowTick + 1)]).int == 1
        #expect(stopTick == nowTick + 1 || (stopTick == nowTick + 2 && nextClaimed), "asked in tick \(nowTick), stop_tick \(stopTick)")
        let stats = try await cluster.sink.stats()
        let ticks = try await cluster.ticks(run)
        for n in Int64(0)..<30 {
            let t = ticks[n] ?? (0, 0, 0)
            let atSink = stats.by_tick[String(n)] ?? 0
            if n >= stopTick {
                #expect(atSink == 0 && t.g == 0, "tick \(n) at or after stop_tick \(stopTick): \(atSink) at the sink, \(t)")
                continue
            }
            #expect(t.g == 100 && t.s + t.d == t.g, "tick \(n): \(t)")
            if command == "stop" || n < nowTick {
                #expect(atSink == t.s, "tick \(n): \(atSink) at the sink, \(t)")
            } else {
                // Aborted: what was in flight may have been cancelled before it was sent.
                #expect(atSink <= t.s, "tick \(n): \(atSink) at the sink, \(t)")
            }
        }
        let last = stats.last_ms ?? 0
        print("figures \(command): asked \(at - (t0 + nowTick) * 1000) ms into tick \(nowTick), stop_tick \(stopTick), last request at the sink \(last - at) ms after the ask (\(last - (t0 + stopTick) * 1000) ms from the stop boundary)")
        if command == "abort" { #expect(last - at <= 1000, "a request reached the sink \(last - at) ms after the abort") }
        let s = try await J4Binary.summary(run, redis: cluster.redis)
        let (target, started, dropped, unclaimed, lost) = (s["target"] as? Int ?? -1, s["started"] as? Int ?? -1, s["dropped"] as? Int ?? -1, s["unclaimed"] as? Int ?? -1, s["lost"] as? Int ?? -1)
        #expect(target == Int(stopTick) * 100 && started + dropped + unclaimed + lost == target && lost == 0, "\(s)")
        // j4 status shows the request among the recent events, with who asked and when.
        let (_, status) = try await J4Binary.run(["status", run, "--redis", cluster.redis.url])
        #expect(status.contains("recent events") && status.contains(command == "stop" ? " stop by=cli:" : " aborted by=cli:"), "\(status)")
        await cluster.stop()
    }
}
