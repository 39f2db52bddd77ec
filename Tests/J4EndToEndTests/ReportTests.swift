import AsyncHTTPClient
import Foundation
import NIOCore
import J4Core
import J4Redis
import J4Runtime
import J4TestSupport
import Testing

extension EndToEndTests {
    @Test("a threshold that fails: j4 run exits 99 and the summary, JUnit and HTML mark it; the HTML renders in headless Chromium with its charts")
    func failingThreshold() async throws {
        let sink = try await SinkProcess.start(["--error-rate", "0.5", "--latency", "2ms"])
        let file = try temporaryFile(Self.arrivalRate(sink, name: "thresholds", start: 50, stages: "  - { duration: 4s, target: 50 }", shards: 4) + """

            thresholds: ["p99 < 5s", "errors < 1%"]
            """)
        let dir = NSTemporaryDirectory() + "j4-report-\(UUID().uuidString)/"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let (code, out) = try await J4Binary.run(["run", file, "--workers", "2", "--quiet", "--summary-json", dir + "summary.json",
                                                 "--report", "junit:\(dir)junit.xml", "--report", "html:\(dir)report.html", "--report", "json:\(dir)report.json"])
        #expect(code == 99, "\(out)")
        #expect(out.contains("✗ errors < 1%") && out.contains("✓ p99 < 5s"), "\(out)")
        let s = try Self.summary(dir + "summary.json")
        let thresholds = s["thresholds"] as? [[String: Any]] ?? []
        #expect(thresholds.map { $0["ok"] as? Bool } == [true, false], "\(thresholds)")
        let errors = thresholds.last?["value"] as? Double ?? 0
        #expect(errors > 30 && errors < 70, "about half the requests fail: \(errors)%")

        let junit = try String(contentsOfFile: dir + "junit.xml", encoding: .utf8)
        #expect(junit.components(separatedBy: "<testcase").count - 1 == 2 && junit.components(separatedBy: "<failure").count - 1 == 1, "\(junit)")
        #expect(junit.contains("name=\"errors &lt; 1%\"><failure"))

        // The per-second series adds up to what the sink received.
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "report.json"))) as? [String: Any] ?? [:]
        let series = report["series"] as? [[String: Any]] ?? []
        let stats = try await sink.stats()
        #expect(series.compactMap { $0["started"] as? Int }.reduce(0, +) == Int(stats.requests) && stats.requests == 200)
        #expect(series.contains { ($0["workers"] as? Int) == 2 })
        // The slowest iterations, with the trace ids their requests carried.
        let slowest = report["slowest"] as? [[String: Any]] ?? []
        #expect(slowest.count == 20 && (slowest.first?["trace_id"] as? String)?.wholeMatch(of: /[0-9a-f]{32}/) != nil, "\(slowest.prefix(2))")
        let latencies = slowest.compactMap { $0["latency_ms"] as? Double }
        #expect(latencies == latencies.sorted(by: >))

        // Chromium renders it: four charts with their lines, and a screenshot that is not blank.
        let html = dir + "report.html"
        let dom = try ChildProcess("/usr/bin/chromium", ["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", "file://" + html])
        #expect(await dom.wait() == 0)
        _ = await dom.output.wait(timeout: .seconds(5)) { _ in false }
        let rendered = dom.output.all
        #expect(rendered.components(separatedBy: "<svg").count - 1 == 4, "charts in the rendered page")
        #expect(rendered.components(separatedBy: "class=\"series\"").count - 1 >= 9, "lines in the charts")
        #expect(rendered.contains("thresholds FAILED"))
        let shot = try ChildProcess("/usr/bin/chromium", ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                                                          "--window-size=1000,1300", "--screenshot=\(dir)report.png", "file://" + html])
        #expect(await shot.wait() == 0)
        let png = (try? Data(contentsOf: URL(fileURLWithPath: dir + "report.png"))) ?? Data()
        #expect(png.count > 20_000 && png.starts(with: [0x89, 0x50, 0x4E, 0x47]), "screenshot of \(png.count) bytes")
        print("figures report: html \((try? Data(contentsOf: URL(fileURLWithPath: html)))?.count ?? 0) bytes, screenshot \(png.count) bytes in \(dir)")
        await sink.stop()
    }

    @Test("abortOnFail: a threshold that fails while the run goes aborts it after its delay; the sink stops receiving")
    func abortOnFail() async throws {
        let sink = try await SinkProcess.start(["--error-rate", "1"])
        let file = try temporaryFile(Self.arrivalRate(sink, name: "abort-on-fail", start: 50, stages: "  - { duration: 30s, target: 50 }", shards: 4) + """

            thresholds:
              - { threshold: "errors < 10%", abortOnFail: true, delayAbortEval: 2s }
            """)
        let summaryPath = NSTemporaryDirectory() + "j4-abort-\(UUID().uuidString).json"
        let (code, out) = try await J4Binary.run(["run", file, "--quiet", "--summary-json", summaryPath])
        #expect(code == 99, "\(out)")
        let s = try Self.summary(summaryPath)
        let stats = try await sink.stats()
        print("figures abortOnFail: state \(s["state"] ?? "?") after \(s["duration_s"] ?? "?") s, \(stats.requests) requests at the sink")
        #expect(s["state"] as? String == "aborted")
        // 2 s of delay, then a flush or two and one supervision cycle: far less than the 30 s asked for.
        #expect((s["duration_s"] as? Double ?? 99) < 10 && stats.requests < 500, "\(s)")
        await sink.stop()
    }
}

