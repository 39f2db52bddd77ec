import CHiredis
import Foundation

/// hiredis marshalling: commands out as C argv arrays, replies in as ``RedisValue``s. The
/// only part of ``RedisConnection`` that knows hiredis' C types besides opening.
extension RedisConnection {
    /// Sends `commands` on `ctx` and reads their replies; nil on a connection error.
    static func roundTrip(_ ctx: UnsafeMutablePointer<redisContext>, _ commands: [[[UInt8]]]) -> [RedisValue]? {
        for command in commands {
            let rc = withArgv(command) { argc, argv, lens in redisAppendCommandArgv(ctx, argc, argv, lens) }
            guard rc == REDIS_OK else { return nil }
        }
        var replies: [RedisValue] = []
        replies.reserveCapacity(commands.count)
        for _ in commands {
            var raw: UnsafeMutableRawPointer?
            guard redisGetReply(ctx, &raw) == REDIS_OK, let raw else { return nil }
            let reply = raw.assumingMemoryBound(to: redisReply.self)
            replies.append(RedisConnection.copy(reply))
            freeReplyObject(raw)
        }
        return replies
    }

    static func timeval(_ d: Duration) -> Glibc.timeval {
        let (s, atto) = d.components
        return Glibc.timeval(tv_sec: Int(s), tv_usec: Int(atto / 1_000_000_000_000))
    }

    static func errorText(_ ctx: UnsafeMutablePointer<redisContext>) -> String {
        withUnsafeBytes(of: ctx.pointee.errstr) { raw in
            let bytes = raw.prefix { $0 != 0 }
            let text = String(decoding: bytes, as: UTF8.self)
            return text.isEmpty ? "connection lost (error \(ctx.pointee.err))" : text
        }
    }

    /// Copies a reply into Swift values; the caller frees the reply once.
    static func copy(_ r: UnsafeMutablePointer<redisReply>) -> RedisValue {
        let reply = r.pointee
        switch reply.type {
        case REDIS_REPLY_STRING:
            return .bulk(reply.str.map { Array(UnsafeRawBufferPointer(start: $0, count: Int(reply.len))) } ?? [])
        case REDIS_REPLY_STATUS:
            return .status(reply.str.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: Int(reply.len)), as: UTF8.self) } ?? "")
        case REDIS_REPLY_ERROR:
            return .error(reply.str.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: Int(reply.len)), as: UTF8.self) } ?? "ERR")
        case REDIS_REPLY_INTEGER:
            return .integer(Int64(reply.integer))
        case REDIS_REPLY_ARRAY:
            var items: [RedisValue] = []
            items.reserveCapacity(Int(reply.elements))
            for i in 0..<Int(reply.elements) {
                if let e = reply.element[i] { items.append(copy(e)) }
            }
            return .array(items)
        default:
            return .null
        }
    }
}

/// Calls `body` with a C argv (pointers and lengths) over `args`, valid only inside the call.
func withArgv<R>(_ args: [[UInt8]], _ body: (Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafePointer<Int>) -> R) -> R {
    let total = args.reduce(0) { $0 + $1.count }
    return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: max(total, 1)) { storage in
        var offset = 0
        var pointers: [UnsafePointer<CChar>?] = []
        var lengths: [Int] = []
        pointers.reserveCapacity(args.count)
        lengths.reserveCapacity(args.count)
        for a in args {
            let start = storage.baseAddress! + offset
            a.withUnsafeBufferPointer { src in
                if let base = src.baseAddress { (start).update(from: base, count: a.count) }
            }
            pointers.append(UnsafeRawPointer(start).assumingMemoryBound(to: CChar.self))
            lengths.append(a.count)
            offset += a.count
        }
        return pointers.withUnsafeMutableBufferPointer { p in
            lengths.withUnsafeBufferPointer { l in body(Int32(args.count), p.baseAddress!, l.baseAddress!) }
        }
    }
}
