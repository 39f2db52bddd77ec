import Foundation
import J4Core
import J4Redis
import J4Runtime
import J4TestSupport
import Testing

/// Bad state cannot hurt: each key of a live run is broken in turn (one run per way of
/// breaking it, all at once, beside a healthy run) while a real supervisor and two workers
/// serve them.
extension EndToEndTests {
    /// One way of breaking a run, done with raw commands on `keys`; `tick` and `second` are
    /// the run's current tick and the server's current second.
    struct Breakage: Sendable, CustomStringConvertible {
        var description: String
        /// True when the run must end failed; false when J4 heals it (the run finishes).
        var fails: Bool
        var commands: @Sendable (_ keys: RunKeys, _ tick: Int64, _ second: Int64) -> [[String]]
    }

    static func wrongType(_ key: @escaping @Sendable (RunKeys, Int64, Int64) -> [String]) -> @Sendable (RunKeys, Int64, Int64) -> [[String]] {
        { k, t, s in key(k, t, s).flatMap { [["DEL", $0], ["SET", $0, "not what J4 wrote"]] } }
    }

    static let breakages: [Breakage] = [
        Breakage(description: "ctl missing", fails: true) { k, _, _ in [["DEL", k.ctl]] },
        Breakage(description: "ctl of the wrong type", fails: true, commands: wrongType { k, _, _ in [k.ctl] }),
        Breakage(description: "ctl of an unknown schema version", fails: true) { k, _, _ in [["HSET", k.ctl, "schema", "999"]] },
        Breakage(description: "ctl definition truncated", fails: true) { k, _, _ in [["EVAL", "local d = redis.call('HGET', KEYS[1], 'definition') redis.call('HSET', KEYS[1], 'definition', string.sub(d, 1, #d / 2))", "1", k.ctl]] },
        Breakage(description: "ctl shards not a number", fails: true) { k, _, _ in [["HSET", k.ctl, "shards", "abc"]] },
        Breakage(description: "ctl tick_ms not a number", fails: true) { k, _, _ in [["HSET", k.ctl, "tick_ms", "1e999x"]] },
        Breakage(description: "ctl scales garbage", fails: true) { k, _, _ in [["HSET", k.ctl, "scales", "-9223372036854775807:1000:0"]] },
        Breakage(description: "plan of the wrong type", fails: true, commands: wrongType { k, _, _ in [k.plan] }),
        Breakage(description: "leases missing", fails: true) { k, _, _ in [["DEL", k.leases]] },
        Breakage(description: "leases of the wrong type", fails: true, commands: wrongType { k, _, _ in [k.leases] }),
        Breakage(description: "owners of the wrong type", fails: true, commands: wrongType { k, _, _ in [k.owners] }),
        Breakage(description: "workers of the wrong type", fails: true, commands: wrongType { k, _, _ in [k.workers] }),
        Breakage(description: "the next ticks' claims of the wrong type", fails: true, commands: wrongType { k, t, _ in (t + 1...t + 8).map { k.claims(tick: $0) } }),
        Breakage(description: "ticks of the wrong type", fails: true, commands: wrongType { k, _, _ in [k.ticks] }),
        Breakage(description: "the next seconds' metrics of the wrong type", fails: true, commands: wrongType { k, _, s in (s - 2...s + 8).map { k.metrics(second: $0) } }),
        Breakage(description: "totals of the wrong type", fails: true, commands: wrongType { k, _, _ in [k.totals] }),
        Breakage(description: "seqs of the wrong type", fails: true, commands: wrongType { k, _, _ in [k.flushSeqs] }),
        Breakage(description: "slow of the wrong type", fails: true, commands: wrongType { k, _, _ in [k.slow] }),
        Breakage(description: "events of the wrong type", fails: true, commands: wrongType { k, _, _ in [k.events] }),
        // What J4 recreates as it goes: gone is not broken.
        Breakage(description: "plan missing", fails: false) { k, _, _ in [["DEL", k.plan]] },
        Breakage(description: "owners missing", fails: false) { k, _, _ in [["DEL", k.owners]] },
        Breakage(description: "workers missing", fails: false) { k, _, _ in [["DEL", k.workers]] },
        Breakage(description: "totals, seqs and events missing", fails: false) { k, _, _ in [["DEL", k.totals, k.flushSeqs, k.events]] },
    ]

