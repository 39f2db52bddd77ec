import Foundation
import J4Redis
import J4Runtime
import J4TestSupport
import Testing

@Suite("Redis connection on hiredis (real redis-server)")
struct ConnectionTests {
    @Test("binary-safe commands, pipelining, typed server errors")
    func basics() async throws {
        let redis = try await EmbeddedRedis.start()
        let c = redis.connect()
        let value: [UInt8] = [0, 13, 10, 255, 36, 42]
        try await c.sendBytes([Array("SET".utf8), Array("k".utf8), value])
        #expect(try await c.send(["GET", "k"]) == .bulk(value))
        let replies = try await c.pipeline([["SET", "a", "1"], ["LPUSH", "a", "x"], ["INCR", "a"], ["GET", "missing"]])
        #expect(replies[0] == .status("OK"))
        guard case .error(let e) = replies[1] else { Issue.record("expected an error reply, got \(replies[1])"); return }
        #expect(e.hasPrefix("WRONGTYPE"))
        #expect(replies[2] == .integer(2))
        #expect(replies[3] == .null)
        await #expect(throws: RedisError.server(code: "WRONGTYPE", message: e)) { try await c.send(["LPUSH", "a", "x"]) }
        // The connection is still usable after an error reply.
        #expect(try await c.send(["PING"]) == .status("PONG"))
        await c.close()
        await redis.stop()
    }

    @Test("EVALSHA reloads a script after the cache is flushed (NOSCRIPT)")
    func noscript() async throws {
        let redis = try await EmbeddedRedis.start()
        let c = redis.connect()
        _ = try await c.evalScript(Scripts.leader, keys: [GlobalKeys.leader], args: ["acquire", "a", "t", "5000"])
        try await c.send(["SCRIPT", "FLUSH"])
        let r = try await c.evalScript(Scripts.leader, keys: [GlobalKeys.leader], args: ["renew", "a", "t", "5000"])
        #expect(r.array?.first == .integer(1))
        await redis.stop()
    }

    @Test("reconnects after Redis restarts, re-applying CLIENT SETNAME")
    func reconnect() async throws {
        let redis = try await EmbeddedRedis.start()
        var options = RedisConnectionOptions(clientName: "j4-test-reconnect")
        options.minBackoff = .milliseconds(1)
        options.maxBackoff = .milliseconds(20)
        let c = RedisConnection(endpoint: redis.endpoint, options: options)
        #expect(try await c.send(["PING"]) == .status("PONG"))
        await redis.kill(SIGKILL)
        await #expect(throws: RedisError.self) { try await c.send(["PING"]) }
        try await redis.restart()
        // The first calls may still be inside the backoff window; the connection must recover on its own.
        var reply: RedisValue?
        try? await waitFor("the connection to come back", timeout: .seconds(5), every: .milliseconds(10)) {
            reply = try? await c.send(["CLIENT", "GETNAME"])
            return reply != nil
        }
        #expect(reply == .bulk(Array("j4-test-reconnect".utf8)))
        #expect(await c.connectCount() == 2)
        await redis.stop()
    }

    @Test("AUTH from the URL; a wrong password is a typed error and never printed")
    func auth() async throws {
        let redis = try await EmbeddedRedis.start(extraArguments: ["--requirepass", "s3cret-pw"])
        let socket = redis.socketPath
        var good = try RedisEndpoint(url: "unix://\(socket)")
        good.password = "s3cret-pw"
        #expect(try await RedisConnection(endpoint: good, options: .init(clientName: "ok")).send(["PING"]) == .status("PONG"))
        var bad = good
        bad.password = "wrong-pw"
        let error = await #expect(throws: RedisError.self) { try await RedisConnection(endpoint: bad, options: .init(clientName: "bad")).send(["PING"]) }
        #expect(!"\(error!)".contains("wrong-pw"))
        await redis.stop()
    }

    @Test("a read timeout closes the connection; the next call reconnects")
    func readTimeout() async throws {
        let redis = try await EmbeddedRedis.start(extraArguments: ["--enable-debug-command", "yes"])
        var options = RedisConnectionOptions(clientName: "j4-test-timeout")
        options.readTimeout = .milliseconds(200)
        options.minBackoff = .milliseconds(1)
        options.maxBackoff = .milliseconds(5)
        let c = RedisConnection(endpoint: redis.endpoint, options: options)
        let error = await #expect(throws: RedisError.self) { try await c.send(["DEBUG", "SLEEP", "1"]) }
        #expect(error?.isUnreachable == true)
        var pong: RedisValue?
        try? await waitFor("a PING answered", timeout: .seconds(5), every: .milliseconds(10)) {
            pong = try? await c.send(["PING"])
            return pong != nil
        }
        #expect(pong == .status("PONG"))
        await redis.stop()
    }
}
