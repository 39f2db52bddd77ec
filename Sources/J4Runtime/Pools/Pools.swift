import Foundation
import J4Core
import J4Redis
import J4Scenario
import Logging
import Synchronization

/// A pool as `j4 pool show` reports it.
public struct PoolInfo: Sendable, Codable {
    public var name: String
    /// exclusive or shared.
    public var mode: String
    public var count: Int64
    /// Items checked out with an unexpired hold (exclusive pools).
    public var held: Int64
    /// Holders' workers → items they hold.
    public var holders: [String: Int64]
    /// Unix ms of the load.
    public var loaded_ms: Int64
    /// The first items, as JSON.
    public var sample: [String]
}

/// Pool operations on Redis: loading, showing, and the calls a worker makes.
public enum Pools {
    /// Pool names: letters, digits, `_`, `-`, `.`, 1 to 64 characters.
    public static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 64 && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == ".") }
    }

    /// Loads `items` (JSON texts) into pool `name`, replacing it, in batches of 500.
    /// Returns nil when the pool has items checked out and `force` is false.
    public static func load(_ name: String, mode: String, items: [String], force: Bool, on c: RedisConnection) async throws -> Int64? {
        var first = true
        var count: Int64 = 0
        var batches = stride(from: 0, to: items.count, by: 500).map { Array(items[$0..<min($0 + 500, items.count)]) }
        if batches.isEmpty { batches = [[]] }
        for batch in batches {
            guard let n = try await PoolClient(pool: name).load(c, mode: mode, first: first, force: force, items: batch) else { return nil }
            count = n
            first = false
        }
        return count
    }

    /// What `j4 pool show` prints; nil when there is no such pool.
    public static func show(_ name: String, sample: Int = 5, on c: RedisConnection) async throws -> PoolInfo? {
        let k = PoolKeys(pool: name)
        let r = try await c.pipeline([["HGETALL", k.meta], ["TIME"], ["HGETALL", k.holders], ["ZRANGE", k.held, "0", "-1", "WITHSCORES"]])
        guard let meta = r[0].hash, let mode = meta["mode"] else { return nil }
        let now = r[1].timeMs ?? 0
        let holders = r[2].hash ?? [:]
        let heldList = r[3].array ?? []
        var held: Int64 = 0
        var byWorker: [String: Int64] = [:]
        for i in stride(from: 0, to: heldList.count - 1, by: 2) {
            guard let index = heldList[i].string, let expiry = heldList[i + 1].string.flatMap({ Double($0) }), Int64(expiry) > now else { continue }
            held += 1
            let worker = holders[index].map { String($0.split(separator: "|").first ?? "") } ?? "?"
            byWorker[worker, default: 0] += 1
        }
        let count = Int64(meta["count"] ?? "0") ?? 0
        var items: [String] = []
        if count > 0 {
            let fields = (0..<min(count, Int64(sample))).map(String.init)
            items = (try await c.send(["HMGET", k.items] + fields).array ?? []).compactMap(\.string)
        }
        return PoolInfo(name: name, mode: mode, count: count, held: mode == "exclusive" ? held : 0, holders: byWorker,
                        loaded_ms: Int64(meta["loaded_ms"] ?? "0") ?? 0, sample: items)
    }
}

/// A worker's side of pools in one run: checkouts for its VUs, one renewal call per pool
/// every TTL/3 for every item they hold, and the give-back when a VU ends.
///
/// A hold is fenced like a lease: confirmed by a reply to a request sent at `s`, the worker
/// trusts it until `s + TTL − margin`; Redis keeps it until at least `s + TTL`. A VU whose
/// hold is no longer trusted is ended before its next iteration, so once Redis hands the
/// item to another VU the old holder has stopped using it (an iteration already running
/// finishes).
final class PoolKeeper: PoolSource {
    struct Hold {
        var item: PoolItem
        var validUntil: ContinuousClock.Instant
    }
    let connection: RedisConnection
    let worker: String
    let ttl: Duration
    let margin: Duration
    let logger: Logger
    let holds = Mutex<[String: Hold]>([:])

