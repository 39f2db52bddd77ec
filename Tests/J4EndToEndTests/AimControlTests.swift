import AsyncHTTPClient
import Foundation
import J4Core
import J4Redis
@testable import J4Runtime
@testable import J4Scenario
import J4TestSupport
import Logging
import Synchronization
import Testing

/// Where workers may send load, and how much: `--allow-target`, `--max-rate`, and the
/// cluster's ceiling per run (`--max-run-rate` on the supervisor), with real processes and
/// counts taken at the receiving sinks.
extension EndToEndTests {
    /// The events of `run`, each as its fields.
    static func events(_ run: String, _ c: RedisConnection) async throws -> [[String: String]] {
        let entries = try await c.send(["XRANGE", RunKeys(run: run).events, "-", "+"]).array ?? []
        return entries.compactMap { entry -> [String: String]? in
            guard let parts = entry.array, parts.count == 2, let fields = parts[1].array?.compactMap(\.string) else { return nil }
            return Dictionary(stride(from: 0, to: fields.count - 1, by: 2).map { (fields[$0], fields[$0 + 1]) }, uniquingKeysWith: { a, _ in a })
        }
    }

    @Test("--allow-target: a run aimed at a sink outside the allowlist sends it nothing, and the refusal is an event; the allowed sink gets every request")
    func allowTarget() async throws {
        let redis = try await EmbeddedRedis.start()
        let allowed = try await SinkProcess.start()
        let other = try await SinkProcess.start()
        let c = redis.connect()
        let processes = [
            try J4Binary.start(["supervisor", "--redis", redis.url, "--id", "s0"]),
            try J4Binary.start(["worker", "--redis", redis.url, "--id", "w0", "--allow-target", "127.0.0.1:\(allowed.port)"]),
            // The same rule from the environment.
            try J4Binary.start(["worker", "--redis", redis.url, "--id", "w1"], environment: ["J4_ALLOW_TARGETS": "127.0.0.1:\(allowed.port)"]),
        ]
        try await waitForWorkers(["w0", "w1"], on: c)
        var runs: [String] = []
        for sink in [other, allowed] {
            runs.append(try await submitRun(try holdDefinition(rate: 100, seconds: 3, shards: 4, target: sink.url), ["--redis", redis.url]))
        }
        for run in runs {
            let (code, out) = try await J4Binary.run(["wait", run, "--redis", redis.url, "--timeout", "60s"])
            #expect(code == 0, "\(out)")
        }
        #expect(try await other.stats().requests == 0)
        #expect(try await allowed.stats().requests == 300)
        let refused = try await J4Binary.summary(runs[0], redis: redis)
        #expect(refused["started"] as? Int == 300 && refused["ok"] as? Int == 0, "\(refused)")
        #expect((refused["errors"] as? [String: Int])?["target_refused"] == 300, "\(refused)")
        let events = try await Self.events(runs[0], c).filter { $0["type"] == "target_refused" }
        // Each worker says it once.
        #expect(Set(events.compactMap { $0["worker"] }) == ["w0", "w1"], "\(events)")
        #expect(events.allSatisfy { $0["target"] == "127.0.0.1:\(other.port)" && $0["reason"]?.contains("--allow-target") == true }, "\(events)")
        #expect(try await Self.events(runs[1], c).allSatisfy { $0["type"] != "target_refused" })

        for p in processes { p.send(SIGTERM) }
        for p in processes { _ = await p.wait() }
        await allowed.stop()
        await other.stop()
        await redis.stop()
    }

