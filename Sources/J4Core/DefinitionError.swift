/// One problem in a run definition: where it is, what was typed, and what is accepted.
public struct DefinitionProblem: Sendable, Equatable, CustomStringConvertible {
    /// The field path as the user typed it, such as `stages[1].duration`.
    public var field: String
    /// The offending value as text, or nil when the field is missing.
    public var value: String?
    /// What would be accepted.
    public var expected: String

    /// A problem at `field` with `value` (nil when missing) and what is accepted.
    public init(field: String, value: String?, expected: String) {
        // A path of many long keys stays readable: cut at 200 characters.
        self.field = field.count > 200 ? String(field.prefix(197)) + "..." : field
        self.value = value
        self.expected = expected
    }

    /// A key the user typed, as a part of a field path: as it is when it is a plain word,
    /// else quoted (an empty key, spaces, control characters), and cut at 60 characters.
    public static func key(_ k: String) -> String {
        let plain = !k.isEmpty && k.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || "_-.".unicodeScalars.contains($0) }
        let cut = k.count > 60 ? String(k.prefix(57)) + "..." : k
        return plain ? cut : JSONValue.string(cut).canonicalJSON
    }

    public var description: String {
        if let value { return "\(field): \(value) is not accepted; \(expected)" }
        return "\(field): missing; \(expected)"
    }
}

/// Every problem found in a run definition; nothing is written while there is one.
public struct DefinitionError: Error, Sendable, CustomStringConvertible {
    /// All problems, in the order of the fields.
    public var problems: [DefinitionProblem]

    /// An error listing `problems`.
    public init(problems: [DefinitionProblem]) { self.problems = problems }

    public var description: String {
        "invalid run definition (\(problems.count) problem\(problems.count == 1 ? "" : "s")):\n"
            + problems.map { "  - \($0)" }.joined(separator: "\n")
    }
}