    @Test("corrupt state: each key of a live run broken in turn fails that run with an event saying why (or is healed); a healthy run beside them gets every request; no process dies")
    func corruption() async throws {
        let redis = try await EmbeddedRedis.start()
        let healthySink = try await SinkProcess.start()
        let otherSink = try await SinkProcess.start()
        let c = redis.connect()
        let processes = try startSupervisorAndWorkers(url: redis.url, workers: 2)
        try await waitForWorkers(["w0", "w1"], on: c)
        func submit(_ target: String, rate: Int) async throws -> String {
            try await submitRun(try holdDefinition(rate: rate, seconds: 12, shards: 4, target: target), ["--redis", redis.url])
        }
        let healthy = try await submit(healthySink.url, rate: 50)
        var broken: [(Breakage, String)] = []
        for b in Self.breakages { broken.append((b, try await submit(otherSink.url, rate: 10))) }
        for (_, run) in broken {
            try await waitFor("\(run) running", timeout: .seconds(20)) { try await c.send(["HGET", RunKeys(run: run).ctl, "state"]).string == "running" }
        }
        // Once each run has metrics flushed and a tick claimed: break each run its own way.
        for (_, run) in broken {
            let keys = RunKeys(run: run)
            try await waitFor("\(run) flushed and claimed", timeout: .seconds(20), every: .milliseconds(100)) {
                let flushed = try await c.send(["HEXISTS", keys.totals, "started"]).int == 1
                let claimed = try await c.send(["HEXISTS", keys.ticks, "1:g"]).int == 1
                return flushed && claimed
            }
        }
        for (b, run) in broken {
            let keys = RunKeys(run: run)
            let time = try await c.send(["TIME"]).array?.first?.string.flatMap { Int64($0) } ?? 0
            let start = try await c.send(["HGET", keys.ctl, "start_ms"]).string.flatMap { Int64($0) } ?? 0
            let tick = max(0, (time * 1000 - start) / 1000)
            for command in b.commands(keys, tick, time) { _ = try await c.send(command) }
        }

        let (waitCode, waitOut) = try await J4Binary.run(["wait", healthy, "--redis", redis.url, "--timeout", "60s"])
        #expect(waitCode == 0, "\(waitOut)")
        for (b, run) in broken {
            let keys = RunKeys(run: run)
            // Every run leaves the active set: failed ones at once, healed ones when they end.
            try await waitFor("\(b): \(run) no longer active", timeout: .seconds(30)) { try await c.send(["SISMEMBER", GlobalKeys.active, run]).int == 0 }
            let ctlIsHash = try await c.send(["TYPE", keys.ctl]).string == "hash"
            let state = ctlIsHash ? try await c.send(["HGET", keys.ctl, "state"]).string : nil
            let events = (try? await Self.events(run, c)) ?? []
            var failure = events.last { $0["type"] == "failed" }?["reason"]
            if failure == nil, ctlIsHash { failure = try await c.send(["HGET", keys.ctl, "failure"]).string }
            if b.fails {
                #expect(failure != nil && (state == nil || state == "failed"), "\(b): state \(state ?? "-"), failure \(failure ?? "-")")
            } else {
                #expect(state == "finished" && failure == nil, "\(b): state \(state ?? "-"), failure \(failure ?? "-")")
            }
            print("figures corruption: \(b) → \(state ?? "no ctl"): \(failure ?? "-")")
        }
        // The healthy run beside them: every iteration, at its sink.
        let s = try await J4Binary.summary(healthy, redis: redis)
        #expect(s["state"] as? String == "finished" && s["started"] as? Int == 600 && s["ok"] as? Int == 600, "\(s)")
        #expect(try await healthySink.stats().requests == 600)
        // Nobody died: each process still answers SIGTERM with a clean exit.
        for p in processes { p.send(SIGTERM) }
        for p in processes { #expect(await p.wait() == 0, "\(p.output.tail())") }
        await healthySink.stop()
        await otherSink.stop()
        await redis.stop()
    }
}
