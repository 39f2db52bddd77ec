import ArgumentParser
import AsyncHTTPClient
import Foundation
import J4Core
internal import J4Redis
internal import J4Runtime
import J4Scenario
import Logging
import ServiceLifecycle

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a load test in one process: supervisor and workers, with a private Redis unless --redis is given.",
        discussion: "Shows live progress on a terminal and a summary at the end. Ctrl-C stops the run gracefully; a second Ctrl-C aborts it.")

    @Argument(help: "The run definition (YAML, or JSON when the name ends in .json).")
    var file: String

    @Option(name: .long, help: "Workers to run in this process, each with its own id and connections.")
    var workers = 1

    @Option(name: .long, help: "Write the summary as JSON to this file.")
    var summaryJson: String?

    @Flag(name: .long, help: "No live progress, only the summary.")
    var quiet = false

    @Option(name: .long, help: "Load an exclusive data pool first: NAME=FILE (.csv or .jsonl); repeatable.")
    var pool: [String] = []

    @Option(name: .long, help: "Load a shared (cyclic) data pool first: NAME=FILE; repeatable.")
    var sharedPool: [String] = []

    @Option(name: .long, help: "PEM file of CA certificates to trust besides the system's (default: $J4_CA_FILE).")
    var caFile: String?

    @Option(name: .long, help: "Also write a report at the end: FORMAT:FILE with FORMAT text, json, html or junit; repeatable.")
    var report: [String] = []

    @OptionGroup var limitOptions: WorkerLimitOptions
    @OptionGroup var metricsOptions: MetricsOptions
    @OptionGroup var dashboardOptions: RunDashboardOptions

    @OptionGroup var redisOptions: RedisOptions

    func validate() throws {
        guard (1...256).contains(workers) else { throw ValidationError("--workers \(workers) is not accepted; use 1 to 256") }
        for r in report {
            let p = r.split(separator: ":", maxSplits: 1)
            guard p.count == 2, RunReport.formats.contains(String(p[0])), !p[1].isEmpty else {
                throw ValidationError("--report \(r) is not accepted; use FORMAT:FILE with FORMAT text, json, html or junit, e.g. html:report.html")
            }
        }
    }

    func run() async throws {
        _ = try limitOptions.limits()  // a bad value is refused before anything starts
        let logger = try redisOptions.logger("j4.run", default: .warning)
        let catalog = J4CLI.catalog
        let definition = try loadDefinition(file, catalog: catalog)
        guard catalog[definition.scenario] != nil else {
            throw CLIError.invalid("scenario: \(definition.scenario) is not built into this binary; it has \(catalog.scenarios.keys.sorted().joined(separator: ", "))")
        }
        // Every pool file is read and checked before anything starts or is written.
        var pools: [(name: String, mode: String, items: [String])] = []
        for (texts, mode, option) in [(pool, "exclusive", "--pool"), (sharedPool, "shared", "--shared-pool")] {
            for text in texts {
                let (name, path) = try poolArgument(text, option: option)
                pools.append((name, mode, try readPoolFile(path, format: nil)))
            }
        }
        var embedded: EmbeddedRedis?
        let endpoint: RedisEndpoint
        if redisOptions.redis != nil {
            endpoint = try redisOptions.endpoint()
        } else {
            // The private Redis dies with this process, whatever ends it (SIGKILL included).
            do { embedded = try await EmbeddedRedis.start(diesWithParent: true) } catch { throw CLIError.infrastructure("\(error)") }
            endpoint = embedded!.endpoint
        }
        do {
            let connection = RedisConnection(endpoint: endpoint, options: RedisConnectionOptions(clientName: "j4-run-pools"))
            for p in pools {
                guard try await Pools.load(p.name, mode: p.mode, items: p.items, force: false, on: connection) != nil else {
                    throw CLIError.invalid("pool \(p.name) has items checked out by running VUs; wait for its runs to end")
                }
            }
            await connection.close()
            try await execute(definition: definition, catalog: catalog, endpoint: endpoint, logger: logger)
        } catch {
            await embedded?.stop()
            throw error
        }
        await embedded?.stop()
    }

    func execute(definition: RunDefinition, catalog: ScenarioCatalog, endpoint: RedisEndpoint, logger: Logger) async throws {
        // Options checked before the run is submitted: a bad one writes nothing.
        let limits = try limitOptions.limits()
        let tls = try HTTPClient.loadTrust(caFile: caFile)
        let control = RedisConnection(endpoint: endpoint, options: RedisConnectionOptions(clientName: "j4-run"))
        let run: String
        do { run = try await RunStore.submit(definition, on: control) } catch { throw CLIError.infrastructure("cannot submit to \(endpoint): \(error)") }

        let http = HTTPClient.makeLoadClient(tls: tls)
        let metricsEndpoint = try await metricsOptions.start()
        var dashboard: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let port = dashboardOptions.dashboard {
            let hub = DashboardHub(connection: RedisConnection(endpoint: endpoint, options: RedisConnectionOptions(clientName: "j4-run-dashboard")), logger: logger)
            let server = try await DashboardServer.serve(host: "127.0.0.1", port: port, hub: hub, allowControl: true)
            writeStandardError("j4: dashboard on \(server.address(host: "127.0.0.1"))runs/\(run)\n")
            dashboard = [.helper(DashboardService(server: server, run: run))]
        }
        let supervisor = Supervisor(id: "run-\(getpid())-supervisor", endpoint: endpoint, logger: logger)
        let workerList = (0..<workers).map { i in
            Worker(id: "run-\(getpid())-w\(i)", endpoint: endpoint, catalog: catalog, http: http, logger: logger, limits: limits)
        }
        // The watcher ends the group when the run ends; the workers then leave and the
        // supervisor resigns (the reverse of this order), the metrics endpoint last.
        let watcher = RunWatcher(run: run, control: control, endpoint: endpoint, progress: Progress(enabled: !quiet && isatty(STDERR_FILENO) == 1, definition: definition))
        let services: [ServiceGroupConfiguration.ServiceConfiguration] =
            dashboard + [.helper(SupervisorService(supervisor: supervisor))] + workerList.map { .helper(WorkerService(worker: $0, logger: logger, register: false)) } + [.main(watcher)]
        do {
            // No signals for the group: the watcher takes them (Ctrl-C stops the run, twice aborts it).
            try await runServices(withMetrics(metricsEndpoint, services), signals: [], logger: logger)
        } catch {
            try? await http.shutdown()
            throw error
        }
        try? await http.shutdown()

        guard let summary = try await RunSummary.load(run, on: control, workersDone: true) else { throw CLIError.infrastructure("run \(run) disappeared from Redis") }
        print(summary.text)
        if let summaryJson { try writeFile(summary.json + "\n", to: summaryJson) }
        if !report.isEmpty, let full = try await RunReport.load(run, on: control) {
            for r in report {
                let p = r.split(separator: ":", maxSplits: 1).map(String.init)
                try writeFile(full.rendered(p[0]), to: p[1])
            }
        }
        await control.close()
        if !summary.thresholdsPassed { throw CLIError(message: "j4: thresholds failed", code: ExitStatus.thresholdsFailed) }
    }
}

