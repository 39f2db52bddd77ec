import Foundation

/// Where and how to reach Redis: `redis://[user:password@]host:port[/db]`,
/// `unix:///path[?db=N]`, or `redis-sentinel://[user:password@]host:port[,host:port…]/MASTER[/db]`
/// (the primary of MASTER, as the Sentinels at those addresses know it), or
/// `redis-cluster://[user:password@]host:port[,host:port…]` (a Redis Cluster, any of its nodes).
public struct RedisEndpoint: Sendable, Equatable, CustomStringConvertible {
    /// TCP host and port, a unix socket path, or Sentinels and the name of the primary they watch.
    public enum Address: Sendable, Equatable {
        case tcp(host: String, port: Int)
        case unix(path: String)
        case sentinel(nodes: [HostPort], master: String)
        /// Redis Cluster: some of its nodes, to learn the slot map from.
        case cluster(nodes: [HostPort])
    }

    /// A host and a port.
    public struct HostPort: Sendable, Equatable, CustomStringConvertible {
        public var host: String
        public var port: Int
        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }
        public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }

    /// Where the server listens.
    public var address: Address
    /// ACL user for AUTH, if any.
    public var user: String?
    /// Password for AUTH, if any. Never printed: see ``description``.
    public var password: String?
    /// Database number for SELECT.
    public var database: Int
    /// AUTH for the Sentinels themselves (`J4_SENTINEL_USER`, `J4_SENTINEL_PASSWORD`), if they need one.
    public var sentinelUser: String?
    public var sentinelPassword: String?

    /// The URL J4 uses when neither `--redis` nor `J4_REDIS_URL` is given.
    public static let defaultURL = "redis://127.0.0.1:6379"

    /// Reads a URL; the error says what is wrong with it in words a person can act on.
    public init(url: String) throws(RedisError) {
        func bad(_ why: String) -> RedisError {
            .invalidURL("\(RedisEndpoint.redact(url)): \(why); expected redis://[user:password@]host:port[/db], unix:///path/to/redis.sock or redis-sentinel://host:port[,host:port]/MASTER")
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
        let sentinel = url.hasPrefix("redis-sentinel://"), cluster = url.hasPrefix("redis-cluster://")
        guard url.hasPrefix("redis://") || sentinel || cluster else { throw bad("the scheme must be redis://, unix://, redis-sentinel:// or redis-cluster://") }
        var rest = Substring(url.dropFirst(sentinel ? "redis-sentinel://".count : cluster ? "redis-cluster://".count : "redis://".count))
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
        var master: String?
        if let slash = rest.firstIndex(of: "/") {
            var dbText = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
            if sentinel {
                let parts = dbText.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
                guard let name = parts.first, !name.isEmpty else { throw bad("a Sentinel URL names its primary: redis-sentinel://host:port/MASTER") }
                master = String(name)
                dbText = parts.count > 1 ? parts[1] : ""
            }
            if !dbText.isEmpty {
                guard let n = Int(dbText), n >= 0 else { throw bad("the database must be a number") }
                db = n
            }
        }
        if cluster {
            guard db == 0 else { throw bad("Redis Cluster has only database 0") }
            var nodes: [HostPort] = []
            for item in rest.split(separator: ",") {
                let (host, port) = try RedisEndpoint.hostPort(String(item), defaultPort: 6379, bad)
                nodes.append(HostPort(host: host, port: port))
            }
            guard !nodes.isEmpty else { throw bad("at least one cluster node host:port is needed") }
            self.init(address: .cluster(nodes: nodes), user: user, password: password, database: 0)
            return
        }
        if sentinel {
            guard let master else { throw bad("a Sentinel URL names its primary: redis-sentinel://host:port/MASTER") }
            var nodes: [HostPort] = []
            for item in rest.split(separator: ",") {
                let (host, port) = try RedisEndpoint.hostPort(String(item), defaultPort: 26379, bad)
                nodes.append(HostPort(host: host, port: port))
            }
            guard !nodes.isEmpty else { throw bad("at least one Sentinel host:port is needed") }
            self.init(address: .sentinel(nodes: nodes, master: master), user: user, password: password, database: db)
            return
        }
        let (host, port) = try RedisEndpoint.hostPort(String(rest), defaultPort: 6379, bad)
        self.init(address: .tcp(host: host, port: port), user: user, password: password, database: db)
    }

    /// `host`, `host:port` or `[v6]:port`.
    static func hostPort(_ text: String, defaultPort: Int, _ bad: (String) -> RedisError) throws(RedisError) -> (String, Int) {
        var host = text, port = defaultPort
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
        return (host, port)
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
        if endpoint.password == nil, let pw = try secret(env, "J4_REDIS_PASSWORD") {
            endpoint.password = pw
            if endpoint.user == nil, let user = env["J4_REDIS_USER"], !user.isEmpty { endpoint.user = user }
        }
        if let pw = try secret(env, "J4_SENTINEL_PASSWORD") {
            endpoint.sentinelPassword = pw
            endpoint.sentinelUser = env["J4_SENTINEL_USER"].flatMap { $0.isEmpty ? nil : $0 }
        }
        return endpoint
    }

    /// A secret from `$NAME`, or from the file `$NAME_FILE` names (a mounted Kubernetes
    /// secret; one trailing line break is dropped). The error names the variable and the
    /// path, never the contents.
    static func secret(_ env: [String: String], _ name: String) throws(RedisError) -> String? {
        if let value = env[name], !value.isEmpty { return value }
        guard let path = env[name + "_FILE"], !path.isEmpty else { return nil }
        guard let data = FileManager.default.contents(atPath: path), var text = String(data: data, encoding: .utf8) else {
            throw .invalidURL("\(name)_FILE=\(path) cannot be read; it must name a readable file holding the password")
        }
        if text.hasSuffix("\r\n") { text.removeLast(2) } else if text.hasSuffix("\n") { text.removeLast() }
        guard !text.isEmpty else { throw .invalidURL("\(name)_FILE=\(path) is empty; it must hold the password") }
        return text
    }

    /// The URL with any password replaced by `***`: the only form J4 ever prints.
    public var description: String {
        switch address {
        case .unix(let path): return "unix://\(path)" + (database != 0 ? "?db=\(database)" : "")
        case .tcp(let host, let port):
            return "redis://\(credentials)\(HostPort(host: host, port: port))" + (database != 0 ? "/\(database)" : "")
        case .sentinel(let nodes, let master):
            return "redis-sentinel://\(credentials)\(nodes.map(\.description).joined(separator: ","))/\(master)" + (database != 0 ? "/\(database)" : "")
        case .cluster(let nodes):
            return "redis-cluster://\(credentials)\(nodes.map(\.description).joined(separator: ","))"
        }
    }

    private var credentials: String {
        password == nil ? (user.map { "\($0)@" } ?? "") : "\(user ?? ""):***@"
    }

    /// A URL text with its password hidden, even when the text does not parse.
    public static func redact(_ url: String) -> String {
        guard let scheme = url.range(of: "://"), let at = url.lastIndex(of: "@"), at > scheme.upperBound else { return url }
        let cred = url[scheme.upperBound..<at]
        guard let colon = cred.firstIndex(of: ":") else { return url[..<scheme.upperBound] + "***" + url[at...] }
        return url[..<scheme.upperBound] + cred[..<colon] + ":***" + url[at...]
    }
}
