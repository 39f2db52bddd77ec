import ArgumentParser
import Foundation
import J4Core
internal import J4Redis
internal import J4Runtime
import J4Scenario
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// The `j4` command line. A user's executable calls `await J4CLI.main(scenarios: [...])` and
/// gets every subcommand with its own scenarios compiled in.
public enum J4CLI {
    static let catalogBox = Mutex(ScenarioCatalog())

    /// The scenarios of this binary: the built-in ones and those passed to ``main(scenarios:)``.
    static var catalog: ScenarioCatalog { catalogBox.withLock { $0 } }

    /// Parses the command line, runs the command and exits with J4's exit codes:
    /// 0 success, 2 invalid input or usage, 3 Redis or other infrastructure failure,
    /// 99 failed thresholds.
    public static func main(scenarios: [Scenario] = [], arguments: [String]? = nil) async -> Never {
        // Read the arguments before hiding the passwords in them from ps and /proc/PID/cmdline.
        let arguments = arguments ?? Array(CommandLine.arguments.dropFirst())
        hidePasswordsInProcessTitle()
        limitMallocArenas()
        if ProcessInfo.processInfo.environment["J4_NIO_EXECUTOR"] != "0" {
            _ = NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        }
        catalogBox.withLock { $0 = ScenarioCatalog(scenarios) }
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = .warning  // each command sets its own loggers' level; others (the Redis client's) stay at warning
            return h
        }
        do {
            var command = try Root.parseAsRoot(RunDashboardOptions.expand(arguments))
            if var async = command as? any AsyncParsableCommand {
                try await async.run()
            } else {
                try command.run()
            }
            exit(0)
        } catch let e as CLIError {
            FileHandle.standardError.write(Data((e.message + "\n").utf8))
            exit(e.code)
        } catch let e as DefinitionError {
            FileHandle.standardError.write(Data((e.description + "\n").utf8))
            exit(ExitStatus.invalid)
        } catch let e as CorruptRunError {
            FileHandle.standardError.write(Data(("j4: \(e) (its data in Redis cannot be used; `j4 abort` still ends it)\n").utf8))
            exit(ExitStatus.infrastructure)
        } catch let e as RedisError {
            FileHandle.standardError.write(Data(("j4: \(e)\n").utf8))
            exit(ExitStatus.infrastructure)
        } catch {
            let code = Root.exitCode(for: error)
            if code == .success || code.rawValue == 0 { Root.exit(withError: error) }
            FileHandle.standardError.write(Data((Root.fullMessage(for: error) + "\n").utf8))
            exit(code == .validationFailure ? ExitStatus.invalid : (code.rawValue == 1 ? ExitStatus.infrastructure : code.rawValue))
        }
    }
}

/// J4's exit codes.
public enum ExitStatus {
    /// Invalid input or usage.
    public static let invalid: Int32 = 2
    /// Redis or other infrastructure failure.
    public static let infrastructure: Int32 = 3
    /// A threshold failed (k6's convention).
    public static let thresholdsFailed: Int32 = 99
}

/// An error meant for a person, with the exit code it ends the process with.
struct CLIError: Error {
    var message: String
    var code: Int32

    static func invalid(_ m: String) -> CLIError { CLIError(message: "j4: " + m, code: ExitStatus.invalid) }
    static func infrastructure(_ m: String) -> CLIError { CLIError(message: "j4: " + m, code: ExitStatus.infrastructure) }
}

struct Root: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "j4",
        abstract: "J4: distributed load testing in Swift. Load stays on its curve when workers die, join or stall.",
        subcommands: [
            RunCommand.self, SubmitCommand.self, StatusCommand.self, WaitCommand.self, ReportCommand.self, StopCommand.self, AbortCommand.self, ScaleCommand.self, DeleteCommand.self, DashboardCommand.self,
            PoolCommand.self, WorkerCommand.self, SupervisorCommand.self, SinkCommand.self, BenchCoordinationCommand.self,
        ])
}

