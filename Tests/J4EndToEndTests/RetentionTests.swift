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