    init(connection: RedisConnection, worker: String, ttl: Duration, logger: Logger) {
        self.connection = connection
        self.worker = worker
        self.ttl = ttl
        self.margin = max(.milliseconds(100), ttl / 10)
        self.logger = logger
    }

    var ttlMs: String { String(MetricsRecorder.micros(ttl) / 1000) }

    /// Checks an item of `pool` out for VU `vu`; while every item is held, asks again with
    /// backoff for up to `wait`.
    func checkout(pool: String, vu: Int64, wait: Duration) async throws -> PoolItem {
        guard Pools.isValidName(pool) else { throw NoSuchPool(pool: pool) }
        let giveUp = ContinuousClock.now + wait
        var pause = Duration.milliseconds(50)
        while true {
            let token = String(UInt64.random(in: 0...UInt64.max), radix: 36)
            let holder = "\(worker)|\(vu)"
            let sent = ContinuousClock.now
            switch try await PoolClient(pool: pool).checkout(connection, holder: holder, token: token, ttlMs: ttlMs) {
            case .item(let index, let text, let exclusive):
                let value = (try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))) ?? .string(text)
                let item = PoolItem(pool: pool, index: index, value: value, hold: exclusive ? "\(holder)|\(token)" : "")
                if exclusive { holds.withLock { $0["\(pool)/\(index)"] = Hold(item: item, validUntil: sent + ttl - margin) } }
                return item
            case .noPool:
                throw NoSuchPool(pool: pool)
            case .empty:
                guard ContinuousClock.now + pause < giveUp else { throw PoolEmpty(pool: pool) }
                try await Task.sleep(for: pause)
                pause = min(pause * 2, .milliseconds(500))
            }
        }
    }

    /// True while every exclusive item in `items` is still trusted.
    func trusted(_ items: [PoolItem]) -> Bool {
        let now = ContinuousClock.now
        return holds.withLock { h in
            items.allSatisfy { i in
                guard !i.hold.isEmpty else { return true }
                // The entry must be this checkout's: the same item may have been checked out again since.
                guard let held = h["\(i.pool)/\(i.index)"], held.item.hold == i.hold else { return false }
                return held.validUntil > now
            }
        }
    }

    /// Gives `items` back (token-checked); shared items need nothing.
    func giveBack(_ items: [PoolItem]) async {
        let mine = items.filter { !$0.hold.isEmpty }
        holds.withLock { h in for i in mine where h["\(i.pool)/\(i.index)"]?.item.hold == i.hold { h["\(i.pool)/\(i.index)"] = nil } }
        for (pool, group) in Dictionary(grouping: mine, by: \.pool) {
            do {
                try await PoolClient(pool: pool).giveBack(connection, group.map { ($0.index, $0.hold) })
            } catch {
                logger.warning("could not give pool items back; they return when their hold expires", metadata: ["pool": "\(pool)", "error": "\(error)"])
            }
        }
    }

    /// Renews every hold every TTL/3 until cancelled.
    func renewLoop() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: ttl / 3)
            let byPool = holds.withLock { h in Dictionary(grouping: h.values.map(\.item), by: \.pool) }
            for (pool, items) in byPool {
                let sent = ContinuousClock.now
                do {
                    let lost = try await PoolClient(pool: pool).renew(connection, ttlMs: ttlMs, items.map { ($0.index, $0.hold) })
                    holds.withLock { h in
                        for item in items {
                            let key = "\(pool)/\(item.index)"
                            guard h[key]?.item.hold == item.hold else { continue }  // checked out again since
                            if lost.contains(item.index) { h[key] = nil } else { h[key]!.validUntil = sent + ttl - margin }
                        }
                    }
                    if !lost.isEmpty { logger.warning("pool holds lost", metadata: ["pool": "\(pool)", "items": "\(lost.sorted())"]) }
                } catch {
                    logger.warning("pool hold renewal failed; holds self-fence at their deadline", metadata: ["pool": "\(pool)", "error": "\(error)"])
                }
            }
        }
    }
}
