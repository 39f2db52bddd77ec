import ArgumentParser
import Foundation
import J4Core
internal import J4Redis
internal import J4Runtime

struct DeleteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete",
        abstract: "Delete a run that has ended: every key of it in Redis and its entry in the run list.",
        discussion: """
            A run that has not ended is refused (exit 2) and nothing is deleted; with --force it is aborted \
            first. The keys go once the run's workers have let go of it (a few seconds after it ends). \
            Supervisors also delete runs past their --retain (7 days by default).
            """)

    @Argument(help: "The run id.") var run: String
    @Flag(name: .long, help: "Abort the run first if it has not ended.") var force = false
    @Option(name: .long, help: "Give up after this long if the run's workers have not let go of it (default 60s).") var timeout = "60s"
    @OptionGroup var redisOptions: RedisOptions

    func run() async throws {
        guard let timeoutMs = DurationText.milliseconds(timeout), timeoutMs > 0 else {
            throw CLIError.invalid("--timeout \(timeout) is not accepted; use a duration such as 60s")
        }
        guard RunID.isValid(run) else { throw CLIError.invalid("no run \(run): a run id looks like 20261202-050110-d705") }
        let connection = RedisConnection(endpoint: try redisOptions.endpoint(), options: RedisConnectionOptions(clientName: "j4-delete"))
        let deadline = ContinuousClock.now + .milliseconds(timeoutMs)
        var aborted = false
        while true {
            switch try await RunDeletion.delete(run, on: connection) {
            case .deleted(let keys):
                print("\(run) deleted (\(keys) keys)")
                return
            case .noRun:
                throw CLIError.invalid("no run \(run) in \(connection.endpoint)")
            case .active(let state) where !force:
                throw CLIError.invalid("run \(run) is \(state.rawValue); stop it (j4 stop \(run)) and delete it once it has ended, or pass --force to abort it first")
            case .active:
                if !aborted {
                    _ = try await abortRun(run, reason: "deleted with --force", on: connection)
                    aborted = true
                }
            case .busy:
                break
            }
            guard ContinuousClock.now < deadline else {
                throw CLIError.infrastructure("run \(run): its workers still hold it after \(timeout); nothing was deleted")
            }
            try await Task.sleep(for: .milliseconds(500))
        }
    }
}
