import Metrics
import Synchronization

/// J4's metrics for Prometheus (through swift-metrics; `--metrics-port` bootstraps the
/// Prometheus backend, otherwise they go nowhere). Labels are the run and scenario plus
/// each metric's own; handles are cached, so the per-iteration cost is a dictionary lookup.
///
/// | metric | type | labels |
/// |---|---|---|
/// | `j4_iterations_total` | counter | run, scenario, outcome (ok, failed, dropped) |
/// | `j4_iteration_duration_seconds` | histogram | run, scenario |
/// | `j4_steps_total` | counter | run, scenario, step, outcome (ok, failed) |
/// | `j4_step_duration_seconds` | histogram | run, scenario, step |
/// | `j4_checks_total` | counter | run, scenario, check, outcome (pass, fail) |
/// | `j4_custom_total` | counter | run, scenario, name |
/// | `j4_custom_duration_seconds` | histogram | run, scenario, name |
/// | `j4_leases_held` | gauge | run, scenario |
/// | `j4_vus` | gauge | run, scenario: VUs running on this worker (`vus` runs) |
/// | `j4_leases_acquired_total`, `j4_leases_lost_total`, `j4_leases_shed_total` | counter | run, scenario |
/// | `j4_claim_duration_seconds` | histogram | run, scenario |
/// | `j4_schedule_lag_seconds` | histogram | run, scenario: how late iterations start after their intended time |
/// | `j4_redis_errors_total`, `j4_redis_connects_total`, `j4_redis_commands_total` | counter | client (connection name) |
///
/// A run's step, check and custom metric names are the scenario's own: at most
/// ``maxLabelValues`` of each per run become label values, later ones are counted as `_other`,
/// so a scenario that names steps after ids cannot flood Prometheus with series. The
/// summary and the report (Redis) keep every name.
package final class Telemetry: Sendable {
    /// The most distinct values a `step`, `check` or `name` label takes per run.
    public static let maxLabelValues = 100
    /// The values each of those labels has taken, by metric.
    let seen = Mutex<[String: Set<String>]>([:])

    /// `value` for the label of `metric`, or `_other` once ``maxLabelValues`` others were taken.
    func bounded(_ metric: String, _ value: String) -> String {
        seen.withLock { seen in
            if seen[metric]?.contains(value) == true { return value }
            guard seen[metric, default: []].count < Telemetry.maxLabelValues else { return "_other" }
            seen[metric, default: []].insert(value)
            return value
        }
    }

    let base: [(String, String)]
    let counters = Mutex<[String: Counter]>([:])
    let timers = Mutex<[String: Metrics.Timer]>([:])
    let gauges = Mutex<[String: Gauge]>([:])

    /// Per step (by its clean name): its duration timer and its ok and failed counters.
    struct StepHandles: Sendable {
        let duration: Metrics.Timer
        let ok: Counter
        let failed: Counter
    }
    let steps = Mutex<[String: StepHandles]>([:])

    /// One step ended: `j4_step_duration_seconds` and `j4_steps_total`, with one lookup.
    package func step(_ clean: String, nanoseconds: Int64, failed: Bool) {
        let h = steps.withLock { s in
            if let found = s[clean] { return found }
            let dims = base + [("step", bounded("j4_steps_total", clean))]
            let made = StepHandles(
                duration: Metrics.Timer(label: "j4_step_duration_seconds", dimensions: dims, preferredDisplayUnit: .seconds),
                ok: Counter(label: "j4_steps_total", dimensions: dims + [("outcome", "ok")]),
                failed: Counter(label: "j4_steps_total", dimensions: dims + [("outcome", "failed")]))
            s[clean] = made
            return made
        }
        h.duration.recordNanoseconds(max(0, nanoseconds))
        (failed ? h.failed : h.ok).increment(by: 1)
    }

    /// The per-iteration handles, made once: the hot path does no lookup.
    let iterationsOK: Counter
    let iterationsFailed: Counter
    package let iterationsDropped: Counter
    let iterationDuration: Metrics.Timer
    package let scheduleLag: Metrics.Timer

    /// Metrics of `run` running `scenario`.
    public init(run: String, scenario: String) {
        let base = [("run", run), ("scenario", scenario)]
        self.base = base
        func outcome(_ o: String) -> Counter { Counter(label: "j4_iterations_total", dimensions: base + [("outcome", o)]) }
        iterationsOK = outcome("ok")
        iterationsFailed = outcome("failed")
        iterationsDropped = outcome("dropped")
        iterationDuration = Metrics.Timer(label: "j4_iteration_duration_seconds", dimensions: base, preferredDisplayUnit: .seconds)
        scheduleLag = Metrics.Timer(label: "j4_schedule_lag_seconds", dimensions: base, preferredDisplayUnit: .seconds)
    }

    /// One finished iteration.
    package func iteration(ok: Bool, took: Duration) {
        (ok ? iterationsOK : iterationsFailed).increment()
        iterationDuration.recordNanoseconds(max(0, Telemetry.nanos(took)))
    }

    static func key(_ label: String, _ extra: [(String, String)]) -> String {
        extra.isEmpty ? label : label + "|" + extra.map { $0.0 + "=" + $0.1 }.joined(separator: "|")
    }

    /// Adds `n` to the counter `label` with `extra` labels.
    public func count(_ label: String, _ extra: [(String, String)] = [], _ n: Int64 = 1) {
        let k = Telemetry.key(label, extra)
        let c = counters.withLock { c in
            if let found = c[k] { return found }
            let made = Counter(label: label, dimensions: base + boundedLabels(label, extra))
            c[k] = made
            return made
        }
        c.increment(by: n)
    }

    /// Records a duration in the histogram `label`.
    public func time(_ label: String, _ extra: [(String, String)] = [], nanoseconds: Int64) {
        let k = Telemetry.key(label, extra)
        let t = timers.withLock { t in
            if let found = t[k] { return found }
            let made = Metrics.Timer(label: label, dimensions: base + boundedLabels(label, extra), preferredDisplayUnit: .seconds)
            t[k] = made
            return made
        }
        t.recordNanoseconds(max(0, nanoseconds))
    }

    /// `extra` with its first label (a check's or a custom metric's name) bounded.
    private func boundedLabels(_ metric: String, _ extra: [(String, String)]) -> [(String, String)] {
        guard let first = extra.first, first.0 == "check" || first.0 == "name" else { return extra }
        return [(first.0, bounded(metric, first.1))] + extra.dropFirst()
    }

    /// Sets the gauge `label`.
    public func gauge(_ label: String, _ value: Double) {
        let g = gauges.withLock { g in
            if let found = g[label] { return found }
            let made = Gauge(label: label, dimensions: base)
            g[label] = made
            return made
        }
        g.record(value)
    }

    /// Drops this run's series from the metrics backend (a long-lived worker serves many runs).
    public func close() {
        for c in [iterationsOK, iterationsFailed, iterationsDropped] { c.destroy() }
        iterationDuration.destroy()
        scheduleLag.destroy()
        for c in counters.withLock({ c in defer { c = [:] }; return Array(c.values) }) { c.destroy() }
        for t in timers.withLock({ t in defer { t = [:] }; return Array(t.values) }) { t.destroy() }
        for g in gauges.withLock({ g in defer { g = [:] }; return Array(g.values) }) { g.destroy() }
        for h in steps.withLock({ s in defer { s = [:] }; return Array(s.values) }) {
            h.duration.destroy()
            h.ok.destroy()
            h.failed.destroy()
        }
    }

    package static func nanos(_ d: Duration) -> Int64 {
        let (s, atto) = d.components
        return s * 1_000_000_000 + atto / 1_000_000_000
    }
}
