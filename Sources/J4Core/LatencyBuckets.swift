/// Log-linear latency buckets in microseconds: exact below 128 µs, then 64 buckets per
/// doubling (under 1.6 % relative error), like an HdrHistogram with two significant digits.
///
/// Workers count latencies per bucket; Redis adds the counts of every worker with
/// `HINCRBY` on the field `lat:<bucket>`, so the cluster's histogram is merged for free and
/// no raw sample is kept anywhere.
public enum LatencyBuckets {
    /// The bucket (its lowest value) that holds `micros`.
    public static func bucket(ofMicros micros: Int64) -> Int64 {
        guard micros >= 128 else { return max(0, micros) }
        let shift = (63 - micros.leadingZeroBitCount) - 6
        return (micros >> shift) << shift
    }

    /// The value reported for a bucket: its middle.
    public static func representative(ofBucket b: Int64) -> Int64 {
        guard b >= 128 else { return b }
        let shift = (63 - b.leadingZeroBitCount) - 6
        return b + (Int64(1) << shift) / 2
    }

    /// The `q`-quantile (0...1) of a merged histogram (bucket → count), in microseconds.
    public static func quantile(_ q: Double, of histogram: [Int64: Int64]) -> Int64? {
        let total = histogram.values.reduce(0, +)
        guard total > 0 else { return nil }
        let rank = max(1, Int64((q * Double(total)).rounded(.up)))
        var seen: Int64 = 0
        for b in histogram.keys.sorted() {
            seen += histogram[b]!
            if seen >= rank { return representative(ofBucket: b) }
        }
        return histogram.keys.max().map(representative(ofBucket:))
    }
}
