import J4Core
import Testing

@Suite("Durations, buckets, ids")
struct SmallTypesTests {
    @Test("durations as people type them", arguments: [
        ("250ms", Int64(250)), ("1s", 1000), ("1.5s", 1500), ("5m", 300_000), ("1h30m", 5_400_000), ("1m30s", 90_000), ("0s", 0),
    ])
    func durations(text: String, ms: Int64) {
        #expect(DurationText.milliseconds(text) == ms)
        #expect(DurationText.milliseconds(DurationText.format(ms)) == ms)
    }

    @Test("what is not a duration", arguments: ["", "5", "5x", "s", "1.5ms", "-1s", "1s 2", "ms5"])
    func notDurations(text: String) {
        #expect(DurationText.milliseconds(text) == nil)
    }

    @Test("latency buckets: exact below 128 µs, within 1.6 % above")
    func buckets() {
        for v in [Int64(0), 1, 127, 128, 129, 1000, 12_345, 999_999, 60_000_000] {
            let b = LatencyBuckets.bucket(ofMicros: v)
            let r = LatencyBuckets.representative(ofBucket: b)
            #expect(b <= v)
            #expect(abs(Double(r - v)) <= max(1, Double(v) * 0.016))
            #expect(LatencyBuckets.bucket(ofMicros: b) == b)
        }
    }

    @Test("quantiles of a merged histogram")
    func quantiles() {
        // 90 fast (100 µs) and 10 slow (10 ms) iterations.
        let h: [Int64: Int64] = [100: 90, LatencyBuckets.bucket(ofMicros: 10_000): 10]
        #expect(LatencyBuckets.quantile(0.5, of: h) == 100)
        #expect(LatencyBuckets.quantile(0.9, of: h) == 100)
        #expect(abs(Double(LatencyBuckets.quantile(0.99, of: h)! - 10_000)) < 160)
        #expect(LatencyBuckets.quantile(0.5, of: [:]) == nil)
    }

    @Test("run ids sort by time and fit a key's hash tag")
    func runIDs() {
        let a = RunID.make(unixSeconds: 1_795_644_767, random: 0x7f)
        let b = RunID.make(unixSeconds: 1_795_644_768, random: 0x01)
        #expect(a == "20261125-221247-007f")
        #expect(a < b)
        #expect(RunID.isValid(a))
        #expect(!RunID.isValid("a}b"))
        #expect(!RunID.isValid(""))
    }
}
