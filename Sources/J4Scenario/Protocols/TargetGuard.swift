import Foundation
import J4Core
internal import J4Redis
import Synchronization

/// A request aimed where this worker's allowlist does not allow: nothing was sent.
public struct TargetRefused: ClassifiedError, CustomStringConvertible {
    /// `host:port` as the request named it.
    public let target: String
    /// Why, for the event and the log.
    public let reason: String
    public var errorClass: String { "target_refused" }
    public var description: String { "target \(target) refused: \(reason)" }
}

/// Checks every target a run's VUs aim at against the worker's allowlist, before a byte is
/// sent: the built-in scenarios, `vu.http` and friends, WebSockets, and gRPC (by the address
/// the transport connected to). Decisions are cached per `host:port`; the first refusal of
/// each target is reported once (an event in the run's stream).
public final class TargetGuard: Sendable {
    /// Allows everything: a worker started without `--allow-target`.
    public static let open = TargetGuard(allowlist: nil)

    let allowlist: TargetAllowlist?
    let onRefused: @Sendable (TargetRefused) -> Void
    /// Decisions per `host:port` (nil: allowed), and the targets whose refusal was reported.
    let memory = Mutex<(decided: [String: TargetRefused?], reported: Set<String>)>(([:], []))

    /// A guard for `allowlist` (nil: allow all); `onRefused` hears each refused target once.
    public init(allowlist: TargetAllowlist?, onRefused: @escaping @Sendable (TargetRefused) -> Void = { _ in }) {
        self.allowlist = allowlist
        self.onRefused = onRefused
    }

    /// Throws ``TargetRefused`` unless `url` (http, https, ws, wss) may be sent to.
    public func check(url: String) throws(TargetRefused) {
        guard allowlist != nil else { return }
        guard let u = URL(string: url), let host = u.host, !host.isEmpty else {
            throw refuse(TargetRefused(target: RedisEndpoint.redact(url), reason: "the URL names no host"))
        }
        let scheme = u.scheme?.lowercased() ?? ""
        // The WebSocket client reads a URL's authority its own way (`ws://a:1@b/` is a:80
        // to it, b to Foundation): user info in a ws URL is refused, not guessed at.
        if scheme == "ws" || scheme == "wss", u.user != nil || u.password != nil {
            throw refuse(TargetRefused(target: RedisEndpoint.redact(url), reason: "a WebSocket URL with user info, which J4 cannot check"))
        }
        let port = u.port ?? (scheme == "https" || scheme == "wss" ? 443 : 80)
        try check(host: host, port: port)
    }

    /// Throws ``TargetRefused`` unless `host` (a name or an address) at `port` may be sent to.
    public func check(host: String, port: Int) throws(TargetRefused) {
        guard let allowlist else { return }
        let key = "\(host):\(port)"
        if let known = memory.withLock({ $0.decided[key] }) {
            if let refusal = known { throw refusal }
            return
        }
        switch allowlist.decision(host: host, port: port) {
        case .allowed:
            break
        case .refused:
            throw refuse(TargetRefused(target: key, reason: "not in this worker's --allow-target (\(allowlist))"))
        case .resolve:
            let addresses = TargetGuard.resolve(host)
            if addresses.isEmpty {
                // Not remembered: a name that does not resolve now may resolve at the next request.
                throw refuse(TargetRefused(target: key, reason: "the name does not resolve, and no name rule in --allow-target (\(allowlist)) allows it"), remember: false)
            }
            if let outside = addresses.first(where: { !allowlist.allows(address: $0, port: port) }) {
                throw refuse(TargetRefused(target: key, reason: "it resolves to \(TargetGuard.text(outside)), not in this worker's --allow-target (\(allowlist))"))
            }
        }
        memory.withLock { $0.decided[key] = .some(nil) }
    }

    /// Throws ``TargetRefused`` unless the peer a transport connected to may be sent to. gRPC
    /// describes it as `ipv4:127.0.0.1:50051` or `ipv6:[::1]:50051`; a Unix socket or an
    /// in-process transport stays on this machine and is allowed; anything else is refused.
    public func check(peer: String) throws(TargetRefused) {
        guard allowlist != nil else { return }
        if peer.hasPrefix("unix:") || peer.hasPrefix("in-process:") { return }
        let address: Substring
        if peer.hasPrefix("ipv4:") || peer.hasPrefix("ipv6:") {
            address = peer.dropFirst(5)
        } else {
            throw refuse(TargetRefused(target: peer, reason: "a peer J4 cannot check against --allow-target"))
        }
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else {
            throw refuse(TargetRefused(target: peer, reason: "a peer J4 cannot check against --allow-target"))
        }
        try check(host: String(address[..<colon]), port: port)
    }

    /// Remembers `refusal` (unless told not to) and reports it the first time its target is refused.
    private func refuse(_ refusal: TargetRefused, remember: Bool = true) -> TargetRefused {
        let first = memory.withLock { m -> Bool in
            if remember { m.decided[refusal.target] = .some(refusal) }
            return m.reported.insert(refusal.target).inserted
        }
        if first { onRefused(refusal) }
        return refusal
    }

    /// Every address `host` resolves to (TCP), as 4 or 16 bytes.
    static func resolve(_ host: String) -> [[UInt8]] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &list) == 0 else { return [] }
        defer { freeaddrinfo(list) }
        var out: [[UInt8]] = []
        var p = list
        while let info = p?.pointee {
            if info.ai_family == AF_INET, let a = info.ai_addr {
                a.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                    var addr = sin.pointee.sin_addr
                    out.append(withUnsafeBytes(of: &addr) { Array($0) })
                }
            } else if info.ai_family == AF_INET6, let a = info.ai_addr {
                a.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin in
                    var addr = sin.pointee.sin6_addr
                    out.append(withUnsafeBytes(of: &addr) { Array($0) })
                }
            }
            p = info.ai_next
        }
        return out
    }

    static func text(_ address: [UInt8]) -> String {
        var buffer = [CChar](repeating: 0, count: 64)
        let family = address.count == 4 ? AF_INET : AF_INET6
        _ = address.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &buffer, 64) }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
