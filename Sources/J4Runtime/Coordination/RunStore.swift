import Foundation
import J4Core
import J4Redis

/// A run as stored in its `ctl` hash.
public struct RunInfo: Sendable {
    /// The run id.
    public var id: String
    /// Its state.
    public var state: RunState
    /// The validated definition read back from Redis.
    public var definition: RunDefinition
    /// Server time of tick 0, once started.
    public var startMs: Int64?
    /// Number of ticks `N`.
    public var ticks: Int64
    /// First tick not granted.
    public var stopTick: Int64
    /// Iterations granted by claims (arrival-rate).
    public var granted: Int64
    /// When it was submitted and finished (server ms).
    public var submittedMs: Int64
    /// When it ended (server ms), once it has.
    public var finishedMs: Int64?
    /// Its generation.
    public var generation: Int64
    /// The hash of its canonical definition (`ctl.hash`).
    public var hash: String
    /// Live scales made so far (`j4 scale`), in order.
    public var scales: [Curve.Scale] = []
    /// The first second not folded into its minute yet (`ctl.compacted_s`; nil: none folded).
    public var compactedSecond: Int64?

    /// The run's curve, with its live scales.
    public var curve: Curve { Curve(definition, scales: scales) }

    /// Milliseconds from tick 0 to `nowMs` (or to the run's end), within the curve; 0 before
    /// the start.
    public func elapsedMs(nowMs: Int64) -> Int64 {
        startMs.map { max(0, min((finishedMs ?? nowMs) - $0, curve.durationMs)) } ?? 0
    }

    /// The 1-based stage the run is in `elapsedMs` after tick 0, and the number of stages;
    /// nil before the start and once ended.
    public func stage(elapsedMs: Int64) -> (index: Int, of: Int)? {
        guard startMs != nil, state.isLive else { return nil }
        var end: Int64 = 0
        for (i, s) in definition.stages.enumerated() {
            end += s.durationMs
            if elapsedMs < end { return (i + 1, definition.stages.count) }
        }
        return nil
    }
}

/// The data in Redis for a run cannot be used (missing, truncated, wrong type, unknown schema).
public struct CorruptRunError: Error, Sendable, CustomStringConvertible {
    /// The reason when the run's ctl hash itself is gone.
    public static let ctlMissing = "the run's ctl hash is missing"
    /// The run.
    public var run: String
    /// What is wrong, for the event and the log.
    public var reason: String
    public var description: String { "run \(run): \(reason)" }
}

/// Reads and writes runs: submit, look-ups, and the summary merged from every worker's metrics.
public enum RunStore {
    /// Schema version this binary writes and reads.
    public static let schema = "1"

    /// Stores a definition (valid by type) and indexes it; returns the run id. Refuses, with
    /// the field and the ceiling named and nothing written, a run above the cluster's ceiling
    /// (`j4:limits`, published by the leading supervisor).
    public static func submit(_ definition: RunDefinition, on c: RedisConnection, runID: String? = nil) async throws -> String {
        let id = runID ?? RunID.make(unixSeconds: Int64(Date().timeIntervalSince1970), random: UInt16.random(in: 0...UInt16.max))
        let json = definition.canonical.canonicalJSON
        let curve = Curve(definition)
        let target = definition.model == .arrivalRate ? curve.totalIterations : curve.peakVUs
        let args = [
            id, fnv1a64(json), json, definition.name, definition.scenario, definition.model.rawValue,
            String(definition.shards), String(definition.tickMs), String(definition.leaseTTLMs),
            String(curve.tickCount), String(target), String(definition.maxInFlight), String(curve.durationMs),
        ]
        // The cluster's ceiling on a run, if its supervisor publishes one.
        let over = try await limits(on: c).problems(definition)
        if !over.isEmpty { throw DefinitionError(problems: over) }
        // The history index first: a user that may not submit (a worker, a supervisor, a
        // viewer) is refused here by Redis's ACL, before anything of the run is written.
        try await c.send(["ZADD", GlobalKeys.runs, "NX", String(Int64(Date().timeIntervalSince1970 * 1000)), id])
        try await RunClient(run: id).submit(c, args: args)
        let replies = try await c.pipeline([
            ["SADD", GlobalKeys.active, id],
            // Workers look for new runs when they hear this, not only at their slow poll.
            ["PUBLISH", GlobalKeys.signals, "\(id) pending 0"],
        ])
        for r in replies { if case .error(let e) = r { throw RedisError.fromReply(e) } }
        return id
    }

