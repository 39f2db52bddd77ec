import J4Core
import Testing

/// The metric field grammar: each field's name, and names read back as fields.
@Suite("Metric field grammar")
struct MetricFieldTests {
    @Test("each field has one name and reads back as itself", arguments: [
        (MetricField.started, "started"), (.ok, "ok"), (.failed, "failed"), (.dropped, "dropped"),
        (.error("status_500"), "err:status_500"), (.latencyBucket(4242), "lat:4242"), (.latencySum, "lat_sum_us"),
        (.histogramBucket("s:login", 7), "s:login:h:7"), (.histogramSum("x:delivery"), "x:delivery:sum"),
        (.maximum("lat"), "max:lat"), (.maximum("s:login"), "max:s:login"), (.maximum("x:delivery"), "max:x:delivery"),
        (.activeWorker("w-1.pod"), "max:w:w-1.pod"), (.stepFailed("login"), "s:login:f"),
        (.stepError("login", "timeout"), "s:login:e:timeout"), (.check("status ok", passed: true), "k:status ok:p"),
        (.check("status ok", passed: false), "k:status ok:f"), (.counter("orders"), "c:orders"),
        (.tickStarted(12), "t:12:s"), (.tickDropped(0), "t:0:d"),
        (.slow("0af7651916cd43dd8448eb211c80319c w0 3 17 1796174336010"), "slow:0af7651916cd43dd8448eb211c80319c w0 3 17 1796174336010"),
    ])
    func roundTrip(field: MetricField, name: String) {
        #expect(field.name == name)
        #expect(MetricField(name) == field)
    }

    @Test("names outside the grammar are not fields", arguments: [
        "", "lat:abc", "t:x:s", "t:1:g", "k:a:x", "s:login", "s:login:h:x", "max:", "max:w", "started:1", "unknown",
    ])
    func rejected(name: String) {
        #expect(MetricField(name) == nil)
    }

    @Test("merge: sums, except max: fields which keep the maximum", arguments: [
        ("started", Int64?.none, Int64(5), Int64(5)), ("started", 3, 5, 8),
        ("max:lat", nil, 7, 7), ("max:lat", 9, 7, 9), ("max:w:w0", 1, 1, 1), ("max:s:login", -1, 0, 0),
    ])
    func merge(name: String, current: Int64?, value: Int64, merged: Int64) {
        #expect(MetricField.merge(name, current: current, value: value) == merged)
    }

    @Test("names inside fields: printable ASCII, no colon, at most 64 characters", arguments: [
        ("login", "login"), ("a:b", "a_b"), ("", "_"), ("é\n", "__"), (String(repeating: "x", count: 70), String(repeating: "x", count: 64)),
    ])
    func clean(name: String, cleaned: String) {
        #expect(MetricField.clean(name) == cleaned)
    }
}
