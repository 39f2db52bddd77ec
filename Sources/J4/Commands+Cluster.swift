import ArgumentParser
import AsyncHTTPClient
import Foundation
import J4Core
internal import J4Redis
internal import J4Runtime
import Logging
import NIOSSL

struct SubmitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "submit",
        abstract: "Validate a run definition, store it in Redis, print the run id.",
        discussion: "Nothing is written when the definition has any problem; every problem is listed with its field.")

    @Argument(help: "The run definition (YAML, or JSON when the name ends in .json).")
    var file: String

    @OptionGroup var redisOptions: RedisOptions

    @Option(name: .long, help: "Use this run id (a retry with the same id and definition is idempotent).")
    var id: String?

    func run() async throws {
        let catalog = J4CLI.catalog
        let definition = try loadDefinition(file, catalog: catalog)
        if let id, !RunID.isValid(id) {
            throw CLIError.invalid("--id \(id) is not accepted; use 1 to 64 characters of a-z, 0-9, '-' and '_'")
        }
        if catalog[definition.scenario] == nil {
            FileHandle.standardError.write(Data("j4: note: scenario \(definition.scenario) is not built into this binary; only workers that have it will run this run\n".utf8))
        }
        let connection = RedisConnection(endpoint: try redisOptions.endpoint(), options: RedisConnectionOptions(clientName: "j4-submit"))
        let run = try await RunStore.submit(definition, on: connection, runID: id)
        print(run)
    }
}

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Live status of a run read from Redis, or the list of recent runs.")

    @Argument(help: "The run id; without it, recent runs are listed.")
    var run: String?

    @Flag(name: .long, help: "Print JSON (for a run: its summary).")
    var json = false

    @Flag(name: .long, help: "Refresh every second until the run ends: a live view on a terminal, one line per second otherwise, one JSON summary per line with --json.")
    var watch = false

    @OptionGroup var redisOptions: RedisOptions

    func run() async throws {
        let connection = RedisConnection(endpoint: try redisOptions.endpoint(), options: RedisConnectionOptions(clientName: "j4-status"))
        guard let run else {
            try await listRuns(connection)
            return
        }
        guard RunID.isValid(run) else { throw CLIError.invalid("\(run) is not a run id") }
        if watch {
            try await watchRun(run, connection)
            return
        }
        let summary: RunSummary?
        do {
            summary = try await RunSummary.load(run, on: connection)
        } catch let e as CorruptRunError {
            throw CLIError.infrastructure("\(e)")
        }
        guard let summary else { throw CLIError.invalid("no run \(run) in \(connection.endpoint)") }
        if json {
            print(summary.json)
            return
        }
        print(summary.text)
        let keys = RunKeys(run: run)
        let replies = try await connection.pipeline([["HGETALL", keys.owners], ["XREVRANGE", keys.events, "+", "-", "COUNT", "10"]])
        var byWorker: [String: Int] = [:]
        for (_, owner) in replies[0].hash ?? [:] {
            byWorker[String(owner.split(separator: "|").first ?? ""), default: 0] += 1
        }
        if !byWorker.isEmpty {
            print("  leases ...... " + byWorker.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
        }
        let events = replies[1].streamEntries.map { entry -> String in
            let fields = entry.fields
            let type = fields["type"] ?? "?"
            let rest = fields.filter { $0.key != "type" && $0.key != "at" }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            return "    \(StatusCommand.clock(fields["at"].flatMap { Int64($0) })) \(type) \(rest)"
        }
        if !events.isEmpty {
            print("  recent events (newest first):")
            events.forEach { print($0) }
        }
    }

    /// `HH:MM:SS.mmm` (UTC) of a server time in ms.
    static func clock(_ ms: Int64?) -> String { LiveView.clock(ms) }

    /// `--watch`: refreshes every second until the run has ended.
    func watchRun(_ run: String, _ connection: RedisConnection) async throws {
        let terminal = isatty(STDOUT_FILENO) == 1 && !json
        while true {
            guard let view = try await LiveView.load(run, on: connection) else { throw CLIError.invalid("no run \(run) in \(connection.endpoint)") }
            let text: String
            if json {
                let e = JSONEncoder()
                e.outputFormatting = [.sortedKeys]
                text = String(decoding: try e.encode(view.summary), as: UTF8.self)
            } else if terminal {
                text = "\u{1B}[H\u{1B}[2J" + view.text
            } else {
                text = view.line
            }
            FileHandle.standardOutput.write(Data((text + "\n").utf8))
            if !(RunState(rawValue: view.summary.state)?.isLive ?? false) { return }
            try await Task.sleep(for: .seconds(1))
        }
    }

    func listRuns(_ connection: RedisConnection) async throws {
        let ids = try await RunStore.recentRuns(on: connection)
        var rows: [[String: String]] = []
        for id in ids {
            let h = try await connection.send(["HMGET", RunKeys(run: id).ctl, "name", "state", "scenario", "model"]).array ?? []
            rows.append(["run": id, "name": h.first?.string ?? "?", "state": h.count > 1 ? h[1].string ?? "?" : "?", "scenario": h.count > 2 ? h[2].string ?? "?" : "?", "model": h.count > 3 ? h[3].string ?? "?" : "?"])
        }
        if json {
            let data = try JSONSerialization.data(withJSONObject: rows, options: [.prettyPrinted, .sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        if rows.isEmpty {
            print("no runs in \(connection.endpoint)")
            return
        }
        print("RUN                   STATE      NAME / SCENARIO / MODEL")
        for r in rows {
            print("\(r["run"]!.padding(toLength: 21, withPad: " ", startingAt: 0)) \(r["state"]!.padding(toLength: 10, withPad: " ", startingAt: 0)) \(r["name"]!) / \(r["scenario"]!) / \(r["model"]!)")
        }
    }
}

struct StopCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stop", abstract: "Stop a run gracefully: no tick from the next boundary on.")
    @Argument(help: "The run id.") var run: String
    @OptionGroup var redisOptions: RedisOptions

    func run() async throws {
        let connection = RedisConnection(endpoint: try redisOptions.endpoint(), options: RedisConnectionOptions(clientName: "j4-stop"))
        let (state, stopTick) = try await refusalsAsCLIErrors { try await RunControls.stop(run, who: personAtThisHost, on: connection) }
        print("\(run) \(state.rawValue) (no tick from \(stopTick) on)")
    }
}

struct AbortCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "abort", abstract: "Abort a run at once (kill switch).")
    @Argument(help: "The run id.") var run: String
    @Option(name: .long, help: "Why, for the events stream.") var reason = "aborted by a person"
    @OptionGroup var redisOptions: RedisOptions

    func run() async throws {
        let connection = RedisConnection(endpoint: try redisOptions.endpoint(), options: RedisConnectionOptions(clientName: "j4-abort"))
        let (state, stopTick) = try await abortRun(run, reason: reason, on: connection)
        print("\(run) \(state.rawValue) (no tick from \(stopTick) on; iterations in flight are cancelled)")
    }
}

