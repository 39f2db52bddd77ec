import J4Core
import J4Redis

/// A worker's view of its leases, from acquire.lua or renew.lua.
public struct LeaseReply: Sendable {
    /// Redis' clock when the script ran (ms).
    public var nowMs: Int64
    /// The run's state.
    public var state: RunState
    /// The run's generation (bumped by stop, abort, scale).
    public var generation: Int64
    /// Server time of tick 0, or nil before the run starts.
    public var startMs: Int64?
    /// The first tick that will not be granted.
    public var stopTick: Int64
    /// The caller's fair share of shards.
    public var cap: Int
    /// Workers with a heartbeat within one TTL.
    public var liveWorkers: Int
    /// Leases the caller holds now: shard → token, expiry (server ms).
    public var held: [Int: (token: String, expiryMs: Int64)]
    /// Shards the caller thought it held but does not.
    public var lost: [Int]
    /// acquire.lua only, when the caller is still below its share: the earliest expiry of a
    /// lease held now (server ms), when the next shard may become free.
    public var nextExpiryMs: Int64? = nil
}

/// The answer of claim.lua.
public struct ClaimReply: Sendable {
    /// What a claimed shard got.
    public enum Status: String, Sendable {
        /// The (tick, shard) is the caller's.
        case granted
        /// The caller's lease is gone or expired: no grant.
        case fenced
        /// Another token was granted this (tick, shard).
        case taken
    }
    /// Redis' clock when the script ran (ms).
    public var nowMs: Int64
    /// `ok`, or why nothing was granted (`aborted`, `past`, `early`, `stopped`, `no_plan`, `not_running`, `not_started`).
    public var code: String
    /// `F(n)` (arrival-rate) or `V(n)` (VUs).
    public var first: Int64
    /// `F(n+1)` (arrival-rate) or `V(n)` (VUs).
    public var end: Int64
    /// The first tick that will not be granted.
    public var stopTick: Int64
    /// Per shard claimed, what it got.
    public var statuses: [Int: Status]
    /// The shards whose leases this claim extended to (Redis' time) + TTL: a claim is also a heartbeat.
    public var renewed: Set<Int> = []
    /// The caller's fair share of shards now (with code `ok`).
    public var cap: Int?
}

/// The answer of plan.lua.
public struct PlanReply: Sendable {
    /// Redis' clock when the script ran (ms).
    public var nowMs: Int64
    /// `ok`, `fenced` when another supervisor holds the run, or `stale` when the run's
    /// generation moved on since the values were computed (nothing written).
    public var code: String
    /// The run's state after the call.
    public var state: RunState
    /// Server time of tick 0, or nil before the run starts.
    public var startMs: Int64?
}

/// One thin typed wrapper per Lua script, for one run: it builds KEYS in the order of the
/// script's header (the descriptor in ``Scripts``) and reads the flat reply.
public struct RunClient: Sendable {
    /// The run's keys.
    public let keys: RunKeys

    /// A client for run `run`.
    public init(run: String) { keys = RunKeys(run: run) }

    /// Runs `script`; an error that says the run's data is unusable (a key of the wrong type,
    /// ctl missing, a field a script cannot use as a number) becomes ``CorruptRunError``, so
    /// that the run is failed and not retried forever. Unreachable Redis, ACL refusals and
    /// the like stay as they are.
    func eval(_ c: RedisConnection, _ script: LuaScript, keys: [String], args: [String]) async throws -> RedisValue {
        do {
            return try await c.evalScript(script, keys: keys, args: args)
        } catch let e as RedisError {
            guard let reason = RunClient.corruption(e) else { throw e }
            throw CorruptRunError(run: self.keys.run, reason: "\(script.name).lua: \(reason)")
        }
    }

