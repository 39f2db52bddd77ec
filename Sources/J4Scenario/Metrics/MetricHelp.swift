/// The HELP text of every metric J4 exports to Prometheus, by name (`promtool check metrics`
/// wants one for each). A name not here (a library's own metric) gets a generic text.
public enum MetricHelp {
    public static let texts: [String: String] = [
        "j4_iterations_total": "Iterations ended on this worker, by outcome (ok, failed, dropped).",
        "j4_iteration_duration_seconds": "How long iterations took, from their start to their end.",
        "j4_steps_total": "Steps ended, by step and outcome (ok, failed); at most \(Telemetry.maxLabelValues) step names per run, the rest as _other.",
        "j4_step_duration_seconds": "How long steps took, by step; at most \(Telemetry.maxLabelValues) step names per run, the rest as _other.",
        "j4_checks_total": "Checks evaluated, by check and outcome (pass, fail); at most \(Telemetry.maxLabelValues) check names per run, the rest as _other.",
        "j4_custom_total": "Custom counters of the scenario (metrics.count), by name.",
        "j4_custom_duration_seconds": "Custom durations of the scenario (metrics.record), by name.",
        "j4_leases_held": "Shards of the run this worker holds a lease on.",
        "j4_vus": "VUs running on this worker (vus model).",
        "j4_leases_acquired_total": "Shard leases this worker took, new or from an expired holder.",
        "j4_leases_lost_total": "Shard leases this worker lost (expired or taken over before it renewed them).",
        "j4_leases_shed_total": "Shard leases this worker gave back to balance the cluster.",
        "j4_claim_duration_seconds": "How long a tick's claim took (one Lua script call to Redis).",
        "j4_schedule_lag_seconds": "How late iterations started after their intended time.",
        "j4_redis_errors_total": "Redis commands that failed, by connection name.",
        "j4_redis_connects_total": "Connections made to Redis, by connection name.",
        "j4_redis_commands_total": "Redis commands sent, by connection name.",
        "j4_supervisor_leading": "1 while this supervisor holds the lead, else 0.",
        "j4_supervision_cycle_seconds": "How long one supervision cycle (publishing the plans of every run) took.",
        "j4_runs_active": "Runs this supervisor is publishing plans for.",
    ]

    /// The HELP text of `name`.
    public static func text(_ name: String) -> String {
        texts[name] ?? "\(name), a metric of a library J4 uses."
    }
}
