import J4Core

// What a VU sees of J4's data pools (`vu.pool(name)`); the worker side, which checks items
// out of Redis and renews their holds, is `PoolKeeper` in J4Runtime.

/// One item of a shared data pool, as a VU got it.
public struct PoolItem: Sendable {
    /// The pool's name.
    public let pool: String
    /// The item's number in load order, from 0.
    public let index: Int64
    /// The item: an object (a CSV row by header, or a JSON line).
    public let value: JSONValue
    /// `worker|vu|token` of this checkout (exclusive pools), empty for shared pools.
    public let hold: String

    package init(pool: String, index: Int64, value: JSONValue, hold: String) {
        self.pool = pool
        self.index = index
        self.value = value
        self.hold = hold
    }

    /// A field of the item.
    public subscript(key: String) -> JSONValue? { value[key] }

    /// A field as text (numbers and booleans written as in JSON).
    public func string(_ key: String) -> String? {
        guard let v = value[key] else { return nil }
        return v.stringValue ?? v.canonicalJSON
    }

    /// `x-j4-pool-item: <pool>/<index>` and, for exclusive pools, `x-j4-pool-hold: <hold>`, so
    /// a server can check that no item is used by two holders at once.
    public var headers: [(String, String)] {
        [("x-j4-pool-item", "\(pool)/\(index)")] + (hold.isEmpty ? [] : [("x-j4-pool-hold", hold)])
    }
}

/// Every item of an exclusive pool is checked out, and none came back in time.
public struct PoolEmpty: ClassifiedError, CustomStringConvertible {
    /// The pool.
    public let pool: String
    package init(pool: String) { self.pool = pool }
    public var errorClass: String { "pool_empty" }
    public var description: String { "pool \(pool): every item is checked out" }
}

/// The pool does not exist (load it with `j4 pool load`).
public struct NoSuchPool: ClassifiedError, CustomStringConvertible {
    /// The pool.
    public let pool: String
    package init(pool: String) { self.pool = pool }
    public var errorClass: String { "pool_missing" }
    public var description: String { "no pool \(pool) (load one with: j4 pool load \(pool) FILE)" }
}

/// Where a VU's pool checkouts go: the worker's `PoolKeeper`, which holds them in Redis.
package protocol PoolSource: Sendable {
    /// Checks an item of `pool` out for VU `vu`, waiting up to `wait` while every item is held.
    func checkout(pool: String, vu: Int64, wait: Duration) async throws -> PoolItem
    /// True while every exclusive item in `items` is still trusted.
    func trusted(_ items: [PoolItem]) -> Bool
    /// Gives `items` back.
    func giveBack(_ items: [PoolItem]) async
}
