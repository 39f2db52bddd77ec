/// Striping: shard `i` of `S` owns the iterations (or VUs) whose number is `≡ i (mod S)`.
///
/// Stripes rather than blocks, so that a small target still spreads over all shards and
/// the shards' shares of any range add up to the range exactly.
public struct Striping: Sendable, Hashable {
    /// The number of shards, `S`.
    public let shards: Int

    /// Striping over `shards` shards.
    public init(shards: Int) {
        precondition(shards > 0)
        self.shards = shards
    }

    /// The shard that owns number `g`.
    public func shard(of g: Int64) -> Int { Int(g % Int64(shards)) }

    /// The first number `≥ lo` that shard `i` owns.
    public func first(atOrAfter lo: Int64, shard i: Int) -> Int64 {
        let s = Int64(shards)
        return lo + ((Int64(i) - lo) % s + s) % s
    }

    /// How many numbers of `[lo, hi)` shard `i` owns.
    public func count(in range: Range<Int64>, shard i: Int) -> Int64 {
        let g0 = first(atOrAfter: range.lowerBound, shard: i)
        return g0 < range.upperBound ? (range.upperBound - 1 - g0) / Int64(shards) + 1 : 0
    }

    /// The numbers of `[lo, hi)` that shard `i` owns, in order.
    public func members(of range: Range<Int64>, shard i: Int) -> StrideTo<Int64> {
        stride(from: first(atOrAfter: range.lowerBound, shard: i), to: range.upperBound, by: shards)
    }
}
