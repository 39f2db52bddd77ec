/// An exact non-negative fraction of 128-bit integers, used for the cumulative target `A(t)`.
///
/// The curve maths never sums floating-point steps: `ceil(A(t))` of a value that should be
/// 1998 but came out as 1998.0000001 would be one request too many.
public struct Rational: Sendable, Hashable, CustomStringConvertible {
    /// The numerator; the sign of the fraction.
    public let numerator: Int128
    /// The denominator, always positive.
    public let denominator: Int128

    /// A reduced fraction `numerator / denominator`; `denominator` must not be zero.
    public init(_ numerator: Int128, _ denominator: Int128 = 1) {
        precondition(denominator != 0, "zero denominator")
        let sign: Int128 = denominator < 0 ? -1 : 1
        let g = Rational.gcd(numerator.magnitude, denominator.magnitude)
        self.numerator = sign * numerator / Int128(g)
        self.denominator = sign * denominator / Int128(g)
    }

    static func gcd(_ a: UInt128, _ b: UInt128) -> UInt128 {
        var (a, b) = (a, b)
        while b != 0 { (a, b) = (b, a % b) }
        return a == 0 ? 1 : a
    }

    /// The sum of two fractions, reduced.
    public static func + (lhs: Rational, rhs: Rational) -> Rational {
        let g = Int128(gcd(lhs.denominator.magnitude, rhs.denominator.magnitude))
        let l = lhs.denominator / g
        return Rational(lhs.numerator * (rhs.denominator / g) + rhs.numerator * l, l * rhs.denominator)
    }

    /// The smallest integer not below the fraction.
    public var ceiling: Int64 {
        let q = numerator / denominator, r = numerator % denominator
        return Int64(r > 0 ? q + 1 : q)
    }

    /// The largest integer not above the fraction.
    public var floor: Int64 {
        let q = numerator / denominator, r = numerator % denominator
        return Int64(r < 0 ? q - 1 : q)
    }

    /// The nearest `Double`, for timing within a tick (never for counts).
    public var doubleValue: Double { Double(numerator) / Double(denominator) }

    public var description: String { denominator == 1 ? "\(numerator)" : "\(numerator)/\(denominator)" }
}
