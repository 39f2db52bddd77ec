import J4Redis

// The typed wrappers of the scripts that are not a run's (those are `RunClient`'s): each
// builds KEYS in the header's order from the descriptor's keys and parses the flat reply,
// so no caller touches KEYS, ARGV or a reply's layout.

/// pool_*.lua for pool `pool`.
struct PoolClient: Sendable {
    let keys: PoolKeys

    init(pool: String) { keys = PoolKeys(pool: pool) }

    /// pool_load.lua: one batch of a load. nil when the pool has items held (and not `force`);
    /// else the pool's size so far.
    func load(_ c: RedisConnection, mode: String, first: Bool, force: Bool, items: [String]) async throws -> Int64? {
        let r = try await c.evalScript(Scripts.poolLoad, keys: [keys.meta, keys.items, keys.free, keys.held, keys.holders], args: [mode, first ? "1" : "0", force ? "1" : "0"] + items)
        guard let a = r.array, a.count == 2, let code = a[0].string, let n = a[1].int else { throw RedisError.unexpectedReply("pool_load: \(r)") }
        return code == "held" ? nil : n
    }

    /// What pool_checkout.lua answered.
    enum Checkout {
        /// An item: its index, its JSON text, and whether it is held exclusively.
        case item(index: Int64, text: String, exclusive: Bool)
        case noPool
        /// Every item is held: try again later.
        case empty
    }

    /// pool_checkout.lua: an item for `holder` (`worker|vu`), held with `token` for `ttlMs`.
    func checkout(_ c: RedisConnection, holder: String, token: String, ttlMs: String) async throws -> Checkout {
        let r = try await c.evalScript(Scripts.poolCheckout, keys: [keys.meta, keys.items, keys.free, keys.held, keys.holders], args: [holder, token, ttlMs])
        guard let a = r.array, a.count == 5, let code = a[0].string, let index = a[1].int else { throw RedisError.unexpectedReply("pool_checkout: \(r)") }
        switch code {
        case "ok": return .item(index: index, text: a[2].string ?? "null", exclusive: (a[3].int ?? 0) > 0)
        case "no_pool": return .noPool
        default: return .empty
        }
    }

    /// pool_return.lua: gives items back, token-checked (`index`, `holder|token`).
    func giveBack(_ c: RedisConnection, _ items: [(index: Int64, hold: String)]) async throws {
        _ = try await c.evalScript(Scripts.poolReturn, keys: [keys.free, keys.held, keys.holders], args: items.flatMap { [String($0.index), $0.hold] })
    }

    /// pool_renew.lua: renews holds for `ttlMs`; returns the indexes whose hold was lost.
    func renew(_ c: RedisConnection, ttlMs: String, _ items: [(index: Int64, hold: String)]) async throws -> Set<Int64> {
        let r = try await c.evalScript(Scripts.poolRenew, keys: [keys.held, keys.holders], args: [ttlMs] + items.flatMap { [String($0.index), $0.hold] })
        return Set((r.array ?? []).dropFirst(2).compactMap(\.int))
    }
}

/// leader.lua and identity.lua: the keys outside any run.
enum GlobalScripts {
    /// leader.lua: `acquire`, `renew` or `resign` the supervisors' leadership; true while
    /// `holder` leads.
    static func leader(_ c: RedisConnection, _ op: String, holder: String, token: String, ttlMs: Int64) async throws -> Bool {
        let r = try await c.evalScript(Scripts.leader, keys: [GlobalKeys.leader], args: [op, holder, token, String(ttlMs)])
        return r.array?.first?.int == 1
    }

    /// identity.lua: `claim` (or renew) or `release` worker id `id` for the process `nonce`;
    /// held, or the ms left on another process' registration.
    static func identity(_ c: RedisConnection, _ op: String, id: String, nonce: String, ttlMs: Int64) async throws -> (held: Bool, msLeft: Int64) {
        let r = try await c.evalScript(Scripts.identity, keys: [GlobalKeys.worker(id)], args: [op, nonce, String(ttlMs)])
        guard op == "claim" else { return (false, 0) }
        guard let a = r.array, a.count == 2, let held = a[0].int, let ms = a[1].int else { throw RedisError.unexpectedReply("identity: \(r)") }
        return (held == 1, ms)
    }
}
