import AsyncHTTPClient
import Foundation
import J4Core
import J4Redis
import J4Runtime
import J4TestSupport
import NIOCore
import Testing

/// `j4 dashboard` and `j4 run --dashboard` against real clusters: its API against
/// `j4 status --json`, its stream, its controls, its cost on Redis, and its page in Chromium.
extension EndToEndTests {
    /// `j4 dashboard --redis URL --port 0 EXTRA…` (without `--redis` when `url` is nil: from
    /// the environment), once it listens; its port.
    static func startDashboard(_ url: String?, _ extra: [String] = [], environment: [String: String] = [:]) async throws -> (ChildProcess, Int) {
        try await J4Binary.startListening(["dashboard", "--port", "0"] + (url.map { ["--redis", $0] } ?? []) + extra, environment: environment, marker: "dashboard listening on http://")
    }

    /// `METHOD http://127.0.0.1:port/path` with `body`: the status and the body.
    static func http(_ port: Int, _ path: String, method: String = "GET", body: String? = nil, headers: [(String, String)] = []) async throws -> (Int, String) {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
        request.method = .init(rawValue: method)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(string: body)) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        return (Int(response.status.code), String(buffer: try await response.body.collect(upTo: 1 << 24)))
    }

    static func object(_ text: String) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
    }

    /// `j4 status RUN --json` as an object.
    static func statusJSON(_ run: String, _ url: String, environment: [String: String] = [:]) async throws -> [String: Any] {
        let (code, out) = try await J4Binary.run(["status", run, "--json", "--redis", url], environment: environment)
        #expect(code == 0, "\(out)")
        return object(out)
    }

    /// A client for many streams at once (the shared one opens 8 connections per host).
    static let streamClient = HTTPClient(configuration: HTTPClient.Configuration(connectionPool: .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 256)))

    /// The Server-Sent Events of `http://127.0.0.1:port/path`, as they come, until the task
    /// that reads them is cancelled.
    static func serverSentEvents(_ port: Int, _ path: String) -> AsyncThrowingStream<(event: String, data: String), any Error> {
        AsyncThrowingStream { continuation in
            let task = Task {
                do {
                    let response = try await streamClient.execute(HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)"), timeout: .seconds(120))
                    guard response.status == .ok else { throw TestSupportError(description: "stream answered \(response.status)") }
                    var pending = ""
                    for try await buffer in response.body {
                        pending += String(buffer: buffer)
                        while let end = pending.range(of: "\n\n") {
                            let block = pending[..<end.lowerBound]
                            pending = String(pending[end.upperBound...])
                            var name = "message", data: [Substring] = []
                            for line in block.split(separator: "\n") {
                                if line.hasPrefix("event: ") { name = String(line.dropFirst(7)) } else if line.hasPrefix("data: ") { data.append(line.dropFirst(6)) }
                            }
                            continuation.yield((name, data.joined(separator: "\n")))
                        }
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    @Test("j4 dashboard on a live cluster: /api/runs lists the run, /api/runs/ID is what status --json says, the stream sends history then a point a second and the state changes; stop answers 403 without --allow-control and, with it, ends the run at a tick boundary (counted at the sink)")
    func dashboardAPI() async throws {
        let redis = try await EmbeddedRedis.start()
        let sink = try await SinkProcess.start()
        let c = redis.connect()
        let processes = try startSupervisorAndWorkers(url: redis.url, workers: 2)
        try await waitForWorkers(["w0", "w1"], on: c)
        // An odd tick and shard count, a ramp then a long hold: the stop lands mid-run.
        let file = try temporaryFile("""
            name: dashboard
            scenario: http
            model: arrival-rate
            start: 10
            stages: [{ duration: 3s, target: 40 }, { duration: 60s, target: 40 }]
            tick: 700ms
            shards: 5
            thresholds: ["p99 < 5s"]
            params: { request: { url: "\(sink.url)" } }
            """)
        let run = try await submitRun(file, ["--redis", redis.url])
        let (viewer, viewerPort) = try await Self.startDashboard(redis.url)
        let (controller, port) = try await Self.startDashboard(redis.url, ["--allow-control"])

        // The list: the run, live.
        try await waitFor("the run scheduled", timeout: .seconds(20)) { try await c.send(["HGET", RunKeys(run: run).ctl, "start_ms"]).string != nil }
        let startMs = Int64(try await c.send(["HGET", RunKeys(run: run).ctl, "start_ms"]).string ?? "") ?? 0
        try await waitUntilRedisTime(startMs + 2500, on: c)
        let (listCode, list) = try await Self.http(port, "/api/runs")
        let rows = (try? JSONSerialization.jsonObject(with: Data(list.utf8))) as? [[String: Any]] ?? []
        #expect(listCode == 200 && rows.first?["run"] as? String == run && rows.first?["state"] as? String == "running", "\(list)")

        // The stream, read throughout: history first, then points.
        var events = Self.serverSentEvents(port, "/api/runs/\(run)/stream").makeAsyncIterator()
        var names: [String] = [], points: [[String: Any]] = []
        while points.count < 4, let e = try await events.next() {
            names.append(e.event)
            if e.event == "point" { points.append(Self.object(e.data)) }
        }
        #expect(names.first == "history", "\(names)")
        let seconds = points.compactMap { ($0["now_ms"] as? Int).map { $0 / 1000 } }
        // One point a second: each of a second of its own, one after the other (a machine stall
        // of over a second could skip one, never repeat one).
        #expect(seconds.count == 4 && zip(seconds, seconds.dropFirst()).allSatisfy { $1 > $0 } && seconds.last! - seconds.first! <= 4, "\(seconds)")
        let latest = points.last ?? [:]
        #expect(latest["state"] as? String == "running" && !(latest["seconds"] as? [Any] ?? []).isEmpty, "\(latest)")
        let workers = (latest["workers"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
        #expect(Set(workers) == ["w0", "w1"], "\(workers)")
        let leases = (latest["workers"] as? [[String: Any]] ?? []).flatMap { $0["leases"] as? [[String: Any]] ?? [] }
        #expect(leases.count == 5 && leases.allSatisfy { ($0["expires_ms"] as? Int ?? 0) > (latest["now_ms"] as? Int ?? .max) }, "\(leases)")

        // The API against status --json while the run goes: the same run, and counts between
        // those of a status read just before and one just after.
        let before = try await Self.statusJSON(run, redis.url)
        let (apiCode, apiText) = try await Self.http(viewerPort, "/api/runs/\(run)")
        let after = try await Self.statusJSON(run, redis.url)
        let api = Self.object(apiText)
        #expect(apiCode == 200 && Set(api.keys) == Set(before.keys), "\(apiText)")
        for key in ["run", "name", "model", "scenario", "state"] { #expect(api[key] as? String == before[key] as? String, "\(key)") }
        for key in ["started", "ok"] {
            let (b, a, x) = (before[key] as? Int ?? -1, after[key] as? Int ?? -1, api[key] as? Int ?? -2)
            #expect(b <= x && x <= a, "\(key): \(b) ≤ \(x) ≤ \(a)")
        }

        // Controls: refused without --allow-control, and nothing changes.
        let (refusedCode, refused) = try await Self.http(viewerPort, "/api/runs/\(run)/stop", method: "POST")
        #expect(refusedCode == 403 && refused.contains("--allow-control"), "\(refused)")
        let (badCode, bad) = try await Self.http(port, "/api/runs/\(run)/scale", method: "POST", body: #"{"target": 12.3456}"#)
        #expect(badCode == 400 && Self.object(bad)["field"] as? String == "target" && bad.contains("12.3456"), "\(bad)")
        let (foreignCode, foreign) = try await Self.http(port, "/api/runs/\(run)/stop", method: "POST", headers: [("origin", "http://attacker.example")])
        #expect(foreignCode == 403 && foreign.contains("another origin"), "\(foreign)")
        let (unknownCode, unknown) = try await Self.http(port, "/api/runs/no-such-run/stop", method: "POST")
        #expect(unknownCode == 404 && Self.object(unknown)["field"] as? String == "run", "\(unknown)")
        #expect(try await c.send(["HGET", RunKeys(run: run).ctl, "state"]).string == "running")

        // Stop through the API (as the page sends it, from its own origin): no tick from the
        // one it names on, and the stream says so.
        let (stopCode, stopText) = try await Self.http(port, "/api/runs/\(run)/stop", method: "POST", headers: [("origin", "http://127.0.0.1:\(port)")])
        let stop = Self.object(stopText)
        #expect(stopCode == 200 && stop["state"] as? String == "stopping", "\(stopText)")
        let stopTick = Int64(stop["stop_tick"] as? Int ?? -1)
        var states: [String] = []
        while !states.contains("stopped"), let e = try await events.next() {
            if e.event == "state" { states.append(Self.object(e.data)["state"] as? String ?? "?") }
        }
        #expect(states.last == "stopped", "\(states)")
        let ticks = try await c.send(["HGETALL", RunKeys(run: run).ticks]).hash ?? [:]
        let late = ticks.filter { key, value in key.hasSuffix(":s") && (Int64(key.dropLast(2)) ?? 0) >= stopTick && value != "0" }
        #expect(late.isEmpty, "iterations started at or after tick \(stopTick): \(late)")
        let stopEvent = try await Self.events(run, c).first { $0["type"] == "stop" }
        #expect(stopEvent?["by"] == "dashboard:127.0.0.1", "\(String(describing: stopEvent))")

        // Ended: the API is exactly status --json, and the sink got every started iteration.
        let (waitCode, waitOut) = try await J4Binary.run(["wait", run, "--redis", redis.url, "--timeout", "60s"])
        #expect(waitCode == 0, "\(waitOut)")
        let (_, finalStatus) = try await J4Binary.run(["status", run, "--json", "--redis", redis.url])
        let (_, finalAPI) = try await Self.http(port, "/api/runs/\(run)")
        #expect(finalAPI.trimmingCharacters(in: .whitespacesAndNewlines) == finalStatus.trimmingCharacters(in: .whitespacesAndNewlines), "\(finalAPI)\n\(finalStatus)")
        let final = Self.object(finalStatus)
        let received = try await sink.stats().requests
        #expect(final["state"] as? String == "stopped" && Int64(final["started"] as? Int ?? -1) == Int64(received), "\(received) at the sink: \(final)")
        // The first stream ends once the run has; a stream opened now gets the whole run, from
        // tick 0, and ends: its seconds add up to what the sink received.
        var tail: [String] = []
        while let e = try await events.next() { tail.append(e.event) }
        #expect(tail.last == "end", "\(tail)")
        var reopened: [Int: [String: Any]] = [:], lateEvents: [String] = []
        for try await e in Self.serverSentEvents(port, "/api/runs/\(run)/stream") {
            lateEvents.append(e.event)
            let seconds = e.event == "history" ? Self.object(e.data)["seconds"] : (e.event == "point" ? Self.object(e.data)["seconds"] : nil)
            for second in seconds as? [[String: Any]] ?? [] { reopened[second["unix"] as? Int ?? 0] = second }
        }
        // A point, or three when it ended under 5 s ago (two more reads for the last flushes).
        #expect(lateEvents.first == "history" && lateEvents.last == "end" && lateEvents.dropFirst().dropLast().allSatisfy { $0 == "point" } && lateEvents.count <= 5, "\(lateEvents)")
        let firstT = reopened.values.compactMap { $0["t"] as? Int }.min()
        let total = reopened.values.reduce(0) { $0 + ($1["started"] as? Int ?? 0) }
        #expect(firstT == 0 && total == Int(received), "\(reopened.count) seconds from t=\(firstT ?? -1), \(total) started")

        for p in processes + [viewer, controller] { p.send(SIGTERM) }
        for p in processes + [viewer, controller] { _ = await p.wait() }
        await sink.stop()
        await redis.stop()
    }

    @Test("one reader per dashboard: 100 open streams of a run cost Redis exactly the calls of one")
    func dashboardRedisCalls() async throws {
        let redis = try await EmbeddedRedis.start()
        let c = redis.connect()
        // No supervisor: the run stays pending, and the dashboard is Redis' only other client.
        let run = try await submitRun(try holdDefinition(rate: 10, seconds: 60, shards: 3, target: "http://127.0.0.1:9/"), ["--redis", redis.url])
        let (dashboard, port) = try await Self.startDashboard(redis.url)
        func calls() async throws -> Int {
            let text = try await c.send(["INFO", "commandstats"]).string ?? ""
            return text.split(whereSeparator: \.isNewline).filter { !$0.hasPrefix("cmdstat_info:") }.compactMap { line -> Int? in
                guard let r = line.range(of: "calls=") else { return nil }
                return Int(line[r.upperBound...].prefix { $0.isNumber })
            }.reduce(0, +)
        }
        /// Calls per point over `n` points of `stream`, counted between points (reads are a
        /// second apart, so no read is under way right after a point arrived). The stream must
        /// have no backlog; its first point may be the feed's latest, sent on subscribing, so
        /// counting starts after its second.
        func perPoint(_ stream: inout AsyncThrowingStream<(event: String, data: String), any Error>.Iterator, _ n: Int) async throws -> Double {
            func nextPoint() async throws { while let e = try await stream.next(), e.event != "point" {} }
            try await nextPoint()
            try await nextPoint()
            let from = try await calls()
            for _ in 0..<n { try await nextPoint() }
            return Double(try await calls() - from) / Double(n)
        }
        var first = Self.serverSentEvents(port, "/api/runs/\(run)/stream").makeAsyncIterator()
        let one = try await perPoint(&first, 4)
        // 98 more streams and a probe, opened now (the first one's points pile up unread meanwhile,
        // so the probe measures): 100 in all.
        var others = (0..<98).map { _ in Self.serverSentEvents(port, "/api/runs/\(run)/stream").makeAsyncIterator() }
        for i in others.indices { while let e = try await others[i].next(), e.event != "point" {} }
        var probe = Self.serverSentEvents(port, "/api/runs/\(run)/stream").makeAsyncIterator()
        let hundred = try await perPoint(&probe, 4)
        print("figures dashboard: Redis calls per point (a second) with 1 stream \(one), with 100 streams \(hundred)")
        #expect(one > 0 && hundred == one, "1 stream: \(one), 100 streams: \(hundred)")
        withExtendedLifetime((first, probe)) {}
        others.removeAll()
        dashboard.send(SIGTERM)
        #expect(await dashboard.wait() == 0, "\(dashboard.output.tail())")
        await redis.stop()
    }
}

extension EndToEndTests {
    /// `scripts/chromium-capture.py`: loads `url` in headless Chromium, waits until the
    /// JavaScript `until` holds, and writes the rendered DOM and a screenshot; the DOM.
    static func capture(_ url: String, until: String, png: String) async throws -> String {
        let html = NSTemporaryDirectory() + "j4-dom-\(UUID().uuidString).html"
        let (code, out) = try await runTool(["python3", repositoryFile("scripts/chromium-capture.py"), url, "--until", until, "--timeout", "30",
                                             "--html", html, "--png", png, "--width", "1280", "--height", "1500"])
        #expect(code == 0, "\(out)")
        return (try? String(contentsOfFile: html, encoding: .utf8)) ?? ""
    }

    /// The `data-value` of the first element with `data-field="field"` after `from` in `dom`.
    static func shown(_ field: String, in dom: String, after from: String = "") -> String? {
        let start = from.isEmpty ? dom.startIndex : (dom.range(of: from)?.upperBound ?? dom.endIndex)
        guard let at = dom[start...].range(of: "data-field=\"\(field)\" data-value=\"") else { return nil }
        return String(dom[at.upperBound...].prefix { $0 != "\"" })
    }

    @Test("j4 run --dashboard: headless Chromium shows the run live, its charts with points and its numbers between two status --json reads; the runs page lists it; bare --dashboard parses, a bad port is named")
    func dashboardInChromium() async throws {
        let (bare, bareOut) = try await J4Binary.run(["run", "/nonexistent.yaml", "--dashboard"])
        #expect(bare == 2 && bareOut.contains("cannot read /nonexistent.yaml"), "\(bareOut)")
        let (badPort, badPortOut) = try await J4Binary.run(["run", "/nonexistent.yaml", "--dashboard", "70000"])
        #expect(badPort == 2 && badPortOut.contains("--dashboard 70000"), "\(badPortOut)")

        let redis = try await EmbeddedRedis.start()
        let c = redis.connect()
        let sink = try await SinkProcess.start(["--latency", "3ms", "--error-rate", "0.05"])
        let file = try temporaryFile(Self.arrivalRate(sink, name: "dashboard-demo", start: 20, stages: "  - { duration: 6s, target: 60 }\n  - { duration: 54s, target: 60 }", shards: 6)
                                     + "\nthresholds: [\"p95 < 2s\", \"errors < 1%\"]\n")
        let (process, port) = try await J4Binary.startListening(["run", file, "--redis", redis.url, "--workers", "2", "--quiet", "--dashboard=0"], marker: "dashboard on http://")
        let line = process.output.all.split(separator: "\n").first { $0.contains("dashboard on http://") } ?? ""
        let run = String(line.split(separator: "/").last ?? "")
        #expect(RunID.isValid(run), "\(line)")
        let dir = NSTemporaryDirectory() + "j4-dashboard-\(UUID().uuidString)/"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)

        // j4 run's dashboard has the controls: a scale (to the rate it holds anyway) is marked on the charts.
        try await waitFor("the run scheduled", timeout: .seconds(20)) { try await c.send(["HGET", RunKeys(run: run).ctl, "start_ms"]).string != nil }
        try await waitUntilRedisTime((Int64(try await c.send(["HGET", RunKeys(run: run).ctl, "start_ms"]).string ?? "") ?? 0) + 2000, on: c)
        let (scaleCode, scaled) = try await Self.http(port, "/api/runs/\(run)/scale", method: "POST", body: #"{"target": 60}"#)
        #expect(scaleCode == 200 && Self.object(scaled)["target"] as? Double == 60, "\(scaled)")

        // Mid-run, once each chart has some seconds.
        let before = try await Self.statusJSON(run, redis.url)
        let dom = try await Self.capture("http://127.0.0.1:\(port)/runs/\(run)",
                                         until: "document.querySelectorAll('svg.chart').length === 3 && [...document.querySelectorAll('svg.chart')].every(s => +s.dataset.points >= 8) && document.querySelector('line.mark[data-event=scaled]') !== null",
                                         png: dir + "dashboard.png")
        let after = try await Self.statusJSON(run, redis.url)
        #expect(Self.shown("state", in: dom) == "running", "\(dom.prefix(2000))")
        for key in ["started", "ok", "failed"] {
            let x = Int(Self.shown(key, in: dom) ?? "") ?? -1
            let (b, a) = (before[key] as? Int ?? -1, after[key] as? Int ?? -1)
            #expect(b <= x && x <= a, "\(key): \(b) ≤ \(x) ≤ \(a)")
        }
        #expect(dom.components(separatedBy: "class=\"series\"").count - 1 >= 8, "lines in the charts")
        #expect(dom.components(separatedBy: "data-worker=").count - 1 == 2 && dom.contains("data-event=\"started\""), "workers and events")
        #expect(dom.contains("data-threshold=\"p95 &lt; 2s\""), "thresholds")
        #expect(dom.contains(">Stop</button>"), "controls: j4 run's dashboard has them")
        let png = (try? Data(contentsOf: URL(fileURLWithPath: dir + "dashboard.png"))) ?? Data()
        #expect(png.count > 30_000 && png.starts(with: [0x89, 0x50, 0x4E, 0x47]), "screenshot of \(png.count) bytes")

        // The runs page lists it, live.
        let list = try await Self.capture("http://127.0.0.1:\(port)/", until: "document.querySelector('tr[data-run]') !== null", png: dir + "runs.png")
        #expect(list.contains("data-run=\"\(run)\"") && Self.shown("state", in: list, after: "data-run=\"\(run)\"") == "running", "\(list.suffix(3000))")
        print("figures dashboard page: \(dom.utf8.count) bytes of DOM, screenshots \(png.count) bytes in \(dir)")

        // The run is long enough for two captures on a loaded machine; stopped from its dashboard.
        let (stopCode, stopped) = try await Self.http(port, "/api/runs/\(run)/stop", method: "POST")
        #expect(stopCode == 200, "\(stopped)")
        #expect(await process.wait() == 99, "the errors threshold fails: \(process.output.tail())")
        await sink.stop()
        await redis.stop()
    }
}
