import Foundation

/// Reads the items of a data pool file: CSV with a header row (each row becomes an object
/// of header → text), or JSON lines (each non-empty line one JSON value).
public enum PoolFile {
    /// The two formats.
    public enum Format: String, Sendable, CaseIterable {
        case csv
        case jsonl
    }

    /// What is wrong with a pool file: where, and what was expected.
    public struct Problem: Error, Equatable, CustomStringConvertible {
        /// 1-based line of the problem (0: the whole file).
        public var line: Int
        /// What was found and what is accepted.
        public var message: String
        public var description: String { line > 0 ? "line \(line): \(message)" : message }
    }

    /// Most items a pool may have.
    public static let maxItems = 1_000_000
    /// Longest item, in bytes of JSON.
    public static let maxItemBytes = 65_536

    /// The format from a file name: `.csv`, or `.jsonl` / `.ndjson` / `.json`.
    public static func format(ofPath path: String) -> Format? {
        let lower = path.lowercased()
        if lower.hasSuffix(".csv") { return .csv }
        if lower.hasSuffix(".jsonl") || lower.hasSuffix(".ndjson") || lower.hasSuffix(".json") { return .jsonl }
        return nil
    }

    /// The items of `text` in `format`, each as canonical JSON.
    public static func items(_ text: String, format: Format) throws(Problem) -> [String] {
        let items: [String]
        switch format {
        case .csv: items = try csvItems(text)
        case .jsonl: items = try jsonLines(text)
        }
        guard !items.isEmpty else { throw Problem(line: 0, message: "no items: a pool needs at least one") }
        guard items.count <= maxItems else { throw Problem(line: 0, message: "\(items.count) items; at most \(maxItems) are accepted") }
        return items
    }

    static func jsonLines(_ text: String) throws(Problem) -> [String] {
        var out: [String] = []
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty { continue }
            guard let value = try? JSONValue.parse(line) else {
                throw Problem(line: i + 1, message: "not a JSON value: \(line.prefix(60))")
            }
            let json = value.canonicalJSON
            guard json.utf8.count <= maxItemBytes else { throw Problem(line: i + 1, message: "item of \(json.utf8.count) bytes; at most \(maxItemBytes)") }
            out.append(json)
        }
        return out
    }

    static func csvItems(_ text: String) throws(Problem) -> [String] {
        let rows = try csvRows(text)
        guard let header = rows.first?.fields else { return [] }
        guard !header.isEmpty, header.allSatisfy({ !$0.isEmpty }) else {
            throw Problem(line: 1, message: "the header row needs a non-empty name for every column")
        }
        if Set(header).count != header.count { throw Problem(line: 1, message: "the header row names a column twice") }
        var out: [String] = []
        for row in rows.dropFirst() {
            if row.fields == [""] { continue }  // a blank line
            guard row.fields.count == header.count else {
                throw Problem(line: row.line, message: "\(row.fields.count) fields; the header has \(header.count)")
            }
            let json = JSONValue.object(Dictionary(uniqueKeysWithValues: zip(header, row.fields.map(JSONValue.string)))).canonicalJSON
            guard json.utf8.count <= maxItemBytes else { throw Problem(line: row.line, message: "item of \(json.utf8.count) bytes; at most \(maxItemBytes)") }
            out.append(json)
        }
        return out
    }

    /// RFC 4180 rows: fields separated by commas, optionally in double quotes (which may hold
    /// commas, line breaks and `""` for a quote); CRLF or LF line ends.
    static func csvRows(_ text: String) throws(Problem) -> [(line: Int, fields: [String])] {
        var rows: [(line: Int, fields: [String])] = []
        var fields: [String] = []
        var field = ""
        var quoted = false, wasQuoted = false
        var line = 1, rowLine = 1
        var chars = Array(text.unicodeScalars)[...]
        while let c = chars.popFirst() {
            if quoted {
                if c == "\"" {
                    if chars.first == "\"" { chars.removeFirst(); field.unicodeScalars.append("\"") } else { quoted = false }
                } else {
                    if c == "\n" { line += 1 }
                    field.unicodeScalars.append(c)
                }
                continue
            }
            switch c {
            case "\"":
                guard field.isEmpty, !wasQuoted else { throw Problem(line: line, message: "a quote inside an unquoted field; quote the whole field and write \"\" for a quote") }
                quoted = true
                wasQuoted = true
            case ",":
                fields.append(field)
                field = ""
                wasQuoted = false
            case "\r":
                if chars.first != "\n" { field.unicodeScalars.append(c) }
            case "\n":
                fields.append(field)
                rows.append((rowLine, fields))
                fields = []
                field = ""
                wasQuoted = false
                line += 1
                rowLine = line
            default:
                guard !wasQuoted else { throw Problem(line: line, message: "text after a closing quote") }
                field.unicodeScalars.append(c)
            }
        }
        if quoted { throw Problem(line: rowLine, message: "a quoted field is not closed") }
        if !field.isEmpty || !fields.isEmpty || wasQuoted {
            fields.append(field)
            rows.append((rowLine, fields))
        }
        return rows
    }
}

extension JSONValue {
    /// Parses one JSON text.
    public static func parse(_ text: String) throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
    }
}
