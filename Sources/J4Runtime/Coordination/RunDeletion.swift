import J4Core
import J4Redis

/// Deleting runs: `j4 delete` and the supervisor's retention. A run's keys go only once it
/// has settled (ended, and no worker heard from for three lease TTLs), so that no late claim
/// or flush recreates one.
public enum RunDeletion {
    /// What a deletion did.
    public enum Outcome: Sendable, Equatable {
        /// Every key of the run is gone, and its entries in `j4:runs` and `j4:active`.
        case deleted(keys: Int)
        /// No key of the run existed (its list entries, if any, are removed).
        case noRun
        /// The run has not ended; nothing was deleted.
        case active(RunState)
        /// The run has ended but a worker was heard from lately; nothing was deleted yet.
        case busy
    }

    /// Deletes `run` if it has settled (`delete.lua`), then its per-second and per-minute metric hashes and
    /// the grant records of its earlier ticks (read from ctl first: the script deletes ctl),
    /// and its entries in the global run list and active set. Should this stop halfway, what
    /// is left of the metric hashes expires after 7 days, grant records within a day.
    public static func delete(_ run: String, on c: RedisConnection) async throws -> Outcome {
        let keys = RunKeys(run: run)
        let f = try await c.send(["HMGET", keys.ctl, "claimed_tick", "start_ms", "finished_ms", "duration_ms"]).array?.map { $0.string.flatMap { Int64($0) } } ?? []
        let claimed = f.first.flatMap { $0 } ?? -1
        let reply = try await c.evalScript(
            Scripts.delete,
            keys: [keys.ctl, keys.plan, keys.leases, keys.owners, keys.workers, keys.ticks, keys.totals, keys.flushSeqs, keys.events, keys.slow,
                   keys.claims(tick: claimed), keys.claims(tick: claimed - 1)],
            args: [])
        guard let a = reply.array, a.count == 5, let code = a[0].string, let count = a[4].int else {
            throw RedisError.unexpectedReply("delete: \(reply)")
        }
        switch code {
        case "active": return .active(a[1].string.flatMap(RunState.init(rawValue:)) ?? .running)
        case "busy": return .busy
        default: break
        }
        var deleted = Int(count)
        // Grant records of ticks the run moved past by more than one at a time keep a day.
        if claimed > 1 { deleted += try await deleteAll((0..<(claimed - 1)).map { keys.claims(tick: $0) }, on: c) }
        if f.count == 4, let start = f[1] {
            // One hash per second with metrics: from the start to the end, or to the planned
            // end for a run that failed, plus a minute for iterations still running then.
            let end = max(f[2] ?? start, start + (f[3] ?? 0))
            let seconds = (start / 1000 - 1)...(end / 1000 + 60)
            deleted += try await deleteAll(seconds.map { keys.metrics(second: $0) }, on: c)
            // And the minutes a long run's older seconds were folded into.
            deleted += try await deleteAll(stride(from: RunKeys.minuteStart(seconds.lowerBound), through: seconds.upperBound, by: 60).map { keys.metrics(minuteOf: $0) }, on: c)
        }
        _ = try await c.pipeline([["ZREM", GlobalKeys.runs, run], ["SREM", GlobalKeys.active, run]])
        return code == "deleted" || deleted > 0 ? .deleted(keys: deleted) : .noRun
    }

    /// `DEL` of `keys` (one slot), 500 to a call; how many existed.
    static func deleteAll(_ keys: [String], on c: RedisConnection) async throws -> Int {
        var n = 0
        var i = 0
        while i < keys.count {
            let batch = Array(keys[i..<min(i + 500, keys.count)])
            n += Int(try await c.send(["DEL"] + batch).int ?? 0)
            i += 500
        }
        return n
    }

    /// Runs submitted before `cutoffMs` (their `j4:runs` score) that are not active, oldest
    /// first, at most `limit`: what retention deletes.
    public static func expired(before cutoffMs: Int64, limit: Int = 50, on c: RedisConnection) async throws -> [String] {
        let old = try await c.send(["ZRANGEBYSCORE", GlobalKeys.runs, "-inf", "(\(cutoffMs)", "LIMIT", "0", String(limit)]).array?.compactMap(\.string) ?? []
        guard !old.isEmpty else { return [] }
        let active = try await c.pipeline(old.map { ["SISMEMBER", GlobalKeys.active, $0] })
        return zip(old, active).filter { $0.1.int != 1 }.map(\.0)
    }
}
