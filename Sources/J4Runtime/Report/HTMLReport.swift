import Foundation

extension RunReport {
    /// One self-contained HTML file: no network, no script. SVG charts of target vs achieved
    /// rate, latency percentiles, errors and drops, and active workers, each with the run's
    /// events marked; then the thresholds, steps, checks, metrics and events as tables.
    public var html: String {
        let s = summary
        // A folded minute (the older part of a long run) is drawn at its middle, as per-second rates.
        let ts = series.map { Double($0.t) + Double($0.seconds - 1) / 2 }
        func rate(_ v: Int64, _ e: Second) -> Double { Double(v) / Double(max(1, e.seconds)) }
        let rateUnit = s.model == "vus" ? "VUs (target) / iterations per second" : "iterations per second"
        var body = ""
        body += "<h1>\(esc(s.name)) <small>\(esc(s.run))</small></h1>\n"
        let verdict = s.thresholds.isEmpty ? "" : (s.thresholdsPassed ? " <span class=ok>thresholds passed</span>" : " <span class=bad>thresholds FAILED</span>")
        body += "<p class=meta>\(esc(s.scenario)), \(esc(s.model)), <b>\(esc(s.state))</b>\(verdict) · \(String(format: "%.1f", s.duration_s ?? 0)) s · \(s.workers) workers</p>\n"
        body += table(["target", "started", "ok", "failed", "dropped", "unclaimed", "lost", "p50", "p95", "p99", "max"],
                      [[String(s.target), String(s.started), String(s.ok), String(s.failed), String(s.dropped), String(s.unclaimed), String(s.lost),
                        ms(s.latency_ms.p50), ms(s.latency_ms.p95), ms(s.latency_ms.p99), ms(s.latency_ms.max)]])
        body += chart(id: "rate", title: "Target vs achieved", unit: rateUnit, x: ts, lines: [
            ("target", "#888", series.map { $0.target }, true),
            ("started", "#1f77b4", series.map { rate($0.started, $0) }, false),
            ("ok", "#2ca02c", series.map { rate($0.ok, $0) }, false),
        ], shade: series.map { $0.failed > 0 || $0.dropped > 0 })
        body += chart(id: "latency", title: "Iteration latency", unit: "ms", x: ts, lines: [
            ("p50", "#2ca02c", series.map { $0.p50 }, false),
            ("p95", "#ff7f0e", series.map { $0.p95 }, false),
            ("p99", "#d62728", series.map { $0.p99 }, false),
        ], shade: nil)
        body += chart(id: "errors", title: "Failed and dropped", unit: "per second", x: ts, lines: [
            ("failed", "#d62728", series.map { rate($0.failed, $0) }, false),
            ("dropped", "#9467bd", series.map { rate($0.dropped, $0) }, false),
        ], shade: nil)
        body += chart(id: "workers", title: "Active workers", unit: "workers", x: ts, lines: [
            ("workers", "#17becf", series.map { Double($0.workers) }, false),
        ], shade: nil)
        if !s.thresholds.isEmpty {
            body += "<h2>Thresholds</h2>\n" + table(["", "threshold", "value"], s.thresholds.map { [$0.ok ? "✓" : "✗", $0.threshold, $0.shown] },
                                                 rowClass: s.thresholds.map { $0.ok ? "ok" : "bad" })
        }
        if !s.steps.isEmpty {
            body += "<h2>Steps</h2>\n" + table(["step", "count", "failed", "p50", "p95", "p99", "max", "errors"], s.steps.sorted { $0.key < $1.key }.map { name, st in
                [name, String(st.count), String(st.failed), ms(st.latency_ms.p50), ms(st.latency_ms.p95), ms(st.latency_ms.p99), ms(st.latency_ms.max),
                 st.errors.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")]
            })
        }
        if !s.checks.isEmpty {
            body += "<h2>Checks</h2>\n" + table(["check", "pass", "fail"], s.checks.sorted { $0.key < $1.key }.map { [$0.key, String($0.value.pass), String($0.value.fail)] },
                                             rowClass: s.checks.sorted { $0.key < $1.key }.map { $0.value.fail == 0 ? "ok" : "bad" })
        }
        if !s.counters.isEmpty || !s.trends.isEmpty {
            body += "<h2>Scenario metrics</h2>\n" + table(["metric", "count", "p50", "p95", "p99", "max"],
                s.counters.sorted { $0.key < $1.key }.map { [$0.key, String($0.value), "", "", "", ""] }
                + s.trends.sorted { $0.key < $1.key }.map { [$0.key, String($0.value.count), ms($0.value.latency_ms.p50), ms($0.value.latency_ms.p95), ms($0.value.latency_ms.p99), ms($0.value.latency_ms.max)] })
        }
        if !slowest.isEmpty {
            body += "<h2>Slowest iterations</h2>\n<p class=meta>Look a trace id up in Jaeger or Tempo: every request of the iteration is a span of that trace.</p>\n"
                + table(["latency", "trace id", "worker", "VU", "iteration"], slowest.map { [ms($0.latency_ms), $0.trace_id, $0.worker, String($0.vu), String($0.iteration)] })
        }
        if !s.errors.isEmpty {
            body += "<h2>Errors</h2>\n" + table(["class", "count"], s.errors.sorted { $0.key < $1.key }.map { [$0.key, String($0.value)] })
        }
        if !events.isEmpty {
            body += "<h2>Events</h2>\n" + table(["t", "type", "details"], events.map { e in
                [String(format: "%+.3fs", e.t), e.type, e.fields.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")]
            })
        }
        return """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><title>J4 report: \(esc(s.name)) \(esc(s.run))</title>
            <style>
            body{font:14px/1.4 system-ui,sans-serif;margin:24px auto;max-width:980px;color:#222}
            h1 small{color:#888;font-weight:normal;font-size:60%} .meta{color:#555}
            table{border-collapse:collapse;margin:8px 0 20px} td,th{border-bottom:1px solid #ddd;padding:3px 10px;text-align:right}
            td:first-child,th:first-child{text-align:left} .ok{color:#1a7f37} .bad{color:#c62828;font-weight:bold}
            svg{display:block;margin:4px 0 18px;background:#fcfcfc;border:1px solid #eee} .chart h2{margin-bottom:0}
            </style></head><body>
            \(body)
            <p class=meta>Generated by j4 report. Each chart marks the run's events with grey lines (hover for details); shaded seconds had failures or drops.</p>
            </body></html>

            """
    }

    func esc(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
            .replacingOccurrences(of: "\"", with: "&quot;")
    }

    func ms(_ v: Double?) -> String { v.map { String(format: "%.2fms", $0) } ?? "-" }

    func table(_ header: [String], _ rows: [[String]], rowClass: [String]? = nil) -> String {
        var out = "<table><tr>" + header.map { "<th>\(esc($0))</th>" }.joined() + "</tr>\n"
        for (i, r) in rows.enumerated() {
            let cls = rowClass.map { " class=\($0[i])" } ?? ""
            out += "<tr\(cls)>" + r.map { "<td>\(esc($0))</td>" }.joined() + "</tr>\n"
        }
        return out + "</table>\n"
    }

    /// A line chart in SVG: one polyline per series (gaps where a value is missing), y from 0.
    func chart(id: String, title: String, unit: String, x: [Double], lines: [(String, String, [Double?], Bool)], shade: [Bool]?) -> String {
        let w = 940.0, h = 220.0, left = 56.0, right = 12.0, top = 12.0, bottom = 28.0
        let xMax = max(1, x.last ?? 1)
        let yMax = max(1, lines.flatMap { $0.2.compactMap { $0 } }.max() ?? 1) * 1.1
        func px(_ v: Double) -> Double { left + (w - left - right) * v / xMax }
        func py(_ v: Double) -> Double { h - bottom - (h - top - bottom) * v / yMax }
        var svg = "<section class=chart id=\"chart-\(id)\"><h2>\(esc(title))</h2>\n"
        svg += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\" viewBox=\"0 0 \(Int(w)) \(Int(h))\" role=\"img\" aria-label=\"\(esc(title))\">\n"
        if let shade {
            let step = (w - left - right) / max(1, xMax)
            for (i, on) in shade.enumerated() where on && i < x.count {
                svg += "<rect class=\"shade\" x=\"\(f(px(x[i]) - step / 2))\" y=\"\(f(top))\" width=\"\(f(step))\" height=\"\(f(h - top - bottom))\" fill=\"#fdecea\"/>\n"
            }
        }
        let yStep = niceStep(yMax / 1.1 / 4)
        for v in stride(from: 0.0, through: yMax, by: yStep) {
            svg += "<line x1=\"\(f(left))\" x2=\"\(f(w - right))\" y1=\"\(f(py(v)))\" y2=\"\(f(py(v)))\" stroke=\"#eee\"/>"
            svg += "<text x=\"\(f(left - 6))\" y=\"\(f(py(v) + 4))\" font-size=\"11\" text-anchor=\"end\" fill=\"#666\">\(label(v))</text>\n"
        }
        for v in stride(from: 0.0, through: xMax, by: max(1, niceStep(xMax / 6))) {
            svg += "<text x=\"\(f(px(v)))\" y=\"\(f(h - 8))\" font-size=\"11\" text-anchor=\"middle\" fill=\"#666\">\(label(v))s</text>\n"
        }
        for e in events where e.t >= 0 && e.t <= xMax {
            let detail = e.fields.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            svg += "<line class=\"event\" x1=\"\(f(px(e.t)))\" x2=\"\(f(px(e.t)))\" y1=\"\(f(top))\" y2=\"\(f(h - bottom))\" stroke=\"#999\" stroke-dasharray=\"2,3\"><title>\(esc(String(format: "%.3fs ", e.t) + e.type + " " + detail))</title></line>\n"
        }
        for (name, color, values, dashed) in lines {
            var segments: [[String]] = [[]]
            for (i, v) in values.enumerated() where i < x.count {
                if let v { segments[segments.count - 1].append("\(f(px(x[i]))),\(f(py(v)))") } else if !segments[segments.count - 1].isEmpty { segments.append([]) }
            }
            for seg in segments where !seg.isEmpty {
                svg += "<polyline class=\"series\" data-series=\"\(esc(name))\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.8\"\(dashed ? " stroke-dasharray=\"6,4\"" : "") points=\"\(seg.joined(separator: " "))\"/>\n"
            }
        }
        var lx = left + 8
        for (name, color, _, _) in lines {
            svg += "<rect x=\"\(f(lx))\" y=\"\(f(top + 2))\" width=\"10\" height=\"10\" fill=\"\(color)\"/><text x=\"\(f(lx + 14))\" y=\"\(f(top + 11))\" font-size=\"11\">\(esc(name))</text>\n"
            lx += 20 + Double(name.count) * 7
        }
        svg += "<text x=\"\(f(w - right))\" y=\"\(f(top + 11))\" font-size=\"11\" text-anchor=\"end\" fill=\"#666\">\(esc(unit))</text>\n"
        return svg + "</svg></section>\n"
    }

    func f(_ v: Double) -> String { String(format: "%.1f", v) }

    /// 1, 2 or 5 times a power of ten, at least `raw`.
    func niceStep(_ raw: Double) -> Double {
        guard raw > 0 else { return 1 }
        let power = pow(10, (log10(raw)).rounded(.down))
        for m in [1.0, 2, 5, 10] where m * power >= raw { return m * power }
        return 10 * power
    }

    func label(_ v: Double) -> String {
        if v >= 10_000 { return String(format: "%.0fk", v / 1000) }
        return v == v.rounded() ? String(format: "%.0f", v) : String(format: "%.1f", v)
    }
}