struct WaitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wait",
        abstract: "Wait for a run to end, print its summary, and exit 99 when a threshold failed (for CI).",
        discussion: "Exit codes: 0 all thresholds passed, 99 a threshold failed, 2 no such run, 3 Redis unreachable or --timeout passed.")

    @Argument(help: "The run id.") var run: String
    @Option(name: .long, help: "Give up after this long, e.g. 30m (default: wait as long as it takes).") var timeout: String?
    @Flag(name: .long, help: "Print the summary as JSON.") var json = false
    @OptionGroup var redisOptions: RedisOptions

    func run() async throws {
        var deadline: ContinuousClock.Instant?
        if let timeout {
            guard let ms = DurationText.milliseconds(timeout), ms > 0 else { throw CLIError.invalid("--timeout \(timeout) is not accepted; use a duration such as 30m") }
            deadline = .now + .milliseconds(ms)
        }
        let connection = RedisConnection(endpoint: try redisOptions.endpoint(), options: RedisConnectionOptions(clientName: "j4-wait"))
        guard RunID.isValid(run) else { throw CLIError.invalid("no run \(run)") }
        var outageSince: ContinuousClock.Instant?
        while true {
            let loaded: RunSummary?
            do {
                loaded = try await RunSummary.load(run, on: connection)
                outageSince = nil
            } catch let e as RedisError where e.isUnreachable {
                // A restart or a Sentinel failover: keep waiting for up to a minute of outage.
                let since = outageSince ?? .now
                outageSince = since
                if since.duration(to: .now) > .seconds(60) { throw CLIError.infrastructure("Redis unreachable for a minute: \(e)") }
                try await Task.sleep(for: .milliseconds(500))
                continue
            }
            guard let summary = loaded else { throw CLIError.invalid("no run \(run) in \(connection.endpoint)") }
            if summary.settled {
                print(json ? summary.json : summary.text)
                if !summary.thresholdsPassed { throw CLIError(message: "j4: thresholds failed", code: ExitStatus.thresholdsFailed) }
                return
            }
            if let deadline, ContinuousClock.now >= deadline { throw CLIError.infrastructure("run \(run) still \(summary.state) after \(timeout ?? "")") }
            try await Task.sleep(for: .seconds(1))
        }
    }
}


struct ReportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "A run's report from Redis: text (like k6's end-of-test summary), json, html (one self-contained file with charts) or junit.",
        discussion: "json: the summary plus per-second and per-step series and the events. junit: one test case per threshold. Exit 99 when a threshold failed.")

    @Argument(help: "The run id.") var run: String
    @Option(name: .long, help: "text, json, html or junit.") var format = "text"
    @Option(name: [.short, .customLong("output")], help: "Write to this file instead of standard output.") var output: String?
    @OptionGroup var redisOptions: RedisOptions

    func run() async throws {
        guard RunReport.formats.contains(format) else { throw CLIError.invalid("--format \(format) is not accepted; use text, json, html or junit") }
        guard RunID.isValid(run) else { throw CLIError.invalid("no run \(run)") }
        let connection = RedisConnection(endpoint: try redisOptions.endpoint(), options: RedisConnectionOptions(clientName: "j4-report"))
        guard let report = try await RunReport.load(run, on: connection) else { throw CLIError.invalid("no run \(run) in \(connection.endpoint)") }
        let text = report.rendered(format)
        if let output {
            try writeFile(text, to: output)
        } else {
            FileHandle.standardOutput.write(Data(text.utf8))
        }
        if !report.summary.thresholdsPassed { throw CLIError(message: "j4: thresholds failed", code: ExitStatus.thresholdsFailed) }
    }
}

/// Writes a report or summary file; a failure is an infrastructure error naming the file.
func writeFile(_ text: String, to path: String) throws {
    do { try text.write(toFile: path, atomically: true, encoding: .utf8) } catch {
        throw CLIError.infrastructure("cannot write \(path): \((error as NSError).localizedDescription)")
    }
}
