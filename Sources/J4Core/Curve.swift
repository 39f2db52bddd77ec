/// The target curve of a run as exact numbers: a pure function of the definition.
///
/// ## The maths
///
/// Targets are kept in thousandths (`r`, milli-iterations per second or milli-VUs) and time
/// in milliseconds, so that every quantity is an integer. Within a stage of length `D` that
/// ramps linearly from `r0` to `r1`, the rate `τ` ms into the stage is `r0 + (r1 − r0)·τ/D`
/// and its integral, in iterations, is
///
///     I(τ) = (2·D·r0·τ + (r1 − r0)·τ²) / (2·10⁶·D)
///
/// A `step` or `exponential` stage is piecewise constant: step j (length `e`, the last one
/// possibly shorter) runs at the integer rate `q_j`, so `I(τ) = (Σ_{i<J} q_i·e_i + q_J·(τ − J·e)) / 10⁶`
/// with prefix sums kept per stage. Step rates are `r0 + (r1 − r0)·(j+1)/m` truncated towards
/// `r0`; exponential rates are `r0·(r1/r0)^((j+1)/m)` rounded to a thousandth once, here,
/// so that everything after is exact.
///
/// `A(t)` is the sum of the whole stages before `t` plus `I` of the stage `t` falls in,
/// as a ``Rational``. Tick n owns the iterations `g ∈ [F(n), F(n+1))` where
/// `F(n) = ceil(A(min(n·Δ, T)))`, so the run's total is exactly `ceil(A(T))` for any tick
/// and any number of workers. Iteration g is meant to start at `A⁻¹(g)`.
///
/// For the VU model, tick n has `V(n) = floor(target(n·Δ))` VUs, and 0 from `T` on.
///
/// ## Live scaling
///
/// `j4 scale` sets a constant target `N` from tick `k` (the first tick not yet frozen) to the
/// end. From there the curve restarts at the integer `F(k)`: `A'(t) = F(k) + N·(t − kΔ)/10⁶`
/// for `t ≥ kΔ`. Starting from `F(k)` rather than `A(kΔ)` keeps every later `F'(n)` an
/// integer sum that scale.lua can compute exactly with Lua's doubles, so it can rewrite the
/// published plan itself, in the same script that records the scale.
public struct Curve: Sendable {
    /// A live change of target: `targetMilli` from tick `fromTick` on.
    public struct Scale: Sendable, Hashable {
        /// The first tick at the new target.
        public var fromTick: Int64
        /// The new target, in thousandths.
        public var targetMilli: Int64

        /// A scale to `targetMilli` from tick `fromTick`.
        public init(fromTick: Int64, targetMilli: Int64) {
            self.fromTick = fromTick
            self.targetMilli = targetMilli
        }
    }

    struct Piece: Sendable {
        var startMs: Int64
        var durationMs: Int64
        var r0: Int64
        var r1: Int64
        /// Step length for piecewise stages; 0 for linear.
        var everyMs: Int64
        /// Rates of the steps (piecewise stages only).
        var steps: [Int64]
        /// `prefix[j]` = Σ_{i<j} q_i·e_i (piecewise stages only).
        var prefix: [Int128]
        /// A at the start of this stage.
        var before: Rational
        /// `before` as a Double, for timing.
        var beforeApprox: Double = 0
    }

    /// Open or closed model.
    public let model: RunDefinition.Model
    /// Tick length in milliseconds.
    public let tickMs: Int64
    /// The run's length in milliseconds (`T`).
    public let durationMs: Int64
    let pieces: [Piece]
    /// Scales in force, in order, each with `F(fromTick)` of the curve before it.
    let scales: [(scale: Scale, base: Int64)]

