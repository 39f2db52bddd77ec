/// Run ids: sortable by submit time and safe in Redis keys, such as `20261125-211503-7f3a`.
public enum RunID {
    /// A new id for a run submitted at `unixSeconds`.
    public static func make(unixSeconds: Int64, random: UInt16) -> String {
        let (days, secs) = (unixSeconds / 86_400, unixSeconds % 86_400)
        let (y, m, d) = civil(fromDays: days)
        func two(_ v: Int64) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let hex = String(random, radix: 16)
        return "\(y)\(two(m))\(two(d))-\(two(secs / 3600))\(two(secs / 60 % 60))\(two(secs % 60))-"
            + String(repeating: "0", count: 4 - hex.count) + hex
    }

    /// True when `text` has the shape of a run id (what may stand inside a key's hash tag).
    public static func isValid(_ text: String) -> Bool {
        (1...64).contains(text.count) && text.unicodeScalars.allSatisfy {
            ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" || $0 == "_"
        }
    }

    /// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    static func civil(fromDays z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }
}
