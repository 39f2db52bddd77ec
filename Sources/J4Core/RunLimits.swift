/// The cluster's ceiling on any one run: the most iterations per second (arrival-rate) and
/// the most VUs (`vus`) a run may ask for. The supervisor publishes it (`--max-run-rate`,
/// `--max-run-vus`) in `j4:limits`; `submit` and `scale` refuse what goes above it, and the
/// supervisor fails a run that got past them.
public struct RunLimits: Sendable, Equatable {
    /// Most iterations per second, in thousandths; nil: no ceiling.
    public var maxRateMilli: Int64?
    /// Most VUs; nil: no ceiling.
    public var maxVUs: Int64?

    /// A ceiling (nil parts: none).
    public init(maxRateMilli: Int64? = nil, maxVUs: Int64? = nil) {
        self.maxRateMilli = maxRateMilli
        self.maxVUs = maxVUs
    }

    /// The ceiling for `model`, in thousandths of its unit, and how to say it.
    func ceiling(_ model: RunDefinition.Model) -> (milli: Int64, text: String)? {
        switch model {
        case .arrivalRate: return maxRateMilli.map { ($0, "\(RunDefinition.number(milli: $0).canonicalJSON) iterations per second per run (j4:limits max_rate, the supervisor's --max-run-rate)") }
        case .vus: return maxVUs.map { ($0 * 1000, "\($0) VUs per run (j4:limits max_vus, the supervisor's --max-run-vus)") }
        }
    }

    /// Every part of `definition` above the ceiling: `start` and each stage's target.
    public func problems(_ definition: RunDefinition) -> [DefinitionProblem] {
        guard let (milli, text) = ceiling(definition.model) else { return [] }
        var out: [DefinitionProblem] = []
        if definition.startMilli > milli {
            out.append(DefinitionProblem(field: "start", value: RunDefinition.number(milli: definition.startMilli).canonicalJSON, expected: "this cluster allows at most \(text)"))
        }
        for (i, stage) in definition.stages.enumerated() where stage.targetMilli > milli {
            out.append(DefinitionProblem(field: "stages[\(i)].target", value: RunDefinition.number(milli: stage.targetMilli).canonicalJSON, expected: "this cluster allows at most \(text)"))
        }
        return out
    }

    /// Why a live change of `model`'s target to `targetMilli` goes above the ceiling, or nil.
    public func problem(scaling model: RunDefinition.Model, to targetMilli: Int64) -> DefinitionProblem? {
        guard let (milli, text) = ceiling(model), targetMilli > milli else { return nil }
        return DefinitionProblem(field: "--target", value: RunDefinition.number(milli: targetMilli).canonicalJSON, expected: "this cluster allows at most \(text)")
    }
}
