/// A reply from Redis, copied out of hiredis' reply object into Swift values.
public enum RedisValue: Sendable, Equatable, CustomStringConvertible {
    /// A bulk string (binary-safe bytes).
    case bulk([UInt8])
    /// A status reply such as `OK`.
    case status(String)
    /// An integer reply.
    case integer(Int64)
    /// A nil reply (missing key or field).
    case null
    /// An array reply.
    case array([RedisValue])
    /// An error reply inside a pipeline or an array; single commands throw ``RedisError/server(code:message:)``.
    case error(String)

    /// The reply as text: bulk strings as UTF-8, status, integers in decimal.
    public var string: String? {
        switch self {
        case .bulk(let b): return String(decoding: b, as: UTF8.self)
        case .status(let s): return s
        case .integer(let i): return String(i)
        default: return nil
        }
    }

    /// The reply as an integer: integer replies and decimal strings.
    public var int: Int64? {
        switch self {
        case .integer(let i): return i
        case .bulk, .status: return string.flatMap { Int64($0) }
        default: return nil
        }
    }

    /// The elements of an array reply (empty for nil).
    public var array: [RedisValue]? {
        switch self {
        case .array(let a): return a
        case .null: return []
        default: return nil
        }
    }

    /// A flat array of field/value pairs (HGETALL) as a dictionary.
    public var hash: [String: String]? {
        guard let a = array else { return nil }
        var out: [String: String] = [:]
        var i = 0
        while i + 1 < a.count {
            if let k = a[i].string, let v = a[i + 1].string { out[k] = v }
            i += 2
        }
        return out
    }

    /// A `TIME` reply (seconds, microseconds) in milliseconds; nil for another shape.
    public var timeMs: Int64? {
        guard let a = array, a.count == 2, let s = a[0].int, let us = a[1].int else { return nil }
        return s * 1000 + us / 1000
    }

    /// The entries of an `XRANGE` or `XREVRANGE` reply: each id with its fields.
    public var streamEntries: [(id: String, fields: [String: String])] {
        (array ?? []).compactMap { entry in
            guard let parts = entry.array, parts.count == 2, let id = parts[0].string, let fields = parts[1].hash else { return nil }
            return (id, fields)
        }
    }

    public var description: String {
        switch self {
        case .bulk: return "\"\(string ?? "")\""
        case .status(let s): return s
        case .integer(let i): return "(integer) \(i)"
        case .null: return "(nil)"
        case .array(let a): return "[" + a.map(\.description).joined(separator: ", ") + "]"
        case .error(let e): return "(error) \(e)"
        }
    }
}

/// What can go wrong talking to Redis.
public enum RedisError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The URL cannot be used.
    case invalidURL(String)
    /// Connecting, reading or writing failed; the connection is closed and will be reopened.
    case connection(String)
    /// A recent connection failure: the next attempt waits for the backoff to pass.
    case backingOff(String)
    /// The server answered with an error; `code` is its first word (`NOSCRIPT`, `READONLY`, `J4_CONFLICT`…).
    case server(code: String, message: String)
    /// A reply did not have the shape its caller expected.
    case unexpectedReply(String)

    /// A server error reply as a typed error.
    public static func fromReply(_ text: String) -> RedisError {
        let code = text.prefix { $0 != " " }
        return .server(code: String(code), message: text)
    }

    /// True for errors that mean "Redis could not be reached", as opposed to a refusal.
    public var isUnreachable: Bool {
        switch self {
        case .connection, .backingOff: return true
        case .server(let code, _): return code == "LOADING" || code == "READONLY" || code == "MASTERDOWN"
        default: return false
        }
    }

    public var description: String {
        switch self {
        case .invalidURL(let s): return "invalid Redis URL \(s)"
        case .connection(let s): return "Redis connection failed: \(s)"
        case .backingOff(let s): return "Redis unreachable (retrying with backoff): \(s)"
        case .server(_, let m): return "Redis error: \(m)"
        case .unexpectedReply(let s): return "unexpected Redis reply: \(s)"
        }
    }
}