    /// The curve of a (valid) definition, with the live scales made so far.
    public init(_ definition: RunDefinition, scales: [Scale] = []) {
        self.init(base: definition)
        var done: [(scale: Scale, base: Int64)] = []
        for scale in scales where scale.fromTick < tickCount {
            let partial = Curve(pieces: pieces, model: model, tickMs: tickMs, durationMs: durationMs, scales: done)
            done.append((scale, partial.firstIteration(ofTick: scale.fromTick)))
        }
        self = Curve(pieces: pieces, model: model, tickMs: tickMs, durationMs: durationMs, scales: done)
    }

    init(pieces: [Piece], model: RunDefinition.Model, tickMs: Int64, durationMs: Int64, scales: [(scale: Scale, base: Int64)]) {
        self.pieces = pieces
        self.model = model
        self.tickMs = tickMs
        self.durationMs = durationMs
        self.scales = scales
    }

    /// The scale in force at `t` ms, if any (the last one that has begun).
    func scale(atMs t: Double) -> (scale: Scale, base: Int64)? {
        scales.last { Double($0.scale.fromTick * tickMs) <= t }
    }

    init(base definition: RunDefinition) {
        scales = []
        model = definition.model
        tickMs = definition.tickMs
        var pieces: [Piece] = []
        var t: Int64 = 0
        var previous = definition.startMilli
        var before = Rational(0)
        for stage in definition.stages {
            let (r0, r1, d) = (previous, stage.targetMilli, stage.durationMs)
            var piece = Piece(startMs: t, durationMs: d, r0: r0, r1: r1, everyMs: 0, steps: [], prefix: [], before: before)
            if stage.curve != .linear {
                let e = stage.everyMs
                let m = (d + e - 1) / e
                piece.everyMs = e
                piece.steps = (0..<m).map { j in
                    if j == m - 1 { return r1 }
                    switch stage.curve {
                    case .exponential:
                        let ratio = Double(r1) / Double(r0)
                        return Int64((Double(r0) * pow(ratio, Double(j + 1) / Double(m))).rounded())
                    default:
                        return r0 + Int64(Int128(r1 - r0) * Int128(j + 1) / Int128(m))
                    }
                }
                var acc: Int128 = 0
                piece.prefix = [0]
                for j in 0..<Int(m) {
                    acc += Int128(piece.steps[j]) * Int128(min(e, d - Int64(j) * e))
                    piece.prefix.append(acc)
                }
            }
            piece.beforeApprox = before.doubleValue
            pieces.append(piece)
            before = before + Curve.integral(piece, d)
            t += d
            previous = r1
        }
        self.pieces = pieces
        durationMs = t
    }

    /// `I(τ)` of one stage, in iterations (or VU-seconds).
    static func integral(_ p: Piece, _ tau: Int64) -> Rational {
        let tau = max(0, min(tau, p.durationMs))
        if p.everyMs == 0 {
            let (d, t) = (Int128(p.durationMs), Int128(tau))
            return Rational(2 * d * Int128(p.r0) * t + Int128(p.r1 - p.r0) * t * t, 2_000_000 * d)
        }
        let j = min(tau / p.everyMs, Int64(p.steps.count - 1))
        let partial = Int128(p.steps[Int(j)]) * Int128(tau - j * p.everyMs)
        return Rational(p.prefix[Int(j)] + partial, 1_000_000)
    }

    func piece(at t: Int64) -> Piece? {
        pieceIndex(at: t).map { pieces[$0] }
    }

