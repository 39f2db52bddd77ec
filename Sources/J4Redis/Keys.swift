/// Every Redis key J4 uses, built in one place.
///
/// All keys of one run carry the hash tag `{r:<id>}`, so every script touches one hash slot
/// and the layout works unchanged on Redis Cluster. Global indexes have keys of their own
/// and no run script touches them.
public struct RunKeys: Sendable, Hashable {
    /// The run id inside the hash tag.
    public let run: String

    /// Keys of run `run`.
    public init(run: String) { self.run = run }

    private var prefix: String { "j4:{r:\(run)}:" }
    /// Hash: schema, state, definition and the run's counters.
    public var ctl: String { prefix + "ctl" }
    /// Hash: tick → `F(n)` (arrival-rate) or `V(n)` (VUs).
    public var plan: String { prefix + "plan" }
    /// Zset: shard → lease expiry (server ms; 0 = free).
    public var leases: String { prefix + "leases" }
    /// Hash: shard → `worker|token`.
    public var owners: String { prefix + "owners" }
    /// Zset: worker id → last heartbeat (server ms).
    public var workers: String { prefix + "workers" }
    /// Hash: shard → `worker|token` granted tick `n`; kept a day, a minute once the run has
    /// granted a tick two or more after it.
    public func claims(tick n: Int64) -> String { prefix + "claims:\(n)" }
    /// Hash: merged metrics of one unix second.
    public func metrics(second: Int64) -> String { prefix + "m:\(second)" }
    /// Hash: merged metrics of the folded seconds of one minute, named by its first unix second.
    public func metrics(minuteOf second: Int64) -> String { prefix + "m60:\(RunKeys.minuteStart(second))" }
    /// The first unix second of the minute `second` is in.
    public static func minuteStart(_ second: Int64) -> Int64 { second - ((second % 60) + 60) % 60 }
    /// Hash: per-tick accounting (arrival-rate): `<n>:g` granted, `<n>:s` started, `<n>:d` dropped.
    public var ticks: String { prefix + "ticks" }
    /// Zset: the run's 20 slowest iterations, `<trace id> <worker> <vu> <iteration> <unix ms>` → latency (µs).
    public var slow: String { prefix + "slow" }
    /// Hash: merged metrics of the whole run.
    public var totals: String { prefix + "totals" }
    /// Hash: `worker|nonce` (one worker process) → last flush sequence number (deduplicates retried flushes).
    public var flushSeqs: String { prefix + "seqs" }
    /// Stream: what happened to the run, capped.
    public var events: String { prefix + "events" }
}

/// Keys that are not a run's.
public enum GlobalKeys {
    /// Zset: run id → submit time (ms).
    public static let runs = "j4:runs"
    /// Set: ids of runs not yet ended (pending, running or stopping).
    public static let active = "j4:active"
    /// String: `holder|token` of the leading supervisor, with a TTL.
    public static let leader = "j4:leader"
    /// Pub/sub channel, a fast path only (each fact also reaches workers through Redis):
    /// `<run> <state> <stop_tick>` when a run is stopped, aborted (or `failed 0`) or submitted
    /// (`pending 0`), and `<run> released <count>` when leases are handed back.
    public static let signals = "j4:signals"
    /// The cluster's ceiling on any one run (hash: max_rate_milli, max_vus), written by the
    /// leading supervisor.
    public static let limits = "j4:limits"
    /// String: the nonce of the one live process that runs as worker `id`, with a TTL.
    public static func worker(_ id: String) -> String { "j4:worker:" + id }
}

/// Keys of a shared data pool (`j4 pool load NAME FILE`). Pools are not a run's: every key
/// of one pool carries the hash tag `{p:<name>}`.
public struct PoolKeys: Sendable, Hashable {
    /// The pool's name.
    public let pool: String

    /// Keys of pool `pool`.
    public init(pool: String) { self.pool = pool }

    private var prefix: String { "j4:{p:\(pool)}:" }
    /// Hash: `mode` (exclusive or shared), `count`, `cursor`, `loaded_ms`.
    public var meta: String { prefix + "meta" }
    /// Hash: item index → item JSON.
    public var items: String { prefix + "items" }
    /// List: indexes of free items (exclusive pools).
    public var free: String { prefix + "free" }
    /// Zset: item index → hold expiry (Redis ms), for items checked out.
    public var held: String { prefix + "held" }
    /// Hash: item index → `worker|vu|token` of its holder.
    public var holders: String { prefix + "holders" }
}

