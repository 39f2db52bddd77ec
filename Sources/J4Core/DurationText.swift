/// Durations as people type them in run definitions: `250ms`, `1s`, `1.5s`, `5m`, `1h30m`.
public enum DurationText {
    /// Milliseconds for a text such as `1m30s`, or nil when it is not a duration.
    public static func milliseconds(_ text: String) -> Int64? {
        let units: [(String, Double)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000)]
        var rest = Substring(text.trimmingCharacters(in: " "))
        guard !rest.isEmpty else { return nil }
        var total = 0.0
        while !rest.isEmpty {
            let number = rest.prefix { $0.isNumber || $0 == "." }
            guard !number.isEmpty, let value = Double(number) else { return nil }
            rest = rest.dropFirst(number.count)
            guard let (unit, scale) = units.first(where: { rest.hasPrefix($0.0) }) else { return nil }
            rest = rest.dropFirst(unit.count)
            total += value * scale
        }
        guard total.isFinite, total < 1e15 else { return nil }
        let ms = total.rounded()
        guard abs(ms - total) < 1e-6 else { return nil }  // finer than a millisecond
        return Int64(ms)
    }

    /// The shortest text that `milliseconds(_:)` reads back as `ms`: `90000` → `1m30s`.
    public static func format(_ ms: Int64) -> String {
        if ms == 0 { return "0s" }
        var rest = ms, out = ""
        for (unit, scale) in [("h", Int64(3_600_000)), ("m", 60_000), ("s", 1000)] where rest >= scale {
            out += "\(rest / scale)\(unit)"
            rest %= scale
        }
        if rest > 0 { out += "\(rest)ms" }
        return out
    }
}

extension String {
    func trimmingCharacters(in set: Character) -> String {
        var s = Substring(self)
        while s.first == set { s = s.dropFirst() }
        while s.last == set { s = s.dropLast() }
        return String(s)
    }
}
