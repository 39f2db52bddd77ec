import Foundation
import J4Core
import J4Redis
import J4Runtime
import J4TestSupport
import Testing

extension EndToEndTests {
    /// The keys of `run` still in Redis that would outlive a minute: none once it is deleted
    /// (grant records of ticks the run had moved past expire within a minute by themselves).
    static func lastingKeys(_ run: String, on c: RedisConnection) async throws -> [String] {
        let keys = try await c.send(["KEYS", RunKeys(run: run).ctl.dropLast(3) + "*"]).array?.compactMap(\.string) ?? []
        var lasting: [String] = []
        for key in keys {
            let ttl = try await c.send(["PTTL", key]).int ?? -1
            if !(key.contains(":claims:") && ttl > 0 && ttl <= 60_000) { lasting.append(key) }
        }
        return lasting
    }

    @Test("retention: j4 delete refuses a running run (exit 2, nothing deleted) and --force aborts it first; a supervisor with --retain deletes an ended run and keeps the running one")
    func deleteAndRetain() async throws {
        let redis = try await EmbeddedRedis.start()
        let sink = try await SinkProcess.start()
        let c = redis.connect()
        let processes = [
            try J4Binary.start(["supervisor", "--redis", redis.url, "--id", "s0", "--retain", "3s"]),
            try J4Binary.start(["worker", "--redis", redis.url, "--id", "w0"]),
        ]
        try await waitForWorkers(["w0"], on: c)
        let long = try await submitRun(try holdDefinition(rate: 20, seconds: 60, shards: 2, target: sink.url), ["--redis", redis.url])
        let short = try await submitRun(try holdDefinition(rate: 20, seconds: 2, shards: 2, target: sink.url), ["--redis", redis.url])
        try await waitFor("both runs to start", timeout: .seconds(15)) {
            for run in [long, short] where try await c.send(["HGET", RunKeys(run: run).ctl, "state"]).string != "running" { return false }
            return true
        }

        let (code, out) = try await J4Binary.run(["delete", long, "--redis", redis.url])
        #expect(code == 2 && out.contains("is running") && out.contains("--force"), "\(out)")
        #expect(try await c.send(["HGET", RunKeys(run: long).ctl, "state"]).string == "running")
        #expect(try await c.send(["ZSCORE", GlobalKeys.runs, long]).string != nil)

        // The short run ends; 3 s later (and once its worker has let go) the supervisor deletes it.
        try await waitFor("the ended run deleted by retention", timeout: .seconds(40), every: .milliseconds(250)) {
            try await c.send(["ZSCORE", GlobalKeys.runs, short]).string == nil
        }
        let shortLeft = try await Self.lastingKeys(short, on: c)
        #expect(shortLeft.isEmpty, "\(shortLeft)")
        #expect(try await c.send(["HGET", RunKeys(run: long).ctl, "state"]).string == "running", "the running run is kept")

        let (forced, forcedOut) = try await J4Binary.run(["delete", long, "--force", "--redis", redis.url])
        #expect(forced == 0 && forcedOut.contains("deleted"), "\(forcedOut)")
        let longLeft = try await Self.lastingKeys(long, on: c)
        #expect(longLeft.isEmpty, "\(longLeft)")
        let (again, againOut) = try await J4Binary.run(["delete", long, "--redis", redis.url])
        #expect(again == 2 && againOut.contains("no run"), "\(againOut)")
        let (status, statusOut) = try await J4Binary.run(["status", long, "--redis", redis.url])
        #expect(status == 2, "\(statusOut)")

        for p in processes { p.send(SIGTERM) }
        for p in processes { #expect(await p.wait() == 0) }
        await sink.stop()
        await redis.stop()
    }
}

extension EndToEndTests {
    @Test("compaction: a supervisor with --detail 2s folds a 100 ms run's settled ticks and older seconds; every count stays exact at the sink, in the sums and in the report; j4 delete removes the folded minutes too")
    func compaction() async throws {
        let redis = try await EmbeddedRedis.start()
        for bad in ["5x", "500ms", "200h"] {
            let (code, out) = try await J4Binary.run(["supervisor", "--redis", redis.url, "--detail", bad])
            #expect(code == 2 && out.contains("--detail") && out.contains(bad) && out.contains("from 1s to 168h"), "\(bad): \(out)")
        }
        let sink = try await SinkProcess.start()
        let c = redis.connect()
        let processes = [
            try J4Binary.start(["supervisor", "--redis", redis.url, "--id", "s0", "--detail", "2s"]),
            try J4Binary.start(["worker", "--redis", redis.url, "--id", "w0"]),
            try J4Binary.start(["worker", "--redis", redis.url, "--id", "w1"]),
        ]
        try await waitForWorkers(["w0", "w1"], on: c)
        let file = try temporaryFile("""
            name: compaction
            scenario: http
            model: arrival-rate
            start: 40
            stages: [{ duration: 4s, target: 80 }, { duration: 8s, target: 80 }]
            tick: 100ms
            shards: 5
            params: { request: { url: "\(sink.url)" } }
            """)
        let run = try await submitRun(file, ["--redis", redis.url])
        let keys = RunKeys(run: run)
        try await waitFor("the run to end", timeout: .seconds(60), every: .milliseconds(250)) {
            try await c.send(["SISMEMBER", GlobalKeys.active, run]) == .integer(0)
        }
        for p in processes { p.send(SIGTERM) }
        for p in processes { #expect(await p.wait() == 0) }

        let served = try await sink.stats().requests
        let ctl = try await c.send(["HGETALL", keys.ctl]).hash ?? [:]
        let compacted = Int64(ctl["compacted_tick"] ?? "") ?? 0
        // 12 s of 100 ms ticks, all but the last 2 s (20 ticks) and the two around the end folded.
        #expect(compacted >= 90, "compacted_tick \(compacted)")
        let plan = try await c.send(["HKEYS", keys.plan]).array?.compactMap { $0.string.flatMap { Int64($0) } } ?? []
        #expect(plan.allSatisfy { $0 >= compacted }, "plan fields below \(compacted): \(plan.filter { $0 < compacted })")
        let ticks = try await c.send(["HGETALL", keys.ticks]).hash ?? [:]
        func total(_ what: String) -> Int64 { ticks.filter { $0.key.hasSuffix(":\(what)") }.values.reduce(0) { $0 + (Int64($1) ?? 0) } }
        #expect(ticks["settled:g"] != nil && ticks.keys.allSatisfy { !$0.hasSuffix(":g") || $0 == "settled:g" || Int64($0.dropLast(2))! >= compacted })
        // Counted at the server: every grant started once or recorded as dropped (late on a
        // loaded machine is dropped, not bunched), and the folded sums say exactly that.
        let target = Curve(try RunDefinition.parse(text: ctl["definition"] ?? "", format: .json)).firstIteration(ofTick: Int64(ctl["stop_tick"] ?? "") ?? 0)
        #expect(total("g") == target && served == total("s") && total("s") + total("d") == target && total("s") * 2 >= target, "served \(served), target \(target), ticks g \(total("g")) s \(total("s")) d \(total("d"))")
        #expect(Int64(ctl["compacted_s"] ?? "") ?? 0 > Int64(ctl["start_ms"] ?? "")! / 1000)
        // The report covers folded minutes and kept seconds: every iteration once.
        let (code, out) = try await J4Binary.run(["report", run, "--format", "json", "--redis", redis.url])
        let report = try JSONDecoder().decode(RunReport.self, from: Data(out.utf8))
        #expect(code == 0 && report.series.reduce(0) { $0 + $1.started } == served && report.series.contains { $0.seconds > 1 }, "exit \(code)")

        let (deleted, deleteOut) = try await J4Binary.run(["delete", run, "--redis", redis.url])
        #expect(deleted == 0, "\(deleteOut)")
        let left = try await Self.lastingKeys(run, on: c)
        #expect(left.isEmpty, "\(left)")
        await sink.stop()
        await redis.stop()
    }
}
