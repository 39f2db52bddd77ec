import Foundation
import J4Core
internal import J4Redis
internal import J4Runtime
import ServiceLifecycle
import UnixSignals

/// `j4 run`'s foreground: shows the run's progress until it ends and takes the signals. The
/// first SIGINT, SIGTERM or SIGHUP (the terminal closed) stops the run at the next tick, and
/// the summary follows as for a run that ended; a second aborts it. When it returns, the
/// service group shuts the workers and the supervisor down.
struct RunWatcher: Service {
    let run: String
    let control: RedisConnection
    let endpoint: RedisEndpoint
    let progress: Progress

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sigint, .sigterm, .sighup)
        let listener = Task { [run, control, progress] in
            var received = 0
            for await signal in signals {
                received += 1
                let client = RunClient(run: run)
                if received == 1 {
                    // Nothing more is drawn on a terminal that is gone.
                    if signal == .sighup { progress.silence() } else { writeStandardError("\nj4: stopping the run at the next tick (Ctrl-C again to abort)\n") }
                    _ = try? await client.stop(control, mode: "stop", who: "j4 run")
                } else {
                    _ = try? await client.abort(control, who: "j4 run", reason: "interrupted")
                }
            }
        }
        defer { listener.cancel() }
        try await watch()
    }

    /// Polls the run's summary every second until the run is no longer live.
    func watch() async throws {
        defer { progress.finish() }
        var unreachableSince: ContinuousClock.Instant?
        while true {
            do {
                guard let summary = try await RunSummary.load(run, on: control) else { throw CLIError.infrastructure("run \(run) disappeared from Redis") }
                unreachableSince = nil
                progress.show(summary)
                if !(RunState(rawValue: summary.state)?.isLive ?? false) { return }
            } catch let e as CLIError {
                throw e
            } catch let e as CorruptRunError {
                // The run's data is broken (its processes fail it): no use waiting for Redis.
                throw e
            } catch {
                let since = unreachableSince ?? .now
                unreachableSince = since
                if since.duration(to: .now) > .seconds(30) {
                    throw CLIError.infrastructure("Redis at \(endpoint) unreachable for 30s: \(error)")
                }
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }
}

/// Writes to stderr, ignoring a terminal that is gone (FileHandle would trap on EIO).
func writeStandardError(_ text: String) {
    var bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeMutableBytes { write(STDERR_FILENO, $0.baseAddress! + offset, $0.count - offset) }
        if n <= 0 { return }
        offset += n
    }
}

/// The live line of `j4 run` on a terminal: progress bar, time, target and achieved rate.
final class Progress: @unchecked Sendable {
    private let lock = NSLock()
    private var enabled: Bool
    let definition: RunDefinition
    let curve: J4Core.Curve
    var lastStarted: Int64 = 0
    var lastAt = ContinuousClock.now
    var shown = false

    init(enabled: Bool, definition: RunDefinition) {
        self.enabled = enabled
        self.definition = definition
        curve = Curve(definition)
    }

    /// Draws nothing more (the terminal is gone).
    func silence() { lock.withLock { enabled = false } }

    func show(_ s: RunSummary) {
        guard lock.withLock({ enabled }) else { return }
        let total = Double(curve.durationMs) / 1000
        let elapsed = min(total, s.duration_s ?? 0)
        let fraction = total > 0 ? elapsed / total : 0
        let width = 24
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "=", count: filled) + (filled < width ? ">" : "") + String(repeating: " ", count: max(0, width - filled - 1))
        let now = ContinuousClock.now
        let dt = Double(lastAt.duration(to: now).components.seconds) + Double(lastAt.duration(to: now).components.attoseconds) / 1e18
        let rate = dt > 0 ? Double(s.started - lastStarted) / dt : 0
        lastStarted = s.started
        lastAt = now
        let target = Double(curve.targetMilli(atMs: Int64(elapsed * 1000))) / 1000
        let unit = definition.model == .vus ? "VUs" : "/s"
        let line = String(format: "\r[%@] %3.0f%% %5.1fs/%.0fs %@ target %.0f%@ achieved %.0f/s started %lld failed %lld dropped %lld workers %d ",
                          bar, fraction * 100, elapsed, total, s.state, target, unit, rate, s.started, s.failed, s.dropped, s.workers)
        writeStandardError(line)
        shown = true
    }

    func finish() {
        if shown && lock.withLock({ enabled }) { writeStandardError("\n") }
    }
}
