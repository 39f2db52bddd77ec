import ArgumentParser
import Foundation
import J4Core
internal import J4Redis
internal import J4Runtime
import Logging
import Synchronization

/// `j4 bench-coordination`: the coordination cost of many workers against one Redis. Each
/// simulated worker runs the real protocol (acquire.lua until it holds its share, then per
/// tick claim.lua, per second flush.lua, renew.lua as a worker's lease loop does) with no
/// load, so only Redis and the scripts are measured. Used by scripts/bench/coordination.sh.
struct BenchCoordinationCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-coordination",
        abstract: "Measure Redis' cost of many simulated workers running the real lease, claim and flush cycle.",
        shouldDisplay: false)

    @Option(name: .long, help: "Simulated workers.") var workers = 1000
    @Option(name: .long, help: "Runs they are spread over.") var runs = 10
    @Option(name: .long, help: "Seconds measured (after a warm-up of 5 s).") var seconds = 30
    @Option(name: .long, help: "Redis connections the simulated workers share.") var connections = 32
    @OptionGroup var redisOptions: RedisOptions

    func validate() throws {
        guard (1...100_000).contains(workers) else { throw ValidationError("--workers \(workers) is not accepted; use 1 to 100000") }
        guard (1...workers).contains(runs) else { throw ValidationError("--runs \(runs) is not accepted; use 1 to --workers") }
        guard (5...3600).contains(seconds) else { throw ValidationError("--seconds \(seconds) is not accepted; use 5 to 3600") }
        guard (1...1024).contains(connections) else { throw ValidationError("--connections \(connections) is not accepted; use 1 to 1024") }
    }

    func run() async throws {
        let endpoint = try redisOptions.endpoint()
        let logger = try redisOptions.logger("j4.bench", default: .error)
        let control = RedisConnection(endpoint: endpoint, options: RedisConnectionOptions(clientName: "j4-bench:control"))
        let pool = (0..<connections).map { RedisConnection(endpoint: endpoint, options: RedisConnectionOptions(clientName: "j4-bench:\($0)")) }
        let warmup = 5
        let duration = warmup + seconds + 3
        let perRun = (workers + runs - 1) / runs
        var submitted: [String] = []
        for r in 0..<runs {
            // Two shards per worker, a rate of 100 per worker: the iterations are only counted.
            let json = """
                {"name":"coordination-\(r)","scenario":"http","model":"arrival-rate","start":\(perRun * 100),
                 "stages":[{"duration":"\(duration)s","target":\(perRun * 100)}],"shards":\(min(4096, perRun * 2)),
                 "params":{"request":{"url":"http://127.0.0.1:9/"}}}
                """
            let definition = try RunDefinition.parse(text: json, format: .json)
            submitted.append(try await RunStore.submit(definition, on: control))
        }
        let supervisor = Supervisor(id: "bench", endpoint: endpoint, logger: logger)
        let supervising = Task { await supervisor.run() }

        let recorder = LatencyRecorder()
        let ids = submitted
        let info = try await control.send(["INFO", "server"])
        let redisPID = info.string?.split(whereSeparator: \.isNewline).first { $0.hasPrefix("process_id:") }.flatMap { Int($0.dropFirst(11)) }

        let simulated = (0..<workers).map { w in
            Task {
                let run = ids[w % runs]
                let client = RunClient(run: run)
                let name = "sim-\(w)"
                let c = pool[w % pool.count]
                var held: [(Int, String)] = []
                var cap = 1
                var startMs: Int64?
                var seq: Int64 = 0
                var lastLease = ContinuousClock.now - .seconds(10)
                var nextTick: Int64 = -1
                // Spread the workers' second boundaries as real workers' are.
                try? await Task.sleep(for: .milliseconds(Int.random(in: 0..<1000)))
                let end = ContinuousClock.now + .seconds(duration)
                while ContinuousClock.now < end {
                    do {
                        if lastLease.duration(to: .now) >= .seconds(1) {
                            lastLease = .now
                            let reply = try await recorder.timed(held.count < cap ? "acquire" : "renew") {
                                held.count < cap
                                    ? try await client.acquire(c, worker: name, nonce: "b", take: true, held: held)
                                    : try await client.renew(c, worker: name, held: held)
                            }
                            held = reply.held.map { ($0.key, $0.value.token) }.sorted { $0.0 < $1.0 }
                            cap = reply.cap
                            // Shed down to the fair share, as a worker does.
                            if held.count > cap {
                                let extra = Array(held.suffix(held.count - cap))
                                _ = try await recorder.timed("release") { try await client.release(c, worker: name, reason: "shed", shards: extra) }
                                held.removeLast(extra.count)
                            }
                            startMs = startMs ?? reply.startMs
                            if !reply.state.isLive { break }
                        }
                        if let start = startMs, !held.isEmpty {
                            let nowMs = Int64(Date().timeIntervalSince1970 * 1000)  // same host as Redis
                            let tick = (nowMs - start) / 1000
                            if tick >= 0, tick > nextTick {
                                nextTick = tick
                                let claim = try await recorder.timed("claim") { try await client.claim(c, worker: name, tick: tick, shards: held) }
                                cap = claim.cap ?? cap
                                seq += 1
                                let fields: [(String, Int64)] = ([(.started, 100), (.ok, 100), (.tickStarted(tick), 100), (.latencyBucket(120), 60), (.latencyBucket(130), 40), (.latencySum, 12_000), (.maximum(MetricField.iterationHistogram), 300), (.activeWorker(name), 1)] as [(MetricField, Int64)]).map { ($0.0.name, $0.1) }
                                _ = try await recorder.timed("flush") { try await client.flush(c, worker: name, seq: seq, second: nowMs / 1000, fields: fields) }
                            }
                        }
                    } catch {
                        logger.warning("simulated worker call failed", metadata: ["error": "\(error)"])
                    }
                    try? await Task.sleep(for: .milliseconds(100))
                }
            }
        }

        try await Task.sleep(for: .seconds(warmup))
        func stats() async throws -> (cpu: Double, calls: Int64, evalshaCalls: Double, evalshaUsec: Double) {
            let text = try await control.send(["INFO", "all"]).string ?? ""
            var calls: Int64 = 0
            var evalsha = (calls: 0.0, usec: 0.0)
            for line in text.split(whereSeparator: \.isNewline) {
                if line.hasPrefix("total_commands_processed:") { calls = Int64(line.dropFirst(25)) ?? 0 }
                // cmdstat_evalsha:calls=N,usec=N,usec_per_call=N,...
                if line.hasPrefix("cmdstat_evalsha:") {
                    for part in line.dropFirst(16).split(separator: ",") {
                        let kv = part.split(separator: "=")
                        if kv.count == 2, kv[0] == "calls" { evalsha.calls = Double(kv[1]) ?? 0 }
                        if kv.count == 2, kv[0] == "usec" { evalsha.usec = Double(kv[1]) ?? 0 }
                    }
                }
            }
            var cpu = 0.0
            if let pid = redisPID, let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) {
                let fields = stat.split(separator: ")").last?.split(separator: " ") ?? []
                if fields.count > 13, let u = Double(fields[11]), let s = Double(fields[12]) { cpu = (u + s) / Double(sysconf(Int32(_SC_CLK_TCK))) }
            }
            return (cpu, calls, evalsha.calls, evalsha.usec)
        }
        let before = try await stats()
        let began = ContinuousClock.now
        recorder.measuring.store(true, ordering: .relaxed)
        try await Task.sleep(for: .seconds(seconds))
        recorder.measuring.store(false, ordering: .relaxed)
        let after = try await stats()
        let elapsed = Double(began.duration(to: .now).components.seconds) + Double(began.duration(to: .now).components.attoseconds) / 1e18
        for t in simulated { t.cancel() }
        for r in ids { _ = try? await RunClient(run: r).abort(control, who: "bench", reason: "done") }
        supervising.cancel()
        supervisor.resign()
        await supervising.value

        func percentile(_ values: [Double], _ p: Double) -> Double {
            let s = values.sorted()
            return s.isEmpty ? .nan : s[min(s.count - 1, Int((Double(s.count) * p).rounded(.up)) - 1)]
        }
        // Commands run inside scripts count in total_commands_processed too: count the calls here.
        let calls = Double(recorder.calls.load(ordering: .relaxed))
        let commands = Double(after.calls - before.calls) - 2  // the two INFO calls
        print("workers \(workers) runs \(runs) seconds \(String(format: "%.1f", elapsed)) connections \(connections)")
        print(String(format: "redis_cpu %.1f%% of a core", 100 * (after.cpu - before.cpu) / elapsed))
        print(String(format: "redis_calls_per_s %.0f from the simulated workers (%.0f commands per second in Redis, those inside scripts included)", calls / elapsed, commands / elapsed))
        print(String(format: "redis_calls_per_worker_second %.2f", calls / elapsed / Double(workers)))
        let scripts = after.evalshaCalls - before.evalshaCalls
        print(String(format: "redis_time_per_script_call %.3f ms (EVALSHA, in Redis, all scripts)", scripts > 0 ? (after.evalshaUsec - before.evalshaUsec) / scripts / 1000 : .nan))
        let all = recorder.latencies.withLock { $0 }
        for script in ["acquire", "renew", "claim", "flush", "release"] {
            let v = all[script] ?? []
            print(String(format: "%@ calls %d p50 %.3f ms p99 %.3f ms (sent to reply, on a shared connection)", script, v.count, percentile(v, 0.5), percentile(v, 0.99)))
        }
        for c in pool { await c.close() }
        await control.close()
    }
}

/// Script latencies while measuring, by script.
final class LatencyRecorder: Sendable {
    let latencies = Mutex<[String: [Double]]>([:])
    let measuring = Atomic<Bool>(false)
    /// Calls made while measuring.
    let calls = Atomic<Int64>(0)

    func timed<T>(_ script: String, _ body: () async throws -> T) async throws -> T {
        let began = ContinuousClock.now
        let value = try await body()
        if measuring.load(ordering: .relaxed) {
            calls.add(1, ordering: .relaxed)
            let (s, atto) = began.duration(to: .now).components
            let ms = Double(s) * 1000 + Double(atto) / 1e15
            latencies.withLock { $0[script, default: []].append(ms) }
        }
        return value
    }
}
