/// A run definition: what load to send, how it grows, holds and falls, and how it is split.
///
/// Built only by ``RunDefinition/parse(_:)``, which validates every field; a value of this
/// type is always valid. Targets are kept in thousandths (`targetMilli`) so that rates such
/// as `0.5` per second stay exact.
public struct RunDefinition: Sendable, Equatable {
    /// How the target is read: iterations per second, or concurrent virtual users.
    public enum Model: String, Sendable, CaseIterable {
        /// Open model: the target is iterations started per second.
        case arrivalRate = "arrival-rate"
        /// Closed model: the target is the number of VUs, each looping the scenario.
        case vus
    }

    /// How a stage moves from the previous target to its own.
    public enum CurveShape: String, Sendable, CaseIterable {
        /// A straight ramp.
        case linear
        /// Equal steps every `every`, the last step reaching the target.
        case step
        /// Geometric steps every `every` (both ends must be above zero).
        case exponential
    }

    /// One piece of the curve: it ramps from the previous target to `target` over `duration`.
    public struct Stage: Sendable, Equatable {
        /// How long the stage lasts, in milliseconds (> 0).
        public var durationMs: Int64
        /// The target at the end of the stage, in thousandths.
        public var targetMilli: Int64
        /// The shape of the ramp.
        public var curve: CurveShape
        /// The step length for `step` and `exponential`, in milliseconds.
        public var everyMs: Int64

        /// A stage; ``RunDefinition/parse(_:)`` is what checks it.
        public init(durationMs: Int64, targetMilli: Int64, curve: CurveShape, everyMs: Int64) {
            self.durationMs = durationMs
            self.targetMilli = targetMilli
            self.curve = curve
            self.everyMs = everyMs
        }
    }

    /// A name for people; the safe alphabet `[a-z0-9._-]`.
    public var name: String
    /// The scenario the workers run: built into the binary (`http`) or compiled in by the user.
    public var scenario: String
    /// Open (`arrival-rate`) or closed (`vus`) model.
    public var model: Model
    /// The target at time 0, in thousandths.
    public var startMilli: Int64
    /// The stages, in order.
    public var stages: [Stage]
    /// Quota granularity in milliseconds (100 ... 10 000).
    public var tickMs: Int64
    /// Lease units: the finest split of the load between workers.
    public var shards: Int
    /// How long a lease lives without renewal, in milliseconds.
    public var leaseTTLMs: Int64
    /// Per worker: iterations in flight before new ones are counted as dropped.
    public var maxInFlight: Int
    /// Handed to the scenario as it is.
    public var params: JSONValue
    /// Pass/fail criteria, evaluated on the cluster's merged metrics.
    public var thresholds: [Threshold]

    /// The whole run's length in milliseconds.
    public var durationMs: Int64 { stages.reduce(0) { $0 + $1.durationMs } }
}

extension RunDefinition {
    /// The definition as JSON with sorted keys, in the same words a person writes; ``parse(_:)`` reads it back.
    public var canonical: JSONValue {
        var o: [String: JSONValue] = [
            "name": .string(name),
            "scenario": .string(scenario),
            "model": .string(model.rawValue),
            "start": RunDefinition.number(milli: startMilli),
            "stages": .array(stages.map { s in
                var st: [String: JSONValue] = [
                    "duration": .string(DurationText.format(s.durationMs)),
                    "target": RunDefinition.number(milli: s.targetMilli),
                    "curve": .string(s.curve.rawValue),
                ]
                if s.curve != .linear { st["every"] = .string(DurationText.format(s.everyMs)) }
                return .object(st)
            }),
            "tick": .string(DurationText.format(tickMs)),
            "shards": .int(Int64(shards)),
            "leaseTTL": .string(DurationText.format(leaseTTLMs)),
            "maxInFlight": .int(Int64(maxInFlight)),
            "params": params,
        ]
        o["thresholds"] = .array(thresholds.map { t in
            guard t.abortOnFail else { return .string(t.text) }
            return .object(["threshold": .string(t.text), "abortOnFail": .bool(true), "delayAbortEval": .string(DurationText.format(t.delayAbortEvalMs))])
        })
        return .object(o)
    }

    static func number(milli: Int64) -> JSONValue {
        milli % 1000 == 0 ? .int(milli / 1000) : .double(Double(milli) / 1000)
    }
}
