import Foundation
import J4Core
import J4Redis
import J4Runtime
import J4TestSupport
import Testing

/// Acceptance tests: real `j4` processes, a real redis-server, load counted at a
/// real `j4 sink` on 127.0.0.1. Serialized: each one is a timed load test on a 2-core machine.
@Suite("End to end (real processes)", .serialized)
struct EndToEndTests {
    static func arrivalRate(_ sink: SinkProcess, name: String, start: Int, stages: String, shards: Int = 16) -> String {
        """
        name: \(name)
        scenario: http
        model: arrival-rate
        start: \(start)
        stages:
        \(stages)
        tick: 1s
        shards: \(shards)
        params:
          request: { method: GET, url: "\(sink.url)" }
        """
    }

    static func summary(_ path: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any] ?? [:]
    }

    @Test("j4 run, 200/s for 10 s with 4 workers: exactly 2000 at the sink")
    func runExact() async throws {
        let sink = try await SinkProcess.start()
        let file = try temporaryFile(Self.arrivalRate(sink, name: "exact", start: 200, stages: "  - { duration: 10s, target: 200 }"))
        let summaryPath = NSTemporaryDirectory() + "j4-summary-\(UUID()).json"
        let (code, output) = try await J4Binary.run(["run", file, "--workers", "4", "--summary-json", summaryPath])
        #expect(code == 0, "\(output)")
        let stats = try await sink.stats()
        #expect(stats.requests == 2000)
        #expect(stats.by_worker.count == 4)
        let s = try Self.summary(summaryPath)
        #expect(s["started"] as? Int == 2000)
        #expect(s["target"] as? Int == 2000)
        #expect(s["ok"] as? Int == 2000)
        #expect(s["state"] as? String == "finished")
        #expect(s["workers"] as? Int == 4)
        let (started, dropped, unclaimed) = (s["started"] as? Int ?? -1, s["dropped"] as? Int ?? -1, s["unclaimed"] as? Int ?? -1)
        #expect(started + dropped + unclaimed == 2000)
        let latency = s["latency_ms"] as? [String: Any]
        #expect(["p50", "p90", "p95", "p99", "max", "mean"].allSatisfy { latency?[$0] is Double })
        await sink.stop()
    }

    @Test("a cluster of processes: redis-server, supervisor, 4 workers, submit: exactly 2000, fair shares")
    func cluster() async throws {
        let redis = try await EmbeddedRedis.start()
        let sink = try await SinkProcess.start()
        let supervisor = try J4Binary.start(["supervisor", "--redis", redis.url])
        let workers = try (0..<4).map { i in try J4Binary.start(["worker", "--redis", redis.url, "--id", "w\(i)"]) }
        // Wait until every worker has connected (CLIENT LIST shows its named connections).
        let c = redis.connect()
        try await waitForWorkers(["w0", "w1", "w2", "w3"], on: c, timeout: .seconds(10))
        let file = try temporaryFile(Self.arrivalRate(sink, name: "cluster", start: 200, stages: "  - { duration: 10s, target: 200 }"))
        let run = try await submitRun(file, ["--redis", redis.url])

        // Wait for the supervisor to finish the run.
        var state = ""
        try? await waitFor("the run to finish", timeout: .seconds(60), every: .milliseconds(200)) {
            state = try await c.send(["HGET", RunKeys(run: run).ctl, "state"]).string ?? ""
            return state == "finished"
        }
        #expect(state == "finished")
        // SIGTERM: every worker hands off and exits 0.
        for w in workers { w.send(SIGTERM) }
        for w in workers { #expect(await w.wait() == 0) }
        supervisor.send(SIGTERM)
        #expect(await supervisor.wait() == 0)

        let stats = try await sink.stats()
        #expect(stats.requests == 2000)
        // 16 shards of 125 iterations each: every worker within one shard's worth of 500.
        #expect(stats.by_worker.count == 4)
        for (worker, n) in stats.by_worker { #expect(abs(n - 500) <= 125, "\(worker): \(n)") }
        let s = try await J4Binary.summary(run, redis: redis)
        #expect(s["started"] as? Int == 2000 && s["target"] as? Int == 2000 && s["workers"] as? Int == 4)
        await sink.stop()
        await redis.stop()
    }

    @Test("a ramp 0 → 100/s over 10 s, then 100/s for 10 s: exactly 1500, each second on the curve")
    func ramp() async throws {
        let sink = try await SinkProcess.start()
        let file = try temporaryFile(Self.arrivalRate(sink, name: "ramp", start: 0, stages: "  - { duration: 10s, target: 100 }\n  - { duration: 10s, target: 100 }"))
        let (code, output) = try await J4Binary.run(["run", file, "--workers", "2"])
        #expect(code == 0, "\(output)")
        let stats = try await sink.stats()
        #expect(stats.requests == 1500)
        // Each request names its tick (1 s here): tick k holds exactly the curve's second k,
        // 5, 15, …, 95 on the ramp, then 100.
        let expected: [Int64] = (0..<10).map { 5 * (2 * $0 + 1) } + Array(repeating: 100, count: 10)
        for (k, want) in expected.enumerated() {
            #expect(stats.by_tick[String(k)] == want, "tick \(k): \(stats.by_tick[String(k)] ?? 0) at the sink, the curve says \(want)")
        }
        // Tick 0 starts on a whole second, so arrival second k holds about the same: an
        // iteration sent up to its late tolerance (100 ms) after its start may arrive in the
        // next second on a loaded machine.
        let seconds = stats.by_second.map(\.n)
        #expect(seconds.count >= 20 && seconds.count <= 21, "\(seconds)")
        for (k, want) in expected.enumerated() where k < seconds.count {
            #expect(abs(seconds[k] - want) <= 10, "second \(k): \(seconds[k]) at the sink, the curve says \(want)")
        }
        await sink.stop()
    }

    @Test("vus: 20 VUs for 10 s against 50 ms latency keep exactly 20 requests in flight")
    func vus() async throws {
        let sink = try await SinkProcess.start(["--latency", "50ms"])
        let file = try vusDefinition(vus: 20, seconds: 10, shards: 8, target: sink.url)
        let summaryPath = NSTemporaryDirectory() + "j4-summary-\(UUID()).json"
        let (code, output) = try await J4Binary.run(["run", file, "--workers", "2", "--summary-json", summaryPath])
        #expect(code == 0, "\(output)")
        let stats = try await sink.stats()
        #expect(stats.in_flight_max == 20)
        // Each VU loops: about 10 s / 50 ms = 200 iterations per VU, minus connection set-up.
        #expect(stats.requests > 20 * 100 && stats.requests <= 20 * 200)
        let s = try Self.summary(summaryPath)
        #expect(s["started"] as? Int == Int(stats.requests))
        #expect(s["target"] as? Int == 20)
        await sink.stop()
    }

    @Test("failures are counted by class: a sink answering 500 to everything")
    func failuresByClass() async throws {
        let sink = try await SinkProcess.start(["--error-rate", "1"])
        let file = try temporaryFile(Self.arrivalRate(sink, name: "errors", start: 20, stages: "  - { duration: 2s, target: 20 }", shards: 2))
        let summaryPath = NSTemporaryDirectory() + "j4-summary-\(UUID()).json"
        let (code, output) = try await J4Binary.run(["run", file, "--summary-json", summaryPath])
        #expect(code == 0, "\(output)")
        let stats = try await sink.stats()
        #expect(stats.requests == 40 && stats.errors == 40)
        let s = try Self.summary(summaryPath)
        #expect(s["failed"] as? Int == 40 && s["ok"] as? Int == 0)
        #expect((s["errors"] as? [String: Int]) == ["status_500": 40])
        await sink.stop()
    }

    @Test("every malformed definition: exit 2, the field named, nothing written to Redis", arguments: InvalidFixtures.all)
    func malformed(_ fixture: InvalidFixtures.Case) async throws {
        let redis = try await EmbeddedRedis.start()
        let (code, output) = try await J4Binary.run(["submit", fixture.path, "--redis", redis.url])
        #expect(code == 2, "\(output)")
        #expect(output.contains(fixture.field), "\(output)")
        #expect(!output.contains("Fatal error") && !output.contains("Stack dump"))
        #expect(try await redis.connect().send(["DBSIZE"]) == .integer(0))
        await redis.stop()
    }

    @Test("j4 run without redis-server on PATH: exit 3 and the package to install")
    func noRedisServer() async throws {
        let file = try temporaryFile("name: a\nscenario: http\nmodel: arrival-rate\nstages: [{duration: 1s, target: 1}]\nparams: { request: { url: \"http://127.0.0.1:9/\" } }\n")
        let (code, output) = try await J4Binary.run(["run", file], environment: ["PATH": "/nonexistent"])
        #expect(code == 3, "\(output)")
        #expect(output.contains("apt-get install redis-server"))
    }
}
