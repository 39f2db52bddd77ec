/// Redis Cluster's key-to-slot mapping and the key each command J4 sends is routed by.
///
/// hiredis 0.14 has no cluster client, so J4 routes by slot itself: `CLUSTER SLOTS` gives
/// the map, `MOVED` corrects it, `ASK` redirects one command during a slot migration. Every
/// run's keys share the hash tag `{r:ID}` (pools `{p:NAME}`), so a run's scripts always run
/// on one node, and runs spread over the cluster by their ids.
public enum ClusterSlots {
    /// Slots in a cluster.
    public static let count = 16384

    /// The slot of `key`: CRC16 (XMODEM) of the key, or of its hash tag (the text between
    /// the first `{` and the next `}`, when not empty), modulo 16384.
    public static func slot(of key: [UInt8]) -> Int {
        var part = key[...]
        if let open = key.firstIndex(of: UInt8(ascii: "{")), let close = key[(open + 1)...].firstIndex(of: UInt8(ascii: "}")), close > open + 1 {
            part = key[(open + 1)..<close]
        }
        return Int(crc16(part) % UInt16(count))
    }

    /// ``slot(of:)`` for text.
    public static func slot(of key: String) -> Int { slot(of: Array(key.utf8)) }

    static func crc16(_ bytes: ArraySlice<UInt8>) -> UInt16 {
        var crc: UInt16 = 0
        for b in bytes {
            crc ^= UInt16(b) << 8
            for _ in 0..<8 { crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
        }
        return crc
    }

    /// Commands without a key: they go wherever the rest of their batch goes.
    static let keyless: Set<String> = [
        "PING", "TIME", "INFO", "CLIENT", "SCRIPT", "AUTH", "SELECT", "CLUSTER", "PUBLISH", "SUBSCRIBE", "ECHO", "HELLO",
        "COMMAND", "DBSIZE", "CONFIG", "WAIT", "ASKING", "READONLY", "ROLE",
    ]

    /// The key `command` is routed by, if it has one: the first key of EVAL/EVALSHA, else
    /// the first argument.
    static func key(of command: [[UInt8]]) -> [UInt8]? {
        guard let first = command.first else { return nil }
        let name = String(decoding: first, as: UTF8.self).uppercased()
        if keyless.contains(name) { return nil }
        if name == "EVALSHA" || name == "EVAL" {
            guard command.count > 3, let n = Int(String(decoding: command[2], as: UTF8.self)), n > 0 else { return nil }
            return command[3]
        }
        return command.count > 1 ? command[1] : nil
    }

    /// `MOVED 3999 127.0.0.1:6381` or `ASK 3999 127.0.0.1:6381`: the kind, slot and node.
    static func redirect(_ error: String) -> (ask: Bool, slot: Int, node: RedisEndpoint.HostPort)? {
        let parts = error.split(separator: " ")
        guard parts.count == 3, parts[0] == "MOVED" || parts[0] == "ASK", let slot = Int(parts[1]),
              let colon = parts[2].lastIndex(of: ":"), let port = Int(parts[2][parts[2].index(after: colon)...]) else { return nil }
        var host = String(parts[2][..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (parts[0] == "ASK", slot, RedisEndpoint.HostPort(host: host, port: port))
    }

    /// Why a CLUSTER SLOTS reply gave no slot map.
    public struct SlotsProblem: Error, Equatable {
        public let text: String
    }

    /// The owner of every slot from a CLUSTER SLOTS reply given by `node` (a master with an
    /// empty host is `node`'s host); malformed ranges are skipped. A failure when the reply is
    /// not an array or assigns no slot.
    public static func owners(fromSlotsReply reply: RedisValue, answeredBy node: RedisEndpoint.HostPort) -> Result<[RedisEndpoint.HostPort?], SlotsProblem> {
        guard case .array(let ranges) = reply else { return .failure(SlotsProblem(text: "CLUSTER SLOTS gave \(reply)")) }
        var owners = [RedisEndpoint.HostPort?](repeating: nil, count: count)
        for range in ranges {
            guard case .array(let r) = range, r.count >= 3, let lo = r[0].int, let hi = r[1].int, case .array(let master) = r[2], master.count >= 2,
                  let port = master[1].int, lo >= 0, hi < count, lo <= hi else { continue }
            let host = master[0].string.flatMap { $0.isEmpty ? nil : $0 } ?? node.host
            for slot in Int(lo)...Int(hi) { owners[slot] = RedisEndpoint.HostPort(host: host, port: Int(port)) }
        }
        guard owners.contains(where: { $0 != nil }) else { return .failure(SlotsProblem(text: "no slots assigned")) }
        return .success(owners)
    }
}