    /// Why `error` means unusable run data, or nil.
    static func corruption(_ error: RedisError) -> String? {
        guard case .server(let code, let message) = error else { return nil }
        switch code {
        case "WRONGTYPE": return "a key of the run has the wrong type (\(message))"
        case "J4_NO_RUN": return CorruptRunError.ctlMissing
        case "J4_CORRUPT": return String(message.dropFirst("J4_CORRUPT ".count))
        // A Lua runtime error (`ERR user_script:N: attempt to compare nil…`) or a number
        // command on a value that is not one; not an ACL refusal inside a script (`ERR The
        // user executing the script can't run…`, `ERR ACL failure in script…`), which is
        // a deployment mistake to fix, not the run's fault.
        case "ERR" where message.hasPrefix("ERR user_script:") || message.hasPrefix("ERR value is not an integer") || message.hasPrefix("ERR value is not a valid float"):
            return "a field of the run is not what the script needs (\(message))"
        default: return nil
        }
    }

    /// A reply that does not have the script's shape: a field it returned was unusable.
    func corrupt(_ what: String) -> CorruptRunError {
        CorruptRunError(run: keys.run, reason: "unusable reply from \(what)")
    }

    static func pairs(_ shards: [(Int, String)]) -> [String] {
        shards.flatMap { [String($0.0), $0.1] }
    }

    /// acquire.lua: heartbeat, renew, and (with `take`) take shards up to the fair share.
    public func acquire(_ c: RedisConnection, worker: String, nonce: String, take: Bool, held: [(Int, String)]) async throws -> LeaseReply {
        let r = try await eval(c, Scripts.acquire, keys: [keys.ctl, keys.leases, keys.owners, keys.workers, keys.events], args: [worker, nonce, take ? "1" : "0"] + RunClient.pairs(held))
        return try leaseReply(r, withNextExpiry: true)
    }

    /// renew.lua: heartbeat and renew only.
    public func renew(_ c: RedisConnection, worker: String, held: [(Int, String)]) async throws -> LeaseReply {
        let r = try await eval(c, Scripts.renew, keys: [keys.ctl, keys.leases, keys.owners, keys.workers, keys.events], args: [worker] + RunClient.pairs(held))
        return try leaseReply(r, withNextExpiry: false)
    }

    /// release.lua: hands leases back; returns how many were still the caller's.
    @discardableResult
    public func release(_ c: RedisConnection, worker: String, reason: String, shards: [(Int, String)]) async throws -> Int {
        let r = try await eval(c, Scripts.release, keys: [keys.ctl, keys.leases, keys.owners, keys.workers, keys.events], args: [worker, reason, GlobalKeys.signals, keys.run] + RunClient.pairs(shards))
        return Int(r.int ?? 0)
    }

    /// submit.lua: stores a run (`args` in the header's order; see ``RunStore/submit(_:on:runID:)``).
    public func submit(_ c: RedisConnection, args: [String]) async throws {
        let r = try await c.evalScript(Scripts.submit, keys: [keys.ctl, keys.leases, keys.events], args: args)
        guard let a = r.array, a.count == 2 else { throw RedisError.unexpectedReply("submit: \(r)") }
    }

    /// claim.lua: claims tick `tick` for the given leases.
    public func claim(_ c: RedisConnection, worker: String, tick: Int64, shards: [(Int, String)]) async throws -> ClaimReply {
        let r = try await eval(c, Scripts.claim, keys: [keys.ctl, keys.leases, keys.owners, keys.plan, keys.claims(tick: tick), keys.ticks, keys.workers, keys.events,
                   keys.claims(tick: tick - 2), keys.claims(tick: tick - 3)],
            args: [worker, String(tick)] + RunClient.pairs(shards))
        guard let a = r.array, a.count >= 6, let now = a[0].int, let code = a[1].string, let first = a[2].int, let end = a[3].int, let stop = a[4].int, let n = a[5].int, a.count == 6 + 3 * Int(n) || a.count == 7 + 3 * Int(n) else {
            throw corrupt("claim: \(r)")
        }
        var statuses: [Int: ClaimReply.Status] = [:]
        var renewed: Set<Int> = []
        for i in 0..<Int(n) {
            guard let s = a[6 + 3 * i].int else { continue }
            if let st = a[7 + 3 * i].string.flatMap(ClaimReply.Status.init(rawValue:)) { statuses[Int(s)] = st }
            if a[8 + 3 * i].int == 1 { renewed.insert(Int(s)) }
        }
        let cap = a.count == 7 + 3 * Int(n) ? a[6 + 3 * Int(n)].int.map(Int.init) : nil
        return ClaimReply(nowMs: now, code: code, first: first, end: end, stopTick: stop, statuses: statuses, renewed: renewed, cap: cap)
    }