extension EndToEndTests {
    @Test("Prometheus: scraping /metrics mid-run shows iterations, steps, checks, custom metrics and J4's own, with the run's labels")
    func prometheus() async throws {
        let shop = try await ExampleServer.start("checkout-server")
        let file = try temporaryFile(Self.checkoutDefinition(shop, vus: 4, seconds: 6, shards: 4))
        let summaryPath = NSTemporaryDirectory() + "j4-prom-\(UUID().uuidString).json"
        let (run, port) = try await J4Binary.startListening(
            ["run", file, "--quiet", "--metrics-port", "0", "--pool", "accounts=\(Self.accounts)", "--summary-json", summaryPath],
            binary: Self.checkoutBinary, marker: "metrics on http://")
        let url = "http://127.0.0.1:\(port)/metrics"
        // Mid-run: once iterations have been counted.
        var text = ""
        try await waitFor("iterations on /metrics", timeout: .seconds(20), every: .milliseconds(200)) {
            let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(5))
            text = String(buffer: try await response.body.collect(upTo: 1 << 22))
            return text.contains("j4_custom_total{")  // written by iterations, not at the run's start
        }
        #expect(await run.wait() == 0, "\(run.output.tail())")
        let s = try Self.summary(summaryPath)
        let id = s["run"] as? String ?? "?"
        print("figures prometheus: \(text.split(separator: "\n").filter { !$0.hasPrefix("#") }.count) samples, e.g. " +
              (text.split(separator: "\n").first { $0.hasPrefix("j4_iterations_total") }.map(String.init) ?? "-"))
        let runLabels = "run=\"\(id)\",scenario=\"checkout\""
        for expected in [
            "j4_iterations_total{\(runLabels),outcome=\"ok\"}",
            "j4_iteration_duration_seconds_bucket{\(runLabels),le=",
            "j4_steps_total{\(runLabels),step=\"login\",outcome=\"ok\"}",
            "j4_step_duration_seconds_bucket{\(runLabels),step=\"add_to_cart\",le=",
            "j4_checks_total{\(runLabels),check=\"products are listed\",outcome=\"pass\"}",
            "j4_custom_total{\(runLabels),name=\"orders\"}",
            "j4_leases_held{\(runLabels)}",
            "j4_leases_acquired_total{\(runLabels)}",
            "j4_claim_duration_seconds_bucket{\(runLabels),le=",
            "j4_redis_connects_total{client=",
            "j4_supervisor_leading{supervisor=",
        ] {
            #expect(text.contains(expected), "missing \(expected)")
        }
        // As Prometheus expects the exposition: every metric with its HELP, names and types as its linter wants.
        #expect(text.contains("# HELP j4_steps_total Steps ended"))
        let (status, lint) = try promtoolCheck(text)
        #expect(status == 0 && lint.isEmpty, "promtool check metrics: \(lint)")
        await shop.stop()
    }
}

/// `promtool check metrics` on `exposition` (its standard input): its exit status and what it printed.
func promtoolCheck(_ exposition: String) throws -> (Int32, String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/promtool")
    p.arguments = ["check", "metrics"]
    let input = Pipe(), output = Pipe()
    p.standardInput = input
    p.standardOutput = output
    p.standardError = output
    try p.run()
    input.fileHandleForWriting.write(Data(exposition.utf8))
    try input.fileHandleForWriting.close()
    let printed = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    p.waitUntilExit()
    return (p.terminationStatus, printed.trimmingCharacters(in: .whitespacesAndNewlines))
}
