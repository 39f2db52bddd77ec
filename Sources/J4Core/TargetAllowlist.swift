import Foundation

/// Where a worker may send load: host names, IP addresses and networks, each with or without
/// a port. A worker given no allowlist sends load wherever a run says.
///
/// Rules, as `--allow-target` and `J4_ALLOW_TARGETS` take them (comma-separated):
///
/// | rule | allows |
/// |---|---|
/// | `api.example.com` | that host name, any port |
/// | `*.example.com` | every name under `example.com` (not `example.com` itself) |
/// | `10.0.0.7`, `::1` | that address |
/// | `10.0.0.0/8`, `fd00::/8` | every address in the network |
/// | `api.example.com:443`, `10.0.0.0/8:8080`, `[::1]:8080` | the same, that port only |
///
/// A target named by host name is allowed when a name rule matches it, or else when every
/// address the name resolves to is allowed (``TargetAllowlist/decision(host:port:)`` says
/// which of the two it needs).
public struct TargetAllowlist: Sendable, Hashable, CustomStringConvertible {
    /// One rule.
    public struct Rule: Sendable, Hashable, CustomStringConvertible {
        enum Host: Sendable, Hashable {
            /// Lowercased, without a trailing dot; `*.suffix` for a wildcard.
            case name(String)
            case network(IPNetwork)
        }
        let host: Host
        let port: Int?
        /// The rule as given.
        public let description: String
    }

    /// An IPv4 or IPv6 network: an address and a prefix length.
    public struct IPNetwork: Sendable, Hashable {
        /// 4 or 16 bytes.
        let bytes: [UInt8]
        let prefix: Int

        /// Whether `address` (4 or 16 bytes) is in this network. An IPv4-mapped IPv6 address
        /// (`::ffff:a.b.c.d`) is compared as the IPv4 address it maps.
        public func contains(_ address: [UInt8]) -> Bool {
            var address = address
            if address.count == 16, bytes.count == 4, address[0..<10].allSatisfy({ $0 == 0 }), address[10] == 0xff, address[11] == 0xff {
                address = Array(address[12...])
            }
            guard address.count == bytes.count else { return false }
            var bits = prefix
            for i in 0..<bytes.count where bits > 0 {
                let mask: UInt8 = bits >= 8 ? 0xff : ~(0xff >> UInt8(bits))
                if address[i] & mask != bytes[i] & mask { return false }
                bits -= 8
            }
            return true
        }
    }

    /// What a target needs to be decided.
    public enum Decision: Sendable, Equatable {
        case allowed
        case refused
        /// A host name no name rule allows, while address rules exist: allowed if every
        /// address it resolves to is (``allows(address:port:)``).
        case resolve
    }

    /// The rules.
    public let rules: [Rule]

    /// The rules as given.
    public var description: String { rules.map(\.description).joined(separator: ",") }

    /// Parses rules; each text may hold several, comma-separated. Throws for the first rule
    /// that is not one (naming it and what is accepted). At least one rule is required.
    public init(parsing texts: [String]) throws(ParseError) {
        var rules: [Rule] = []
        for text in texts {
            for part in text.split(separator: ",") {
                let rule = part.trimmingCharacters(in: .whitespaces)
                if rule.isEmpty { continue }
                rules.append(try Self.parseRule(rule))
            }
        }
        guard !rules.isEmpty else { throw ParseError(rule: texts.joined(separator: ",")) }
        self.rules = rules
    }

    /// A rule that is not one.
    public struct ParseError: Error, Sendable, CustomStringConvertible {
        /// The rule as given.
        public var rule: String
        public var description: String { "--allow-target: \"\(rule)\" is not accepted; give \(TargetAllowlist.accepted)" }
    }

    static let accepted = "host names (api.example.com, *.example.com), IP addresses or CIDR networks (10.0.0.7, 10.0.0.0/8, ::1, fd00::/8), each optionally with :PORT ([::1]:8080 for IPv6), comma-separated"

    static func parseRule(_ text: String) throws(ParseError) -> Rule {
        func bad() -> ParseError { ParseError(rule: text) }
        var hostText = Substring(text)
        var portText: Substring?
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw bad() }
            hostText = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":") else { throw bad() }
                portText = rest.dropFirst()
            }
        } else if text.filter({ $0 == ":" }).count == 1, let colon = text.firstIndex(of: ":") {
            hostText = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        var port: Int?
        if let portText {
            guard let p = Int(portText), (1...65535).contains(p) else { throw bad() }
            port = p
        }
        if let network = parseNetwork(String(hostText)) {
            return Rule(host: .network(network), port: port, description: text)
        }
        var name = hostText.lowercased()
        if name.hasSuffix(".") { name.removeLast() }
        let labels = name.hasPrefix("*.") ? name.dropFirst(2) : Substring(name)
        let labelOK = { (label: Substring) in
            !label.isEmpty && label.count <= 63 && label.utf8.allSatisfy { b in
                (48...57).contains(b) || (97...122).contains(b) || b == UInt8(ascii: "-") || b == UInt8(ascii: "_")
            }
        }
        guard !labels.isEmpty, name.count <= 253, labels.split(separator: ".", omittingEmptySubsequences: false).allSatisfy(labelOK) else { throw bad() }
        return Rule(host: .name(name), port: port, description: text)
    }

    /// `a.b.c.d`, an IPv6 address, or either with `/prefix`.
    static func parseNetwork(_ text: String) -> IPNetwork? {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let bytes = parseAddress(String(parts[0])) else { return nil }
        var prefix = bytes.count * 8
        if parts.count == 2 {
            guard let p = Int(parts[1]), (0...bytes.count * 8).contains(p) else { return nil }
            prefix = p
        }
        return IPNetwork(bytes: bytes, prefix: prefix)
    }

    /// The bytes of an IPv4 or IPv6 address literal, or nil.
    static func parseAddress(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }

    /// What `host` (a name, or an address literal, IPv6 with or without brackets) at `port`
    /// needs to be allowed.
    public func decision(host: String, port: Int) -> Decision {
        var h = host.lowercased()
        if h.hasPrefix("["), h.hasSuffix("]") { h = String(h.dropFirst().dropLast()) }
        if let address = Self.parseAddress(h) { return allows(address: address, port: port) ? .allowed : .refused }
        if h.hasSuffix(".") { h.removeLast() }
        for rule in rules where rule.port == nil || rule.port == port {
            guard case .name(let name) = rule.host else { continue }
            if name == h || (name.hasPrefix("*.") && h.hasSuffix(name.dropFirst(1))) { return .allowed }
        }
        let addressRules = rules.contains { if case .network = $0.host { return true } else { return false } }
        return addressRules ? .resolve : .refused
    }

    /// Whether `address` (4 or 16 bytes) at `port` is allowed by an address rule.
    public func allows(address: [UInt8], port: Int) -> Bool {
        rules.contains { rule in
            guard rule.port == nil || rule.port == port, case .network(let network) = rule.host else { return false }
            return network.contains(address)
        }
    }
}