    /// flush.lua: adds one second's metrics; false when this sequence number was already added.
    @discardableResult
    public func flush(_ c: RedisConnection, worker: String, seq: Int64, second: Int64, fields: [(String, Int64)]) async throws -> Bool {
        let r = try await eval(c, Scripts.flush, keys: [keys.flushSeqs, keys.metrics(second: second), keys.totals, keys.ticks, keys.slow, keys.ctl, keys.metrics(minuteOf: second)],
                               args: [worker, String(seq), String(RunClient.metricsTTLSeconds), String(second)] + fields.flatMap { [$0.0, String($0.1)] })
        return r.int == 1
    }

    /// How long a second's or a minute's metrics hash lives after its last write: 7 days.
    public static let metricsTTLSeconds: Int64 = 7 * 86_400

    /// compact_ticks.lua: folds up to `maxTicks` settled ticks below claimed_tick - 1 -
    /// `keepTicks`; the new cursor and how many were folded.
    public func compactTicks(_ c: RedisConnection, keepTicks: Int64, maxTicks: Int64) async throws -> (cursor: Int64, folded: Int64) {
        let r = try await eval(c, Scripts.compactTicks, keys: [keys.ctl, keys.plan, keys.ticks], args: [String(keepTicks), String(maxTicks)])
        guard let a = r.array, a.count == 2, let cursor = a[0].int, let folded = a[1].int else { throw RedisError.unexpectedReply("compact_ticks: \(r)") }
        return (cursor, folded)
    }

    /// compact_second.lua: folds `second` into its minute if it is the cursor and at least
    /// `keepSeconds` old; whether it was folded, and the cursor after the call.
    public func compactSecond(_ c: RedisConnection, _ second: Int64, keepSeconds: Int64) async throws -> (folded: Bool, cursor: Int64) {
        let r = try await eval(c, Scripts.compactSecond, keys: [keys.ctl, keys.metrics(second: second), keys.metrics(minuteOf: second)],
                               args: [String(second), String(keepSeconds), String(RunClient.metricsTTLSeconds)])
        guard let a = r.array, a.count == 2, let code = a[0].string, let cursor = a[1].int else { throw RedisError.unexpectedReply("compact_second: \(r)") }
        return (code == "folded", cursor)
    }

    /// plan.lua: publishes plan values from `from`, computed from the run's generation
    /// `generation` (code `stale`, nothing written, once it has moved on); starts a pending
    /// run `leadMs` from now.
    public func plan(_ c: RedisConnection, holder: String, token: String, ttlMs: Int64, leadMs: Int64, generation: Int64, from: Int64, values: [Int64]) async throws -> PlanReply {
        let r = try await eval(c, Scripts.plan, keys: [keys.ctl, keys.plan, keys.events], args: [holder, token, String(ttlMs), String(leadMs), String(generation), String(from)] + values.map(String.init))
        guard let a = r.array, a.count == 4, let now = a[0].int, let code = a[1].string, let state = a[2].string.flatMap(RunState.init(rawValue:)), let start = a[3].int else {
            throw corrupt("plan: \(r)")
        }
        return PlanReply(nowMs: now, code: code, state: state, startMs: start < 0 ? nil : start)
    }