/// Options every command that talks to Redis shares.
struct RedisOptions: ParsableArguments {
    @Option(name: .long, help: "Redis URL: redis://[user:password@]host:port[/db] or unix:///path (default: $J4_REDIS_URL or redis://127.0.0.1:6379).")
    var redis: String?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical (default: $J4_LOG_LEVEL or info).")
    var logLevel: String?

    func endpoint() throws -> RedisEndpoint {
        do { return try RedisEndpoint.fromEnvironment(redis) } catch { throw CLIError.invalid("\(error)") }
    }

    func logger(_ label: String, default level: Logger.Level = .info) throws -> Logger {
        var l = Logger(label: label)
        let text = logLevel ?? ProcessInfo.processInfo.environment["J4_LOG_LEVEL"]
        if let text {
            guard let lv = Logger.Level(rawValue: text.lowercased()) else {
                throw CLIError.invalid("--log-level \(text) is not a level; use trace, debug, info, notice, warning, error or critical")
            }
            l.logLevel = lv
        } else {
            l.logLevel = level
        }
        return l
    }
}

/// Reads and validates a run definition file; YAML unless it ends in `.json`.
func loadDefinition(_ path: String, catalog: ScenarioCatalog) throws -> RunDefinition {
    let text: String
    do {
        text = try String(contentsOfFile: path, encoding: .utf8)
    } catch {
        throw CLIError.invalid("cannot read \(path): \((error as NSError).localizedDescription)")
    }
    let format: RunDefinition.Format = path.lowercased().hasSuffix(".json") ? .json : .yaml
    let definition = try RunDefinition.parse(text: text, format: format)
    if let scenario = catalog[definition.scenario] {
        let problems = scenario.validate(definition.params)
        if !problems.isEmpty { throw DefinitionError(problems: problems) }
    }
    return definition
}

/// Overwrites, in the process' own argv memory, the password of every URL argument
/// (`scheme://user:PASSWORD@host`) with asterisks, so that `ps` and `/proc/PID/cmdline` do
/// not show it. The parsed arguments were copied before. (Environment variables or
/// `J4_REDIS_PASSWORD_FILE` keep it out of the command line altogether.)
func hidePasswordsInProcessTitle() {
    for i in 1..<Int(CommandLine.argc) {
        guard let arg = CommandLine.unsafeArgv[i] else { continue }
        let length = strlen(arg)
        let bytes = UnsafeMutableRawPointer(arg).assumingMemoryBound(to: UInt8.self)
        let text = UnsafeBufferPointer(start: bytes, count: length)
        var scheme = -1
        for j in 0..<max(0, length - 2) where text[j] == UInt8(ascii: ":") && text[j + 1] == UInt8(ascii: "/") && text[j + 2] == UInt8(ascii: "/") {
            scheme = j + 3
            break
        }
        guard scheme >= 0, let at = (scheme..<length).last(where: { text[$0] == UInt8(ascii: "@") }),
              let colon = (scheme..<at).first(where: { text[$0] == UInt8(ascii: ":") }) else { continue }
        for j in (colon + 1)..<at { bytes[j] = UInt8(ascii: "*") }
    }
}

/// glibc gives every thread that allocates under contention an arena of its own, up to 8 per
/// core, and memory freed in one arena is rarely given back. A worker's many NIO, Dispatch
/// and hiredis threads then make its resident memory climb for the whole run (measured: from
/// 95 to 413 MiB over 10 minutes at 1000 requests/s) although its heap stays flat (under
/// 40 MiB with heaptrack). One arena per core keeps it flat. `MALLOC_ARENA_MAX` set by the
/// user wins.
func limitMallocArenas() {
    #if canImport(Glibc)
    guard ProcessInfo.processInfo.environment["MALLOC_ARENA_MAX"] == nil,
          let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return }  // RTLD_DEFAULT
    typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
    let mARENA_MAX: Int32 = -8  // <malloc.h>
    _ = unsafeBitCast(symbol, to: Mallopt.self)(mARENA_MAX, Int32(max(2, ProcessInfo.processInfo.activeProcessorCount)))
    #endif
}