    @Test("caps: submit and scale refuse a run above the cluster's ceiling and write nothing; a worker with --max-rate 50 starts at most 50 a second, with --max-vus 5 runs at most 5 VUs")
    func caps() async throws {
        let redis = try await EmbeddedRedis.start()
        let sink = try await SinkProcess.start()
        let c = redis.connect()
        var processes = [
            try J4Binary.start(["supervisor", "--redis", redis.url, "--id", "s0", "--max-run-rate", "150"]),
            // One cap per worker: with --max-vus 5 too, a machine stall could leave more than 5
            // of the 50/s in flight, and the rate run would also meet the VU cap (rightly).
            try J4Binary.start(["worker", "--redis", redis.url, "--id", "w0", "--max-rate", "50"]),
        ]
        try await waitFor("the ceiling published", timeout: .seconds(15)) { try await c.send(["HGET", GlobalKeys.limits, "max_rate_milli"]).string == "150000" }
        try await waitForWorkers(["w0"], on: c)

        let keys = try await c.send(["DBSIZE"]).string
        let (code, out) = try await J4Binary.run(["submit", try holdDefinition(rate: 200, seconds: 4, shards: 4, target: sink.url), "--redis", redis.url])
        #expect(code == 2 && out.contains("stages[0].target") && out.contains("200") && out.contains("at most 150"), "\(out)")
        #expect(try await c.send(["DBSIZE"]).string == keys)

        let run = try await submitRun(try holdDefinition(rate: 100, seconds: 4, shards: 4, target: sink.url), ["--redis", redis.url])
        try await waitFor("the run to start", timeout: .seconds(15)) { try await c.send(["HGET", RunKeys(run: run).ctl, "state"]).string == "running" }
        let (scaleCode, scaleOut) = try await J4Binary.run(["scale", run, "--target", "151", "--redis", redis.url])
        #expect(scaleCode == 2 && scaleOut.contains("--target") && scaleOut.contains("at most 150"), "\(scaleOut)")
        #expect(try await c.send(["HGET", RunKeys(run: run).ctl, "scales"]).string == nil)
        let (waitCode, waitOut) = try await J4Binary.run(["wait", run, "--redis", redis.url, "--timeout", "60s"])
        #expect(waitCode == 0, "\(waitOut)")

        // 400 wanted over 4 s; the worker starts at most 50 in each of them.
        let s = try await J4Binary.summary(run, redis: redis)
        let started = s["started"] as? Int ?? -1
        #expect(started > 0 && started <= 200 && (s["dropped"] as? Int ?? 0) >= 200, "\(s)")
        #expect(try await sink.stats().requests == Int64(started))
        let capped = try await Self.events(run, c).filter { $0["type"] == "capped" }
        #expect(capped.count == 1 && capped.first?["cap"] == "max-rate" && capped.first?["value"] == "50", "\(capped)")
        print("figures caps: 100/s wanted for 4 s under --max-rate 50: started \(started), dropped \(s["dropped"] ?? "?"), sink \(started)")

        // The rate-capped worker leaves; one capped at 5 VUs takes the next run.
        processes[1].send(SIGTERM)
        #expect(await processes[1].wait() == 0)
        processes.append(try J4Binary.start(["worker", "--redis", redis.url, "--id", "w1", "--max-vus", "5"]))
        try await waitForWorkers(["w1"], on: c)

        // 10 VUs wanted against 50 ms of latency; the sink sees at most 5 requests at once.
        let slow = try await SinkProcess.start(["--latency", "50ms"])
        let vusRun = try await submitRun(try vusDefinition(vus: 10, seconds: 3, shards: 10, target: slow.url), ["--redis", redis.url])
        let (vusWait, vusWaitOut) = try await J4Binary.run(["wait", vusRun, "--redis", redis.url, "--timeout", "60s"])
        #expect(vusWait == 0, "\(vusWaitOut)")
        let slowStats = try await slow.stats()
        #expect(slowStats.requests > 0 && slowStats.in_flight_max == 5, "\(slowStats.requests) requests, at most \(slowStats.in_flight_max) at once")
        let vusCapped = try await Self.events(vusRun, c).filter { $0["type"] == "capped" }
        #expect(vusCapped.first?["cap"] == "max-vus" && vusCapped.first?["value"] == "5", "\(vusCapped)")
        print("figures caps: 10 VUs wanted under --max-vus 5: \(slowStats.requests) requests, at most \(slowStats.in_flight_max) in flight at the sink")
        await slow.stop()

        for p in processes { p.send(SIGTERM) }
        for p in processes { _ = await p.wait() }
        await sink.stop()
        await redis.stop()
    }
}

/// J4's protocol clients in a VU with an allowlist: nothing reaches a server outside it.
@Suite("Protocol clients refuse targets outside the allowlist")
struct ProtocolAllowlistTests {
    @Test("vu.request and vu.webSocket: a server outside the allowlist sees no connection; the refusal is reported once; allowed targets work")
    func clients() async throws {
        let outside = try await ScriptedServer([])
        let inside = try await ScriptedServer([.send(LeanHTTPTests.ok5)])
        let reported = RefusalLog()
        let targets = TargetGuard(allowlist: try TargetAllowlist(parsing: ["127.0.0.1:\(inside.port)"])) { reported.add($0) }
        let recorder = MetricsRecorder()
        let vu = VUContext(run: "r1", worker: "w1", vu: 0, params: .null, logger: Logger(label: "test"), http: HTTPClient.shared,
                           metrics: ScenarioMetrics(recorder: recorder) { 100 }, targets: targets)
        for _ in 0..<3 {
            await #expect(throws: TargetRefused.self) { try await vu.request("get", "GET", "http://127.0.0.1:\(outside.port)/") }
        }
        #expect(try await vu.request("get", "GET", "http://127.0.0.1:\(inside.port)/").status == 200)
        let socket = vu.webSocket("ws", url: "ws://127.0.0.1:\(outside.port)/chat") { _ in }
        await #expect(throws: (any Error).self) { try await socket.waitUntilConnected(timeout: .milliseconds(500)) }
        // User info: the WebSocket client would read this as 127.0.0.1 port 80, Foundation as
        // the allowed target; it is refused.
        let tricky = vu.webSocket("ws2", url: "ws://127.0.0.1:1@127.0.0.1:\(inside.port)/chat") { _ in }
        await #expect(throws: (any Error).self) { try await tricky.waitUntilConnected(timeout: .milliseconds(500)) }
        await vu.end()
        #expect(outside.seen.connections == 0)
        #expect(inside.seen.requests.count == 1)
        #expect(reported.targets == ["127.0.0.1:\(outside.port)", "ws://127.0.0.1:***@127.0.0.1:\(inside.port)/chat"])
        let fields = Dictionary(recorder.drain().flatMap(\.fields), uniquingKeysWith: +)
        let (steps, _, _, _) = RunSummary.scenarioMetrics(fields.mapValues(String.init))
        #expect(steps["get"]?.errors["target_refused"] == 3, "\(steps)")
        #expect((steps["ws connect"]?.errors["target_refused"] ?? 0) >= 1, "\(steps)")
        #expect((steps["ws2 connect"]?.errors["target_refused"] ?? 0) >= 1, "\(steps)")
        await outside.close()
        await inside.close()
    }
}

/// Refusals a guard reported.
final class RefusalLog: Sendable {
    let list = Mutex<[String]>([])
    func add(_ r: TargetRefused) { list.withLock { $0.append(r.target) } }
    var targets: [String] { list.withLock { $0 } }
}