    /// The cluster's ceiling on any one run, as the leading supervisor published it.
    public static func limits(on c: RedisConnection) async throws -> RunLimits {
        let values = try await c.send(["HMGET", GlobalKeys.limits, "max_rate_milli", "max_vus"]).array ?? []
        func number(_ i: Int) -> Int64? { values.count > i ? values[i].string.flatMap { Int64($0) } : nil }
        return RunLimits(maxRateMilli: number(0), maxVUs: number(1))
    }

    /// Publishes `limits` as the cluster's ceiling (none: removes it).
    public static func publish(_ limits: RunLimits, on c: RedisConnection) async throws {
        var fields: [String] = []
        if let r = limits.maxRateMilli { fields += ["max_rate_milli", String(r)] }
        if let v = limits.maxVUs { fields += ["max_vus", String(v)] }
        try await c.send(["DEL", GlobalKeys.limits])
        if !fields.isEmpty { try await c.send(["HSET", GlobalKeys.limits] + fields) }
    }

    /// FNV-1a, 64 bits, in hex: the definition hash that makes submit idempotent.
    static func fnv1a64(_ s: String) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in s.utf8 {
            h ^= UInt64(b)
            h = h &* 0x100_0000_01b3
        }
        return String(h, radix: 16)
    }

    /// Ids of runs not yet ended (pending, running or stopping).
    public static func activeRuns(on c: RedisConnection) async throws -> [String] {
        try await c.send(["SMEMBERS", GlobalKeys.active]).array?.compactMap(\.string).sorted() ?? []
    }

    /// The newest runs first, at most `limit`.
    public static func recentRuns(on c: RedisConnection, limit: Int = 20) async throws -> [String] {
        try await c.send(["ZREVRANGE", GlobalKeys.runs, "0", String(limit - 1)]).array?.compactMap(\.string) ?? []
    }

    /// Takes a run out of the active index (after it ended).
    public static func deactivate(_ run: String, on c: RedisConnection) async throws {
        try await c.send(["SREM", GlobalKeys.active, run])
    }

    /// A definition already parsed, and the hash it was stored under.
    public struct KnownDefinition: Sendable {
        /// `ctl.hash` when it was parsed.
        public var hash: String
        /// The parsed definition.
        public var definition: RunDefinition
        /// A parsed definition and its hash.
        public init(hash: String, definition: RunDefinition) {
            self.hash = hash
            self.definition = definition
        }
    }

    /// The run's ctl hash read and checked; nil when there is no such run. With `reusing`,
    /// the stored definition is parsed only when its hash differs from the known one.
    public static func info(_ run: String, on c: RedisConnection, reusing known: KnownDefinition? = nil) async throws -> RunInfo? {
        let keys = RunKeys(run: run)
        let reply: RedisValue
        do {
            reply = try await c.send(["HGETALL", keys.ctl])
        } catch RedisError.server(let code, _) where code == "WRONGTYPE" {
            throw CorruptRunError(run: run, reason: "\(keys.ctl) is not a hash")
        }
        guard let h = reply.hash, !h.isEmpty else { return nil }
        return try parse(run: run, ctl: h, reusing: known)
    }

    /// Marks `run` failed with `reason`: its state and `failure` field, a `failed` event, and,
    /// when `deactivate` (a supervisor or a person, not a worker), out of the active set with
    /// a signal to the workers. Each command stands alone, so one that meets a broken key does
    /// not keep the others from being written.
    public static func markFailed(_ run: String, reason: String, by who: String, deactivate: Bool, on c: RedisConnection) async {
        let keys = RunKeys(run: run)
        var commands = [eventCommand(run, type: "failed", ["by", who, "reason", reason])]
        // A ctl hash holding only a state would be worse than none.
        if reason != CorruptRunError.ctlMissing { commands.insert(["HSET", keys.ctl, "state", RunState.failed.rawValue, "failure", reason], at: 0) }
        if deactivate { commands += [["SREM", GlobalKeys.active, run], ["PUBLISH", GlobalKeys.signals, "\(run) failed 0"]] }
        _ = try? await c.pipeline(commands)
    }

    /// XADD of an event of `type` with `fields` (name, value, …) to the run's stream, capped
    /// as the scripts cap it.
    public static func eventCommand(_ run: String, type: String, _ fields: [String]) -> [String] {
        ["XADD", RunKeys(run: run).events, "MAXLEN", "~", "1000", "*", "type", type] + fields
    }

    /// Checks a ctl hash field by field; the error names the field.
    static func parse(run: String, ctl h: [String: String], reusing known: KnownDefinition? = nil) throws -> RunInfo {
        func bad(_ why: String) -> CorruptRunError { CorruptRunError(run: run, reason: why) }
        guard h["schema"] == schema else { throw bad("schema version \(h["schema"] ?? "missing") is not \(schema)") }
        guard let s = h["state"], let state = RunState(rawValue: s) else { throw bad("state \(h["state"] ?? "missing") is unknown") }
        guard let text = h["definition"] else { throw bad("definition is missing") }
        guard let hash = h["hash"] else { throw bad("hash is missing") }
        // The stored text must be what was hashed: a truncated or edited definition is caught
        // even where a parsed copy is reused.
        guard fnv1a64(text) == hash else { throw bad("definition does not match its hash (truncated or edited)") }
        let definition: RunDefinition
        if let known, known.hash == hash {
            definition = known.definition
        } else {
            do { definition = try RunDefinition.parse(text: text, format: .json) } catch { throw bad("definition does not validate: \(error)") }
        }
        func int(_ f: String, in range: ClosedRange<Int64> = Int64.min...Int64.max) throws -> Int64 {
            guard let v = h[f].flatMap({ Int64($0) }) else { throw bad("\(f) is \(h[f] ?? "missing"), not a number") }
            guard range.contains(v) else { throw bad("\(f) is \(v), outside \(range.lowerBound)...\(range.upperBound)") }
            return v
        }
        // What the scripts read from ctl must agree with the definition it was made from.
        let curve = Curve(definition)
        let ticks = try int("ticks", in: curve.tickCount...curve.tickCount)
        for (field, want) in [("shards", String(definition.shards)), ("tick_ms", String(definition.tickMs)), ("ttl_ms", String(definition.leaseTTLMs)), ("model", definition.model.rawValue)] {
            guard h[field] == want else { throw bad("\(field) is \(h[field] ?? "missing"), but the definition says \(want)") }
        }
        // Times are milliseconds since 1970 within a few centuries; ticks within the run.
        let time: ClosedRange<Int64> = 0...(1 << 44)
        let maxTarget = definition.model == .vus ? DefinitionLimits.maxVUs * 1000 : DefinitionLimits.maxRate * 1000
        var scales: [Curve.Scale] = []
        for entry in (h["scales"] ?? "").split(separator: ",") {
            let parts = entry.split(separator: ":").compactMap { Int64($0) }
            guard parts.count == 3, (0...ticks).contains(parts[0]), (0...maxTarget).contains(parts[1]) else {
                throw bad("scales entry \(entry) is not tick:target:base with a tick of the run and a target within the limits")
            }
            scales.append(Curve.Scale(fromTick: parts[0], targetMilli: parts[1]))
        }
        _ = try int("lease_seq", in: 0...(1 << 53))
        return RunInfo(
            id: run, state: state, definition: definition, startMs: try h["start_ms"].map { _ in try int("start_ms", in: time) },
            ticks: ticks, stopTick: try int("stop_tick", in: 0...ticks), granted: try int("granted", in: 0...(1 << 53)),
            submittedMs: try int("submitted_ms", in: time), finishedMs: try h["finished_ms"].map { _ in try int("finished_ms", in: time) },
            generation: try int("gen", in: 0...Int64(Int32.max)), hash: hash, scales: scales,
            compactedSecond: h["compacted_s"].flatMap { Int64($0) })
    }
}