/// `cli:<host name>`, the `by` of the events a person's command writes.
var personAtThisHost: String { "cli:\(ProcessInfo.processInfo.hostName)" }

/// Aborts `run` as a person at this host did (abort.lua) and takes it off the active set.
func abortRun(_ run: String, reason: String, on connection: RedisConnection) async throws -> (RunState, Int64) {
    try await refusalsAsCLIErrors { try await RunControls.abort(run, reason: reason, who: personAtThisHost, on: connection) }
}

/// `body`, with a refused control told as the command line tells it: the field as its option
/// (`--target`), exit code 2, or 3 when the cluster cannot do it now.
func refusalsAsCLIErrors<T>(_ body: () async throws -> T) async throws -> T {
    do { return try await body() } catch let refusal as ControlRefusal {
        let message = refusal.field.map { refusal.message.hasPrefix($0 + " ") ? "--" + refusal.message : refusal.message } ?? refusal.message
        throw refusal.kind == .unavailable ? CLIError.infrastructure(message) : CLIError.invalid(message)
    }
}

struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Run a long-lived worker: takes shard leases, claims ticks, runs the scenarios.",
        discussion: "SIGTERM, SIGINT or SIGHUP: stop claiming, finish the current tick, release every lease, flush metrics, exit.")

    @OptionGroup var redisOptions: RedisOptions
    @Option(name: .long, help: "Worker id (default: $J4_WORKER_ID; else $J4_POD_NAME or host name and pid, plus a boot nonce).") var id: String?
    @Option(name: .long, help: "PEM file of CA certificates to trust besides the system's (default: $J4_CA_FILE).") var caFile: String?
    @OptionGroup var limitOptions: WorkerLimitOptions
    @OptionGroup var metricsOptions: MetricsOptions

    func run() async throws {
        let limits = try limitOptions.limits()
        let logger = try redisOptions.logger("j4.worker")
        let id = self.id ?? ProcessInfo.processInfo.environment["J4_WORKER_ID"] ?? Worker.defaultID()
        let endpoint = try redisOptions.endpoint()
        let http = try HTTPClient.makeLoadClient(caFile: caFile)
        let worker = Worker(id: id, endpoint: endpoint, catalog: J4CLI.catalog, http: http, logger: logger, limits: limits)
        if let allowlist = limits.allowlist {
            logger.info("load only to --allow-target", metadata: ["rules": "\(allowlist)"])
        } else {
            logger.warning("no --allow-target: this worker sends load wherever a run says")
        }
        let metricsEndpoint = try await metricsOptions.start(ready: { worker.isConnected })
        logger.info("worker starting", metadata: ["redis": "\(endpoint)"])
        do {
            try await runServices(withMetrics(metricsEndpoint, [.main(WorkerService(worker: worker, logger: logger))]), logger: logger)
        } catch {
            try? await http.shutdown()
            throw error
        }
        try? await http.shutdown()
        logger.info("worker stopped")
    }
}

