import J4Core
import Testing

@Suite("Target allowlist: rules and decisions")
struct TargetAllowlistTests {
    @Test("decisions", arguments: [
        // rules, host, port, decision
        ("127.0.0.1", "127.0.0.1", 8080, TargetAllowlist.Decision.allowed),
        ("127.0.0.1", "127.0.0.2", 8080, .refused),
        ("127.0.0.0/8", "127.255.0.9", 1, .allowed),
        ("127.0.0.0/8", "128.0.0.1", 1, .refused),
        ("10.1.0.0/17", "10.1.127.255", 80, .allowed),
        ("10.1.0.0/17", "10.1.128.0", 80, .refused),
        ("0.0.0.0/0", "203.0.113.9", 80, .allowed),
        ("127.0.0.1:8080", "127.0.0.1", 8080, .allowed),
        ("127.0.0.1:8080", "127.0.0.1", 8081, .refused),
        ("127.0.0.0/8:8080", "127.9.9.9", 8080, .allowed),
        ("::1", "::1", 443, .allowed),
        ("::1", "[::1]", 443, .allowed),
        ("[::1]:443", "::1", 443, .allowed),
        ("[::1]:443", "::1", 80, .refused),
        ("fd00::/8", "fd12:3456::1", 80, .allowed),
        ("fd00::/8", "fe80::1", 80, .refused),
        ("127.0.0.0/8", "::ffff:127.0.0.1", 80, .allowed),
        ("api.example.com", "API.Example.com.", 443, .allowed),
        ("api.example.com", "api.example.com.evil.net", 443, .refused),
        ("api.example.com", "example.com", 443, .refused),
        ("*.example.com", "a.b.example.com", 443, .allowed),
        ("*.example.com", "example.com", 443, .refused),
        ("*.example.com", "badexample.com", 443, .refused),
        ("api.example.com:443", "api.example.com", 80, .refused),
        ("localhost", "localhost", 1234, .allowed),
        // A name no name rule allows is resolved when address rules exist, else refused.
        ("127.0.0.0/8", "localhost", 80, .resolve),
        ("api.example.com", "localhost", 80, .refused),
        ("api.example.com, 10.0.0.0/8", "db.internal", 5432, .resolve),
        // An address is never allowed by a name rule.
        ("localhost", "127.0.0.1", 80, .refused),
    ] as [(String, String, Int, TargetAllowlist.Decision)])
    func decisions(rules: String, host: String, port: Int, expected: TargetAllowlist.Decision) throws {
        let list = try TargetAllowlist(parsing: [rules])
        #expect(list.decision(host: host, port: port) == expected, "\(rules) for \(host):\(port)")
    }

    @Test("resolved addresses are checked against address rules and their ports")
    func addresses() throws {
        let list = try TargetAllowlist(parsing: ["127.0.0.0/8:80", "::1"])
        #expect(list.allows(address: [127, 0, 0, 1], port: 80))
        #expect(!list.allows(address: [127, 0, 0, 1], port: 81))
        #expect(list.allows(address: Array(repeating: 0, count: 15) + [1], port: 81))
        #expect(!list.allows(address: [10, 0, 0, 1], port: 80))
    }

    @Test("a rule that is not one is named, with what is accepted", arguments: [
        "", " , ", "10.0.0.0/33", "::1/129", "host:0", "host:65536", "host:http", "[::1", "[::1]x", "bad host", "*.", "a..b", "exa mple.com", "*", "-/8",
    ])
    func invalid(rule: String) {
        #expect {
            try TargetAllowlist(parsing: [rule])
        } throws: { error in
            let text = "\(error)"
            return text.contains("--allow-target") && text.contains("\"\(rule)\"") && text.contains("CIDR")
        }
    }
}
