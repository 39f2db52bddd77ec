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
        self.field = field
        self.value = value
        self.expected = expected
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
