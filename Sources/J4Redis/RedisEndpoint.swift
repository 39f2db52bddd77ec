import Foundation

/// Where and how to reach Redis: `redis://[user:password@]host:port[/db]` or `unix:///path[?db=N]`.
public struct RedisEndpoint: Sendable, Equatable, CustomStringConvertible {
    /// TCP host and port, or a unix socket path.
    public enum Address: Sendable, Equatable {
        case tcp(host: String, port: Int)
        case unix(path: String)
    }

    /// Where the server listens.
    public var address: Address
    /// ACL user for AUTH, if any.
    public var user: String?
    /// Password for AUTH, if any. Never printed: see ``description``.
    public var password: String?
    /// Database number for SELECT.
    public var database: Int

    /// The URL J4 uses when neither `--redis` nor `J4_REDIS_URL` is given.
    public static let defaultURL = "redis://127.0.0.1:6379"

    /// Reads a URL; the error says what is wrong with it in words a person can act on.
    public init(url: String) throws(RedisError) {
        func bad(_ why: String) -> RedisError {
            .invalidURL("\(RedisEndpoint.redact(url)): \(why); expected redis://[user:password@]host:port[/db] or unix:///path/to/redis.sock")
        }
        if url.hasPrefix("unix://") {
            var rest = String(url.dropFirst("unix://".count))
            var db = 0
            if let q = rest.firstIndex(of: "?") {
                let query = rest[rest.index(after: q)...]
                rest = String(rest[..<q])
                guard query.hasPrefix("db="), let n = Int(query.dropFirst(3)), n >= 0 else { throw bad("the only query parameter is db=N") }
                db = n
            }
            guard rest.hasPrefix("/") else { throw bad("a unix socket path must be absolute") }
            self.init(address: .unix(path: rest), user: nil, password: nil, database: db)
            return
        }
        guard url.hasPrefix("redis://") else { throw bad("the scheme must be redis:// or unix://") }
        var rest = Substring(url.dropFirst("redis://".count))
        var user: String?, password: String?
        if let at = rest.lastIndex(of: "@") {
            let cred = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = cred.firstIndex(of: ":") {
                let u = String(cred[..<colon]).removingPercentEncoding ?? String(cred[..<colon])
                user = u.isEmpty ? nil : u
                password = String(cred[cred.index(after: colon)...]).removingPercentEncoding
            } else {
                password = String(cred).removingPercentEncoding
            }
        }
        var db = 0
        if let slash = rest.firstIndex(of: "/") {
            let dbText = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
            if !dbText.isEmpty {
                guard let n = Int(dbText), n >= 0 else { throw bad("the database must be a number") }
                db = n
            }
        }
        var host = String(rest), port = 6379
        if host.hasPrefix("[") {  // [::1]:6379
            guard let close = host.firstIndex(of: "]") else { throw bad("unclosed [ in the host") }
            let after = host[host.index(after: close)...]
            let inner = String(host[host.index(after: host.startIndex)..<close])
            if after.hasPrefix(":") {
                guard let p = Int(after.dropFirst()), (1...65535).contains(p) else { throw bad("the port must be 1 to 65535") }
                port = p
            }
            host = inner
        } else if let colon = host.lastIndex(of: ":") {
            guard let p = Int(host[host.index(after: colon)...]), (1...65535).contains(p) else { throw bad("the port must be 1 to 65535") }
            port = p
            host = String(host[..<colon])
        }
        guard !host.isEmpty else { throw bad("the host is missing") }
        self.init(address: .tcp(host: host, port: port), user: user, password: password, database: db)
    }

    /// An endpoint from its parts.
    public init(address: Address, user: String? = nil, password: String? = nil, database: Int = 0) {
        self.address = address
        self.user = user
        self.password = password
        self.database = database
    }

    /// The endpoint from `J4_REDIS_URL`, or the default; a user from `J4_REDIS_USER` and a
    /// password from `J4_REDIS_PASSWORD` fill in a URL without them (Kubernetes secrets as
    /// environment variables, never in the URL).
    public static func fromEnvironment(_ url: String? = nil) throws(RedisError) -> RedisEndpoint {
        let env = ProcessInfo.processInfo.environment
        var endpoint = try RedisEndpoint(url: url ?? env["J4_REDIS_URL"] ?? defaultURL)
        if endpoint.password == nil, let pw = env["J4_REDIS_PASSWORD"], !pw.isEmpty {
            endpoint.password = pw
            if endpoint.user == nil, let user = env["J4_REDIS_USER"], !user.isEmpty { endpoint.user = user }
        }
        return endpoint
    }

    /// The URL with any password replaced by `***`: the only form J4 ever prints.
    public var description: String {
        switch address {
        case .unix(let path): return "unix://\(path)" + (database != 0 ? "?db=\(database)" : "")
        case .tcp(let host, let port):
            let cred = password == nil ? (user.map { "\($0)@" } ?? "") : "\(user ?? ""):***@"
            let h = host.contains(":") ? "[\(host)]" : host
            return "redis://\(cred)\(h):\(port)" + (database != 0 ? "/\(database)" : "")
        }
    }

    /// A URL text with its password hidden, even when the text does not parse.
    public static func redact(_ url: String) -> String {
        guard let scheme = url.range(of: "://"), let at = url.lastIndex(of: "@"), at > scheme.upperBound else { return url }
        let cred = url[scheme.upperBound..<at]
        guard let colon = cred.firstIndex(of: ":") else { return url[..<scheme.upperBound] + "***" + url[at...] }
        return url[..<scheme.upperBound] + cred[..<colon] + ":***" + url[at...]
    }
}
