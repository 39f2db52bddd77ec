import Foundation
import J4Core
import J4Redis
import J4Runtime
import J4TestSupport
import Testing

/// Calls of the pool scripts for tests.
struct PoolCalls {
    let c: RedisConnection
    let name: String
    var keys: PoolKeys { PoolKeys(pool: name) }

    func checkout(_ holder: String, _ token: String, ttl: Int = 60_000) async throws -> (code: String, index: Int64, item: String, expiry: Int64, now: Int64) {
        let r = try await c.evalScript(Scripts.poolCheckout, keys: [keys.meta, keys.items, keys.free, keys.held, keys.holders], args: [holder, token, String(ttl)])
        let a = r.array ?? []
        return (a[0].string ?? "", a[1].int ?? -9, a[2].string ?? "", a.count > 3 ? a[3].int ?? -9 : -9, a.count > 4 ? a[4].int ?? -9 : -9)
    }

    func giveBack(_ pairs: [(Int64, String)]) async throws -> Int64 {
        try await c.evalScript(Scripts.poolReturn, keys: [keys.free, keys.held, keys.holders], args: pairs.flatMap { [String($0.0), $0.1] }).int ?? -1
    }

    func renew(_ pairs: [(Int64, String)], ttl: Int = 60_000) async throws -> [Int64] {
        let r = try await c.evalScript(Scripts.poolRenew, keys: [keys.held, keys.holders], args: [String(ttl)] + pairs.flatMap { [String($0.0), $0.1] })
        return (r.array ?? []).dropFirst(2).compactMap(\.int)
    }
}

@Suite("Shared data pools (Lua on a real redis-server)")
struct PoolTests {
    @Test("exclusive: each item to one holder at a time; empty when all are held; a return is token-checked")
    func exclusive() async throws {
        let redis = try await EmbeddedRedis.start()
        let c = redis.connect()
        let p = PoolCalls(c: c, name: "accounts")
        #expect(try await Pools.load("accounts", mode: "exclusive", items: ["{\"u\":\"a\"}", "{\"u\":\"b\"}"], force: false, on: c) == 2)
        let first = try await p.checkout("w1|0", "t1")
        let second = try await p.checkout("w2|5", "t2")
        #expect(first.code == "ok" && second.code == "ok" && Set([first.index, second.index]) == [0, 1])
        #expect(try await p.checkout("w3|1", "t3").code == "empty")
        // Only the holder's own token gives an item back.
        #expect(try await p.giveBack([(first.index, "w1|0|wrong")]) == 0)
        #expect(try await p.giveBack([(first.index, "w1|0|t1")]) == 1)
        let again = try await p.checkout("w3|1", "t3")
        #expect(again.code == "ok" && again.index == first.index)
        // A pool with items checked out is not replaced unless forced.
        #expect(try await Pools.load("accounts", mode: "exclusive", items: ["{}"], force: false, on: c) == nil)
        let info = try await Pools.show("accounts", on: c)
        #expect(info?.held == 2 && info?.holders == ["w2": 1, "w3": 1])
        #expect(try await Pools.load("accounts", mode: "exclusive", items: ["{}"], force: true, on: c) == 1)
        await redis.stop()
    }

    @Test("an expired hold is taken back at the next checkout; its old holder can neither renew nor return it")
    func expiry() async throws {
        // Redis' clock is stepped past the hold's expiry instead of waited for, so a busy
        // machine cannot let the hold expire before the checkout that must find it held.
        let clock = try await SteppedClockRedis.start()
        let c = clock.redis.connect()
        let p = PoolCalls(c: c, name: "one")
        _ = try await Pools.load("one", mode: "exclusive", items: ["{\"u\":\"a\"}"], force: false, on: c)
        let dead = try await p.checkout("w1|0", "t1", ttl: 60_000)
        #expect(dead.code == "ok" && dead.expiry == dead.now + 60_000, "the hold lasts the TTL on Redis' clock: \(dead)")
        #expect(try await p.checkout("w2|0", "t2").code == "empty")
        // Once the hold has expired on Redis' clock, the next checkout takes the item back.
        try clock.offset(61)
        let taken = try await p.checkout("w2|0", "t2")
        #expect(taken.code == "ok" && taken.index == dead.index && taken.now > dead.expiry, "\(taken)")
        #expect(try await p.renew([(dead.index, "w1|0|t1")]) == [dead.index])
        #expect(try await p.giveBack([(dead.index, "w1|0|t1")]) == 0)
        #expect(try await p.renew([(taken.index, "w2|0|t2")]) == [])
        #expect(try await Pools.show("one", on: c)?.holders == ["w2": 1])
        await clock.stop()
    }

    @Test("shared: every checkout gets the next item in turn, nothing is held")
    func shared() async throws {
        let redis = try await EmbeddedRedis.start()
        let c = redis.connect()
        let p = PoolCalls(c: c, name: "products")
        _ = try await Pools.load("products", mode: "shared", items: (0..<3).map { "{\"id\":\($0)}" }, force: false, on: c)
        var seen: [Int64] = []
        for i in 0..<7 { seen.append(try await p.checkout("w|\(i)", "t").index) }
        #expect(seen == [0, 1, 2, 0, 1, 2, 0])
        #expect(try await Pools.show("products", on: c)?.held == 0)
        #expect(try await p.checkout("w|0", "t").item == "{\"id\":1}")
        #expect(try await PoolCalls(c: c, name: "nope").checkout("w|0", "t").code == "no_pool")
        await redis.stop()
    }

    @Test("a load of more than one batch keeps every item in order")
    func batches() async throws {
        let redis = try await EmbeddedRedis.start()
        let c = redis.connect()
        let items = (0..<1234).map { "{\"n\":\($0)}" }
        #expect(try await Pools.load("big", mode: "exclusive", items: items, force: false, on: c) == 1234)
        #expect(try await c.send(["HGET", PoolKeys(pool: "big").items, "1233"]).string == "{\"n\":1233}")
        #expect(try await c.send(["LLEN", PoolKeys(pool: "big").free]).int == 1234)
        await redis.stop()
    }
}