struct SupervisorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "supervisor",
        abstract: "Run a supervisor: publishes every active run's target curve ahead of time; one leads, others stand by.")

    @OptionGroup var redisOptions: RedisOptions
    @Option(name: .long, help: "Supervisor id (default: $J4_POD_NAME, or host name and pid).") var id: String?
    @Option(name: .long, help: "Most iterations per second any one run may ask for; submit and scale refuse more (default: $J4_MAX_RUN_RATE; none: no ceiling).") var maxRunRate: String?
    @Option(name: .customLong("max-run-vus"), help: "Most VUs any one run may ask for (default: $J4_MAX_RUN_VUS; none: no ceiling).") var maxRunVUs: String?
    @Option(name: .long, help: "Delete a run this long after it was submitted and ended, e.g. 24h (default: $J4_RETAIN or 168h, 7 days; forever: keep).") var retain: String?
    @Option(name: .long, help: "Keep a run's last DURATION of per-second metrics and per-tick records as they are; fold older ones (per-minute metrics, summed ticks) so a long run stays small in Redis (default: $J4_DETAIL or 15m).") var detail: String?
    @OptionGroup var metricsOptions: MetricsOptions

    /// `--detail` or `$J4_DETAIL`.
    func compaction() throws -> Compaction {
        guard let text = detail ?? ProcessInfo.processInfo.environment["J4_DETAIL"] else { return Compaction() }
        guard let ms = DurationText.milliseconds(text), ms >= 1000, ms <= 7 * 86_400_000 else {
            throw CLIError.invalid("\(detail == nil ? "J4_DETAIL" : "--detail"): \"\(text)\" is not accepted; give a duration from 1s to 168h, such as 15m or 2h")
        }
        return Compaction(detail: .milliseconds(ms))
    }

    /// `--retain` or `$J4_RETAIN`: nil keeps runs forever.
    func retention() throws -> Duration? {
        let text = retain ?? ProcessInfo.processInfo.environment["J4_RETAIN"] ?? "168h"
        if text == "forever" { return nil }
        guard let ms = DurationText.milliseconds(text), ms >= 1000 else {
            throw CLIError.invalid("\(retain == nil ? "J4_RETAIN" : "--retain"): \"\(text)\" is not accepted; give a duration of at least 1s, such as 24h or 168h, or forever")
        }
        return .milliseconds(ms)
    }

    /// The ceiling from the flags, else the environment; a bad value is named, with what is accepted.
    func limits() throws -> RunLimits {
        let env = ProcessInfo.processInfo.environment
        var limits = RunLimits()
        if let text = maxRunRate ?? env["J4_MAX_RUN_RATE"], !text.isEmpty {
            guard let milli = Double(text).flatMap({ RunDefinition.targetMilli($0, vus: false) }), milli > 0 else {
                throw CLIError.invalid("\(maxRunRate == nil ? "J4_MAX_RUN_RATE" : "--max-run-rate"): \"\(text)\" is not accepted; give iterations per second above 0, at most \(DefinitionLimits.maxRate), at most 3 decimals")
            }
            limits.maxRateMilli = milli
        }
        if let text = maxRunVUs ?? env["J4_MAX_RUN_VUS"], !text.isEmpty {
            guard let value = Int64(text), value > 0, value <= DefinitionLimits.maxVUs else {
                throw CLIError.invalid("\(maxRunVUs == nil ? "J4_MAX_RUN_VUS" : "--max-run-vus"): \"\(text)\" is not accepted; give a whole number of VUs from 1 to \(DefinitionLimits.maxVUs)")
            }
            limits.maxVUs = value
        }
        return limits
    }

    func run() async throws {
        let limits = try self.limits()
        let logger = try redisOptions.logger("j4.supervisor")
        let id = self.id ?? ProcessInfo.processInfo.environment["J4_POD_NAME"].flatMap { $0.isEmpty ? nil : $0 } ?? "\(ProcessInfo.processInfo.hostName)-\(getpid())"
        let supervisor = Supervisor(id: id, endpoint: try redisOptions.endpoint(), logger: logger, limits: limits, retain: try retention(), compaction: try compaction())
        let metricsEndpoint = try await metricsOptions.start(ready: { supervisor.isConnected })
        try await runServices(withMetrics(metricsEndpoint, [.main(SupervisorService(supervisor: supervisor))]), logger: logger)
    }
}

