/// The contract of one Lua script in `lua/`: its KEYS and ARGV in header order.
///
/// Callers build KEYS and ARGV from this descriptor, and a test checks it against the
/// script's header, so a key count can never drift between the script and its callers.
public struct LuaScript: Sendable, Hashable {
    /// The file name without `.lua`.
    public let name: String
    /// Names of KEYS[1...], in order.
    public let keys: [String]
    /// Names of the fixed ARGV[1...], in order.
    public let args: [String]
    /// Names of a group of ARGV that repeats after the fixed ones (e.g. `shard`, `token`), if any.
    public let repeating: [String]

    /// The script's text, embedded at build time from `lua/<name>.lua`, with the `lua/lib`
    /// snippets its `-- @include` lines name written in.
    public var source: String { LuaSources.all[name] ?? "" }

    /// The shared snippet `lua/lib/<name>.lua` (the fence, the fair share, Redis' clock), for
    /// tests that check each shared rule once.
    public static func library(_ name: String) -> String? { LuaSources.libraries[name] }

    /// Throws when a call would pass the wrong number of keys or arguments.
    public func check(keyCount: Int, argCount: Int) throws(RedisError) {
        let extra = argCount - args.count
        let argsOK = repeating.isEmpty ? extra == 0 : extra >= 0 && extra % repeating.count == 0
        guard keyCount == keys.count, argsOK else {
            throw .unexpectedReply("script \(name) takes \(keys.count) keys and \(args.count) args\(repeating.isEmpty ? "" : " plus groups of \(repeating.count)"); called with \(keyCount) and \(argCount)")
        }
    }
}

/// Every script J4 runs, one descriptor each.
public enum Scripts {
    /// Stores a run's definition (idempotent on the run id and definition hash).
    public static let submit = LuaScript(name: "submit", keys: ["ctl", "leases", "events"], args: ["run", "hash", "definition", "name", "scenario", "model", "shards", "tick_ms", "ttl_ms", "ticks", "target", "max_in_flight", "duration_ms"], repeating: [])
    /// Heartbeat, renew held leases, take free ones up to the fair share.
    public static let acquire = LuaScript(name: "acquire", keys: ["ctl", "leases", "owners", "workers", "events"], args: ["worker", "nonce", "take"], repeating: ["shard", "token"])
    /// Heartbeat and renew held leases only; says which were lost and how many to shed.
    public static let renew = LuaScript(name: "renew", keys: ["ctl", "leases", "owners", "workers", "events"], args: ["worker"], repeating: ["shard", "token"])
    /// Token-checked hand-back of leases.
    public static let release = LuaScript(name: "release", keys: ["ctl", "leases", "owners", "workers", "events"], args: ["worker", "reason", "channel", "run"], repeating: ["shard", "token"])
    /// Claims one tick's quota for held shards: one grant per (tick, shard), fenced by token.
    public static let claim = LuaScript(name: "claim", keys: ["ctl", "leases", "owners", "plan", "claims", "ticks", "workers", "events", "claims_before", "claims_older"], args: ["worker", "tick"], repeating: ["shard", "token"])
    /// Adds a worker's metrics of one second, once per sequence number.
    public static let flush = LuaScript(name: "flush", keys: ["seqs", "second", "totals", "ticks", "slow", "ctl", "minute"], args: ["sender", "seq", "ttl_s", "second"], repeating: ["field", "delta"])
    /// Folds the per-tick state of settled ticks (plan values, per-tick counts) into sums.
    public static let compactTicks = LuaScript(name: "compact_ticks", keys: ["ctl", "plan", "ticks"], args: ["keep_ticks", "max_ticks"], repeating: [])
    /// Folds one second of metrics into its minute.
    public static let compactSecond = LuaScript(name: "compact_second", keys: ["ctl", "second", "minute"], args: ["second", "keep_s", "ttl_s"], repeating: [])
    /// Supervisor leadership lease.
    public static let leader = LuaScript(name: "leader", keys: ["leader"], args: ["op", "holder", "token", "ttl_ms"], repeating: [])
    /// Publishes plan values ahead of now; starts a pending run.
    public static let plan = LuaScript(name: "plan", keys: ["ctl", "plan", "events"], args: ["holder", "token", "ttl_ms", "lead_ms", "gen", "from_tick"], repeating: ["value"])
    /// One live process per worker id: claim (and renew) or release it.
    public static let identity = LuaScript(name: "identity", keys: ["identity"], args: ["op", "nonce", "ttl_ms"], repeating: [])
    /// Gives up a supervisor's hold on a run at once (a graceful stop).
    public static let resign = LuaScript(name: "resign", keys: ["ctl"], args: ["holder", "token"], repeating: [])
    /// Graceful stop at the next tick boundary, or the end of a run that has run its course.
    public static let stop = LuaScript(name: "stop", keys: ["ctl", "events"], args: ["mode", "who", "channel"], repeating: [])
    /// Kill switch: no tick is granted from now on; workers are told on the signals channel.
    public static let abort = LuaScript(name: "abort", keys: ["ctl", "events"], args: ["who", "reason", "channel"], repeating: [])
    /// Live change of a running run's target from the first unfrozen tick.
    public static let scale = LuaScript(name: "scale", keys: ["ctl", "plan", "events"], args: ["target_milli", "who"], repeating: [])
    /// Expired leases and dead workers out of the live sets.
    public static let reap = LuaScript(name: "reap", keys: ["ctl", "leases", "owners", "workers", "events"], args: ["limit"], repeating: [])

    /// Loads a batch of pool items (the first batch replaces the pool).
    public static let poolLoad = LuaScript(name: "pool_load", keys: ["meta", "items", "free", "held", "holders"], args: ["mode", "replace", "force"], repeating: ["item"])
    /// Checks an item out for a VU (exclusive: held until returned or expired; shared: the next in turn).
    public static let poolCheckout = LuaScript(name: "pool_checkout", keys: ["meta", "items", "free", "held", "holders"], args: ["holder", "token", "ttl_ms"], repeating: [])
    /// Extends a worker's holds; reports the ones lost.
    public static let poolRenew = LuaScript(name: "pool_renew", keys: ["held", "holders"], args: ["ttl_ms"], repeating: ["index", "holder"])
    /// Gives items back (token-checked).
    public static let poolReturn = LuaScript(name: "pool_return", keys: ["free", "held", "holders"], args: [], repeating: ["index", "holder"])

    /// All of them.
    public static let delete = LuaScript(
        name: "delete", keys: ["ctl", "plan", "leases", "owners", "workers", "ticks", "totals", "seqs", "events", "slow", "claims_last", "claims_before"], args: [], repeating: [])
    public static let all: [LuaScript] = [submit, acquire, renew, release, claim, flush, compactTicks, compactSecond, leader, identity, plan, resign, stop, abort, scale, reap, delete, poolLoad, poolCheckout, poolRenew, poolReturn]
}