    /// The index of the last piece starting at or before `t` (a binary search).
    func pieceIndex(at t: Int64) -> Int? {
        guard !pieces.isEmpty else { return nil }
        var (lo, hi) = (0, pieces.count - 1)
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if pieces[mid].startMs <= t { lo = mid } else { hi = mid - 1 }
        }
        return lo
    }

    /// `A(t)`: the iterations the curve asks for from the start to `t` ms (clamped to the run).
    public func cumulative(atMs t: Int64) -> Rational {
        let t = max(0, min(t, durationMs))
        if let (scale, base) = scale(atMs: Double(t)) {
            return Rational(Int128(base)) + Rational(Int128(scale.targetMilli) * Int128(t - scale.fromTick * tickMs), 1_000_000)
        }
        guard let p = piece(at: t) else { return Rational(0) }
        return p.before + Curve.integral(p, t - p.startMs)
    }

    /// Number of ticks in the run: `ceil(T / Δ)`.
    public var tickCount: Int64 { (durationMs + tickMs - 1) / tickMs }

    /// `F(n) = ceil(A(min(n·Δ, T)))`: the first global iteration number of tick n.
    public func firstIteration(ofTick n: Int64) -> Int64 {
        cumulative(atMs: min(max(n, 0) * tickMs, durationMs)).ceiling
    }

    /// Iterations the whole run asks for: `F(tickCount) = ceil(A(T))`.
    public var totalIterations: Int64 { cumulative(atMs: durationMs).ceiling }

    /// The target at time `t` ms, in thousandths, rounded down; 0 from the end on.
    public func targetMilli(atMs t: Int64) -> Int64 {
        guard t >= 0, t < durationMs else { return 0 }
        if let (scale, _) = scale(atMs: Double(t)) { return scale.targetMilli }
        guard let p = piece(at: t) else { return 0 }
        let tau = t - p.startMs
        if p.everyMs == 0 {
            return Rational(Int128(p.r0) * Int128(p.durationMs) + Int128(p.r1 - p.r0) * Int128(tau), Int128(p.durationMs)).floor
        }
        return p.steps[Int(min(tau / p.everyMs, Int64(p.steps.count - 1)))]
    }

    /// `V(n)`: the VUs that exist in tick n.
    public func vus(inTick n: Int64) -> Int64 {
        targetMilli(atMs: n * tickMs) / 1000
    }

    /// The greatest number of VUs in any tick.
    public var peakVUs: Int64 {
        (0..<tickCount).reduce(0) { max($0, vus(inTick: $1)) }
    }

    /// What the plan holds for tick n: `F(n)` for arrival-rate, `V(n)` for VUs.
    public func planValue(tick n: Int64) -> Int64 {
        model == .arrivalRate ? firstIteration(ofTick: n) : vus(inTick: n)
    }

    /// `A(t)` as a `Double` at a fractional time, for placing iterations within a tick.
    func cumulativeApprox(atMs t: Double) -> Double {
        let t = max(0, min(t, Double(durationMs)))
        if let (scale, base) = scale(atMs: t) {
            return Double(base) + Double(scale.targetMilli) * (t - Double(scale.fromTick * tickMs)) / 1_000_000
        }
        // Fields read in place: copying a Piece would retain and release its arrays.
        guard let i = pieceIndex(at: Int64(t.rounded(.down))) else { return 0 }
        let tau = t - Double(pieces[i].startMs)
        let everyMs = pieces[i].everyMs
        if everyMs == 0 {
            let d = Double(pieces[i].durationMs)
            return pieces[i].beforeApprox + (2 * d * Double(pieces[i].r0) * tau + Double(pieces[i].r1 - pieces[i].r0) * tau * tau) / (2_000_000 * d)
        }
        let j = min(Int(tau / Double(everyMs)), pieces[i].steps.count - 1)
        let partial = Double(pieces[i].steps[j]) * (tau - Double(j) * Double(everyMs))
        return pieces[i].beforeApprox + (Double(pieces[i].prefix[j]) + partial) / 1_000_000
    }

    /// `A⁻¹(target)` in closed form, when the part of the curve in force at `t0` (a live
    /// scale, or a linear stage) reaches `target` before it ends; nil otherwise (a stepped
    /// stage, a rate of 0, an answer past the part), and the caller searches instead.
    func inverseApprox(_ target: Double, near t0: Double) -> Double? {
        if let (scale, base) = scale(atMs: t0) {
            guard scale.targetMilli > 0 else { return nil }
            let t = Double(scale.fromTick * tickMs) + (target - Double(base)) * 1_000_000 / Double(scale.targetMilli)
            // A later scale would change the rate before t.
            if let later = scales.first(where: { Double($0.scale.fromTick * tickMs) > t0 }), Double(later.scale.fromTick * tickMs) <= t { return nil }
            return t >= t0 ? t : nil
        }
        guard let i = pieceIndex(at: Int64(t0.rounded(.down))), pieces[i].everyMs == 0 else { return nil }
        // A(τ) = before + b·τ + a·τ² on this stage; the root of a·τ² + b·τ = c, in the form
        // that stays exact when a is 0 or small: τ = 2c / (b + √(b² + 4ac)).
        let d = Double(pieces[i].durationMs)
        let a = Double(pieces[i].r1 - pieces[i].r0) / (2_000_000 * d)
        let b = Double(pieces[i].r0) / 1_000_000
        let c = target - pieces[i].beforeApprox
        let disc = b * b + 4 * a * c
        guard c >= 0, disc >= 0 else { return nil }
        let denominator = b + disc.squareRoot()
        guard denominator > 0 else { return nil }
        let tau = 2 * c / denominator
        guard tau <= d else { return nil }
        return Double(pieces[i].startMs) + tau
    }

    /// `A⁻¹(g)`: when iteration `g` of tick `n` is meant to start, in ms since the run's start.
    ///
    /// Found by bisection inside the tick; the result is clamped into the tick, so an
    /// iteration is never placed in a tick that does not own it.
    public func intendedStartMs(ofIteration g: Int64, inTick n: Int64) -> Double {
        var lo = Double(n * tickMs)
        var hi = Double(min((n + 1) * tickMs, durationMs))
        let target = Double(g)
        if cumulativeApprox(atMs: lo) >= target { return lo }
        for _ in 0..<40 {
            let mid = (lo + hi) / 2
            if cumulativeApprox(atMs: mid) >= target { hi = mid } else { lo = mid }
        }
        return min(hi, Double((n + 1) * tickMs) - 0.001)
    }
}

