import ArgumentParser
import Foundation
internal import J4Redis
internal import J4Runtime
import Logging
import ServiceLifecycle

struct DashboardCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dashboard",
        abstract: "Serve a live web dashboard of every run in Redis: the runs, each run's charts, tables, workers and events, its report.",
        discussion: """
            The page and its JSON API (GET /api/runs, /api/runs/ID, /api/runs/ID/stream, /api/runs/ID/report) read Redis \
            once a second per watched run, however many browsers watch. POST /api/runs/ID/stop, /abort and /scale answer \
            403 unless --allow-control is given, and the Redis user's own rights still apply.
            """)

    @Option(name: .long, help: "Address to listen on (0.0.0.0 for every interface; the page has no login).") var host = "127.0.0.1"
    @Option(name: .long, help: "Port to listen on (0: a free one, printed).") var port = 8089
    @Flag(name: .long, help: "Let the page and the API stop, abort and scale runs.") var allowControl = false
    @OptionGroup var redisOptions: RedisOptions

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port \(port) is not accepted; use 0 to 65535") }
    }

    func run() async throws {
        let logger = try redisOptions.logger("j4.dashboard")
        let endpoint = try redisOptions.endpoint()
        let connection = RedisConnection(endpoint: endpoint, options: RedisConnectionOptions(clientName: "j4-dashboard"))
        let hub = DashboardHub(connection: connection, logger: logger)
        let server = try await DashboardServer.serve(host: host, port: port, hub: hub, allowControl: allowControl)
        writeStandardError("j4: dashboard listening on \(server.address(host: host)) (Redis \(endpoint)\(allowControl ? ", controls on" : ""))\n")
        try await runServices([.main(DashboardService(server: server))], logger: logger)
        await connection.close()
    }
}

/// `j4 run --dashboard[=PORT]`.
struct RunDashboardOptions: ParsableArguments {
    /// The port `--dashboard` alone means.
    static let defaultPort = 8089

    @Option(name: .long, help: ArgumentHelp("Serve the live dashboard of this run on 127.0.0.1:PORT, with its controls: --dashboard[=PORT] (alone: 8089; 0: a free port).", valueName: "port"))
    var dashboard: Int?

    func validate() throws {
        if let dashboard, !(0...65535).contains(dashboard) { throw ValidationError("--dashboard \(dashboard) is not accepted; use 0 to 65535") }
    }

    /// `--dashboard` without a value becomes `--dashboard=8089`, and `--dashboard PORT`
    /// `--dashboard=PORT` (ArgumentParser has no options with an optional value).
    static func expand(_ arguments: [String]) -> [String] {
        guard arguments.first == "run" else { return arguments }
        var out: [String] = []
        var i = 0
        while i < arguments.count {
            let argument = arguments[i]
            if argument == "--" {
                out += arguments[i...]
                break
            }
            if argument == "--dashboard" {
                if i + 1 < arguments.count, Int(arguments[i + 1]) != nil {
                    out.append("--dashboard=" + arguments[i + 1])
                    i += 2
                    continue
                }
                out.append("--dashboard=\(defaultPort)")
            } else {
                out.append(argument)
            }
            i += 1
        }
        return out
    }
}

extension DashboardServer {
    /// Starts the server, or a CLI error naming the address.
    static func serve(host: String, port: Int, hub: DashboardHub, allowControl: Bool) async throws -> DashboardServer {
        do { return try await start(host: host, port: port, hub: hub, allowControl: allowControl) } catch {
            throw CLIError.infrastructure("cannot serve the dashboard on \(host):\(port): \(error)")
        }
    }

    /// `http://HOST:PORT/`.
    func address(host: String) -> String { "http://\(host.contains(":") ? "[\(host)]" : host):\(port)/" }
}

/// The dashboard as a service: serves until graceful shutdown, then lets its streams see the
/// end of `run` (when it serves `j4 run`) before it closes.
struct DashboardService: Service {
    let server: DashboardServer
    var run: String?

    func run() async throws {
        try? await gracefulShutdown()
        if let run { await server.hub.waitForEnd(of: run, timeout: .seconds(3)) }
        await server.close()
    }
}