extension HTTPClient {
    /// The HTTP client VUs share: keep-alive, a generous pool, no redirects followed. It trusts the system's CAs plus those in `caFile` (or
    /// `$J4_CA_FILE`), for targets with certificates of a private CA.
    static func makeLoadClient(caFile: String? = nil) throws -> HTTPClient {
        try makeLoadClient(tls: loadTrust(caFile: caFile))
    }

    /// The TLS trust of `caFile` (or `$J4_CA_FILE`), or a CLI error naming the file.
    static func loadTrust(caFile: String?) throws -> TLSConfiguration {
        do { return try LoadTrust.configuration(caFile: caFile ?? ProcessInfo.processInfo.environment["J4_CA_FILE"]) } catch {
            throw CLIError.invalid("\(error)")
        }
    }

    /// The load client with the trust `tls`, already checked.
    static func makeLoadClient(tls: TLSConfiguration) -> HTTPClient {
        var config = HTTPClient.Configuration()
        config.tlsConfiguration = tls
        // The lean client (HTTP/1.1 over TLS) trusts the same CAs.
        LoadTrust.use(tls)
        config.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 1000)
        config.redirectConfiguration = .disallow
        config.timeout = .init(connect: .seconds(5), read: .seconds(60))
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
    }
}

struct ScaleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scale",
        abstract: "Change a running run's target live: a rate (arrival-rate) or a number of VUs (vus).",
        discussion: "From the first tick not yet frozen (two ticks from now) to the end of the run, the target is the new constant.")
    @Argument(help: "The run id.") var run: String
    @Option(name: .long, help: "The new target: iterations per second (at most 3 decimals) or VUs.") var target: String
    @OptionGroup var redisOptions: RedisOptions

    func run() async throws {
        let connection = RedisConnection(endpoint: try redisOptions.endpoint(), options: RedisConnectionOptions(clientName: "j4-scale"))
        let scaled = try await refusalsAsCLIErrors { try await RunControls.scale(run, target: target, who: personAtThisHost, on: connection) }
        print("\(run) target \(target)\(scaled.vus ? " VUs" : "/s") from tick \(scaled.fromTick)")
    }
}

/// Where a worker may send load and how much (`j4 worker`, and the workers of `j4 run`).
struct WorkerLimitOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "Where each worker may send load: host names (*.example.com), addresses, CIDR networks, each optionally :PORT; repeatable or comma-separated (default: $J4_ALLOW_TARGETS; none: anywhere).",
        valueName: "rules")) var allowTarget: [String] = []
    @Option(name: .long, help: "Most iterations a worker starts per second, across its runs (default: $J4_MAX_RATE; none: no cap).") var maxRate: Int?
    @Option(name: .customLong("max-vus"), help: "Most VUs busy at once on a worker, across its runs (default: $J4_MAX_VUS; none: no cap).") var maxVUs: Int?

    /// The limits from the flags, else the environment; a bad value is named, with what is accepted.
    func limits() throws -> WorkerLimits {
        let env = ProcessInfo.processInfo.environment
        var limits = WorkerLimits()
        let rules = allowTarget.isEmpty ? (env["J4_ALLOW_TARGETS"].flatMap { $0.isEmpty ? nil : [$0] } ?? []) : allowTarget
        if !rules.isEmpty {
            do { limits.allowlist = try TargetAllowlist(parsing: rules) } catch { throw CLIError.invalid("\(error)") }
        }
        func cap(_ flag: Int?, _ name: String, _ variable: String) throws -> Int? {
            if let flag {
                guard flag > 0 else { throw CLIError.invalid("--\(name): \(flag) is not accepted; give a whole number above 0") }
                return flag
            }
            guard let text = env[variable], !text.isEmpty else { return nil }
            guard let value = Int(text), value > 0 else { throw CLIError.invalid("\(variable): \"\(text)\" is not accepted; give a whole number above 0") }
            return value
        }
        limits.maxRate = try cap(maxRate, "max-rate", "J4_MAX_RATE")
        limits.maxVUs = try cap(maxVUs, "max-vus", "J4_MAX_VUS")
        return limits
    }
}