/// The intended starts of one tick's iterations, asked for in increasing order (as a worker
/// fires them): `A⁻¹(g)` to within a microsecond, each search starting where the previous
/// one ended and widening by the last gap, so a steady rate costs a few evaluations of `A`
/// per iteration instead of a bisection over the whole tick.
public struct TickSchedule: Sendable {
    let curve: Curve
    /// A time whose `A` is below the next iteration asked for.
    var lo: Double
    let hi: Double
    let end: Double
    var gap = 0.001

    /// The schedule of tick `n` of `curve`.
    public init(curve: Curve, tick n: Int64) {
        self.curve = curve
        lo = Double(n * curve.tickMs)
        hi = Double(min((n + 1) * curve.tickMs, curve.durationMs))
        end = Double((n + 1) * curve.tickMs)
    }

    /// `A⁻¹(g)` in ms since the run's start, clamped into the tick; `g` must not decrease
    /// from one call to the next.
    public mutating func startMs(ofIteration g: Int64) -> Double {
        let target = Double(g)
        if curve.cumulativeApprox(atMs: lo) >= target { return lo }
        // A steady rate or a linear ramp: solved, not searched.
        if let t = curve.inverseApprox(target, near: lo), t >= lo, t < hi { return min(t, end - 0.001) }
        // Gallop: widen from lo until A reaches g, then bisect to a microsecond.
        var step = max(gap, 0.001)
        var upper = min(lo + step, hi)
        while upper < hi, curve.cumulativeApprox(atMs: upper) < target {
            lo = upper
            step *= 2
            upper = min(lo + step, hi)
        }
        let before = lo
        while upper - lo > 0.0005 {
            let mid = (lo + upper) / 2
            if curve.cumulativeApprox(atMs: mid) >= target { upper = mid } else { lo = mid }
        }
        gap = max(0.001, upper - before)
        return min(upper, end - 0.001)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