    /// resign.lua: gives up `holder`'s hold on the run at once; true when it was the holder's.
    @discardableResult
    public func resign(_ c: RedisConnection, holder: String, token: String) async throws -> Bool {
        try await eval(c, Scripts.resign, keys: [keys.ctl], args: [holder, token]).int == 1
    }

    /// stop.lua in mode `stop` (a person's request) or `finish` (the supervisor, at the end).
    @discardableResult
    public func stop(_ c: RedisConnection, mode: String, who: String) async throws -> (RunState, Int64) {
        let r = try await eval(c, Scripts.stop, keys: [keys.ctl, keys.events], args: [mode, who, GlobalKeys.signals])
        return try stateReply(r)
    }

    /// abort.lua: the kill switch.
    @discardableResult
    public func abort(_ c: RedisConnection, who: String, reason: String) async throws -> (RunState, Int64) {
        let r = try await eval(c, Scripts.abort, keys: [keys.ctl, keys.events], args: [who, reason, GlobalKeys.signals])
        return try stateReply(r)
    }

    /// scale.lua: a constant target from the first unfrozen tick on; the code and that tick.
    public func scale(_ c: RedisConnection, targetMilli: Int64, who: String) async throws -> (code: String, fromTick: Int64) {
        let r = try await eval(c, Scripts.scale, keys: [keys.ctl, keys.plan, keys.events], args: [String(targetMilli), who])
        guard let a = r.array, a.count == 2, let code = a[0].string, let k = a[1].int else { throw corrupt("scale: \(r)") }
        return (code, k)
    }

    /// reap.lua: dead workers and expired leases out of the live sets.
    @discardableResult
    public func reap(_ c: RedisConnection, limit: Int = 100) async throws -> (deadWorkers: Int, expiredLeases: Int) {
        let r = try await eval(c, Scripts.reap, keys: [keys.ctl, keys.leases, keys.owners, keys.workers, keys.events], args: [String(limit)])
        guard let a = r.array, a.count == 2 else { throw corrupt("reap: \(r)") }
        return (Int(a[0].int ?? 0), Int(a[1].int ?? 0))
    }

    func stateReply(_ r: RedisValue) throws -> (RunState, Int64) {
        guard let a = r.array, a.count == 2, let s = a[0].string.flatMap(RunState.init(rawValue:)), let t = a[1].int else {
            throw corrupt("\(r)")
        }
        return (s, t)
    }

    /// The reply of acquire.lua (which ends with the next expiry) or renew.lua (which does not).
    func leaseReply(_ r: RedisValue, withNextExpiry: Bool) throws -> LeaseReply {
        guard let a = r.array, a.count >= 9, let now = a[0].int, let state = a[1].string.flatMap(RunState.init(rawValue:)),
              let gen = a[2].int, let start = a[3].int, let stop = a[4].int, let cap = a[5].int, let live = a[6].int, let n = a[7].int,
              n >= 0, n <= a.count
        else { throw corrupt("lease reply: \(r)") }
        var held: [Int: (token: String, expiryMs: Int64)] = [:]
        var i = 8
        for _ in 0..<Int(n) {
            guard i + 2 < a.count, let s = a[i].int, let token = a[i + 1].string, let exp = a[i + 2].int else { throw corrupt("lease reply: \(r)") }
            held[Int(s)] = (token, exp)
            i += 3
        }
        let extra = withNextExpiry ? 1 : 0
        guard i < a.count, let nl = a[i].int, nl >= 0, nl <= a.count, a.count == i + 1 + Int(nl) + extra else { throw corrupt("lease reply: \(r)") }
        let lost = a[(i + 1)..<(i + 1 + Int(nl))].compactMap { $0.int.map(Int.init) }
        let next = withNextExpiry ? a[i + 1 + Int(nl)].int.flatMap { $0 < 0 ? nil : $0 } : nil
        return LeaseReply(nowMs: now, state: state, generation: gen, startMs: start < 0 ? nil : start, stopTick: stop, cap: Int(cap), liveWorkers: Int(live), held: held, lost: lost, nextExpiryMs: next)
    }
}
