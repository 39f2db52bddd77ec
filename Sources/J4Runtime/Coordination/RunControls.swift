import Foundation
import J4Core
import J4Redis

/// Why a person's control of a run (`j4 stop`, `abort`, `scale`, or the dashboard's buttons)
/// was not carried out. Nothing was written.
public struct ControlRefusal: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// There is no such run.
        case noRun
        /// A value the person gave is not accepted (`field` names it).
        case invalid
        /// The run is not in a state where this can be done (ended, or too near its end).
        case conflict
        /// The cluster cannot do it now (no supervisor has published the run's plan).
        case unavailable
    }
    public var kind: Kind
    /// The field at fault (`target`), when one is.
    public var field: String?
    public var message: String

    public var description: String { message }
}

/// The controls a person has over a run, shared by the command line and the dashboard: each
/// checks the run and its input first and writes nothing when it refuses.
public enum RunControls {
    /// Stops `run` at the next tick boundary (stop.lua); its state and the first tick not run.
    public static func stop(_ run: String, who: String, on c: RedisConnection) async throws -> (RunState, Int64) {
        guard RunID.isValid(run), try await RunStore.info(run, on: c) != nil else { throw noRun(run) }
        return try await RunClient(run: run).stop(c, mode: "stop", who: who)
    }

    /// Aborts `run` at once (abort.lua) and takes it off the active set. The kill switch works
    /// on a run whose data is broken too: abort.lua needs only its state.
    public static func abort(_ run: String, reason: String, who: String, on c: RedisConnection) async throws -> (RunState, Int64) {
        guard RunID.isValid(run) else { throw noRun(run) }
        do {
            guard try await RunStore.info(run, on: c) != nil else { throw noRun(run) }
        } catch is CorruptRunError {}
        let result = try await RunClient(run: run).abort(c, who: who, reason: reason)
        try await RunStore.deactivate(run, on: c)
        return result
    }

    /// What a scale did: the new target in milli-units, whether it counts VUs, and the first
    /// tick it holds from.
    public struct Scaled: Sendable, Equatable {
        public var targetMilli: Int64
        public var vus: Bool
        public var fromTick: Int64
    }

    /// Makes `target` (iterations per second, or VUs, as typed) the constant target of `run`
    /// from its first unfrozen tick on (scale.lua), after checking it against the run's model
    /// and the cluster's ceiling.
    public static func scale(_ run: String, target: String, who: String, on c: RedisConnection) async throws -> Scaled {
        guard RunID.isValid(run), let info = try await RunStore.info(run, on: c) else { throw noRun(run) }
        let model = info.definition.model
        let vus = model == .vus
        guard let milli = Double(target).flatMap({ RunDefinition.targetMilli($0, vus: vus) }) else {
            throw ControlRefusal(kind: .invalid, field: "target", message: "target \(target) is not accepted; use " + (vus
                ? "a whole number of VUs from 0 to \(DefinitionLimits.maxVUs)"
                : "iterations per second from 0 to \(DefinitionLimits.maxRate), at most 3 decimals"))
        }
        if let problem = try await RunStore.limits(on: c).problem(scaling: model, to: milli) {
            throw ControlRefusal(kind: .invalid, field: "target", message: "target \(target) is not accepted; \(problem.expected)")
        }
        let (code, fromTick) = try await RunClient(run: run).scale(c, targetMilli: milli, who: who)
        switch code {
        case "ok": return Scaled(targetMilli: milli, vus: vus, fromTick: fromTick)
        case "not_running":
            throw ControlRefusal(kind: .conflict, message: "run \(run) is \(info.state.rawValue), not running; only a running run can be scaled")
        case "too_late": throw ControlRefusal(kind: .conflict, message: "run \(run) ends before tick \(fromTick), the first that can still change")
        default: throw ControlRefusal(kind: .unavailable, message: "run \(run) has no published plan at tick \(fromTick): is a supervisor running?")
        }
    }

    static func noRun(_ run: String) -> ControlRefusal { ControlRefusal(kind: .noRun, field: "run", message: "no run \(run)") }
}
