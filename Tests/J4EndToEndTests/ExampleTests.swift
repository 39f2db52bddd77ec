import AsyncHTTPClient
import Foundation
import J4Core
import J4Redis
import J4Runtime
import J4Scenario
import J4TestSupport
import Logging
import Testing

/// An example's server (`checkout-server`, `chat-server`) on a free port.
struct ExampleServer {
    let child: ChildProcess
    let port: Int
    var url: String { "http://127.0.0.1:\(port)" }

    static func start(_ binary: String) async throws -> ExampleServer {
        let (child, port) = try await J4Binary.startListening(["--port", "0"], binary: J4Binary.sibling(binary))
        return ExampleServer(child: child, port: port)
    }

    /// The server's own counts (`GET /__stats`).
    func stats() async throws -> [String: Int] {
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url + "/__stats"), timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 1 << 20)
        return try JSONDecoder().decode([String: Int].self, from: Data(body.readableBytesView))
    }

    func stop() async {
        child.send(SIGTERM)
        _ = await child.wait()
    }
}

extension EndToEndTests {
    static let checkoutBinary = J4Binary.sibling("checkout-j4")
    static let accounts = InvalidFixtures.directory.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("examples/http-checkout/data/accounts.csv").path

    static func checkoutDefinition(_ shop: ExampleServer, vus: Int, seconds: Int, shards: Int) -> String {
        """
        name: checkout-test
        scenario: checkout
        model: vus
        start: \(vus)
        stages: [{ duration: \(seconds)s, target: \(vus) }]
        shards: \(shards)
        leaseTTL: 3s
        params: { baseURL: "\(shop.url)" }
        """
    }

    @Test("examples/http-checkout with j4 run: per-step latencies, checks and the orders counter in the summary; the server's counts agree")
    func checkoutExample() async throws {
        let shop = try await ExampleServer.start("checkout-server")
        let file = try temporaryFile(Self.checkoutDefinition(shop, vus: 10, seconds: 5, shards: 4))
        let summaryPath = NSTemporaryDirectory() + "j4-checkout-\(UUID().uuidString).json"
        let (code, out) = try await J4Binary.run(["run", file, "--workers", "2", "--pool", "accounts=\(Self.accounts)", "--summary-json", summaryPath, "--quiet"], binary: Self.checkoutBinary)
        #expect(code == 0, "\(out)")
        let s = try Self.summary(summaryPath)
        let server = try await shop.stats()
        let steps = s["steps"] as? [String: [String: Any]] ?? [:]
        let orders = (s["counters"] as? [String: Int])?["orders"] ?? -1
        print("figures http-checkout: started \(s["started"] ?? "?"), orders \(orders), server \(server)")
        #expect(Set(steps.keys) == ["login", "products", "add_to_cart", "checkout", "logout"], "\(steps.keys)")
        for (name, step) in steps {
            let latency = step["latency_ms"] as? [String: Double] ?? [:]
            #expect(latency["p50"] != nil && latency["p99"] != nil && step["failed"] as? Int == 0, "step \(name): \(step)")
        }
        // The server served exactly what J4 counted.
        #expect(orders > 0 && server["checkouts"] == orders && steps["checkout"]?["count"] as? Int == orders && s["started"] as? Int == orders)
        #expect(server["graphql"] == orders && server["graphql_errors"] == 0)
        #expect(server["logins"] == 10 && server["logouts"] == 10 && server["conflicts"] == 0)
        let checks = s["checks"] as? [String: [String: Int]] ?? [:]
        #expect(checks.count == 3 && checks.values.allSatisfy { $0["fail"] == 0 && $0["pass"] == orders }, "\(checks)")
        await shop.stop()
    }

    @Test("an exclusive pool across three worker processes: no account used by two VUs at once (seen by the server); a killed worker's accounts come back")
    func poolAcrossWorkers() async throws {
        let redis = try await EmbeddedRedis.start()
        let shop = try await ExampleServer.start("checkout-server")
        let c = redis.connect()
        // Exactly as many accounts as VUs: the VUs that replace a killed worker's can only get its accounts.
        let accounts = try temporaryFile("user,password\n" + (1...24).map { "u\($0),secret-u\($0)\n" }.joined(), suffix: ".csv")
        let (loaded, loadOut) = try await J4Binary.run(["pool", "load", "accounts", accounts, "--redis", redis.url], binary: Self.checkoutBinary)
        #expect(loaded == 0, "\(loadOut)")
        let supervisor = try J4Binary.start(["supervisor", "--redis", redis.url])
        var workers: [String: ChildProcess] = [:]
        for id in ["w0", "w1", "w2"] { workers[id] = try J4Binary.start(["worker", "--redis", redis.url, "--id", id], binary: Self.checkoutBinary) }
        // All three connected before the run starts: a worker joining later makes the others
        // shed shards, and their VUs log in again elsewhere.
        try await waitForWorkers(["w0", "w1", "w2"], on: c)
        let file = try temporaryFile(Self.checkoutDefinition(shop, vus: 24, seconds: 16, shards: 12))
        let run = try await submitRun(file, ["--redis", redis.url], binary: Self.checkoutBinary)
        func holders() async throws -> [String: Int64] { try await Pools.show("accounts", on: c)?.holders ?? [:] }
        // Every worker holds accounts: the VUs are spread over all three, and every VU has logged
        // in (a VU checks its account out before it logs in: killing w1 between the two would
        // leave nothing to log in again).
        var spread: [String: Int64] = [:]
        try await waitFor("accounts held by all three workers, every VU logged in", timeout: .seconds(20), every: .milliseconds(100)) {
            spread = try await holders()
            let logins = try await shop.stats()["logins"]
            return spread.count == 3 && spread.values.reduce(0, +) == 24 && logins == 24
        }
        #expect(spread.count == 3 && spread.values.reduce(0, +) == 24, "\(spread)")
        let loggedIn = try await shop.stats()["logins"]
        #expect(loggedIn == 24)
        workers["w1"]!.send(SIGKILL)
        _ = await workers["w1"]!.wait()
        workers["w1"] = nil
        // Its holds lapse after the TTL; w0 and w2 take its shards and their new VUs its accounts.
        var after: [String: Int64] = [:]
        try? await waitFor("w1's accounts held by the others", timeout: .seconds(30), every: .milliseconds(100)) {
            after = try await holders()
            return after["w1"] == nil && after.values.reduce(0, +) == 24
        }
        print("figures pool: accounts by worker before the kill \(spread), after \(after)")
        #expect(after["w1"] == nil && after.values.reduce(0, +) == 24, "\(after)")
        // The VUs w1 had are set up again on w0 and w2 with the same numbers: every VU 0..<24 holds an account.
        let holders = try await c.send(["HVALS", PoolKeys(pool: "accounts").holders]).array ?? []
        let vuNumbers = Set(holders.compactMap { $0.string?.split(separator: "|").dropFirst().first.flatMap { Int($0) } })
        #expect(vuNumbers == Set(0..<24), "\(vuNumbers.sorted())")
        try await waitFor("the run to finish", timeout: .seconds(40), every: .milliseconds(200)) {
            try await c.send(["HGET", RunKeys(run: run).ctl, "state"]).string == "finished"
        }
        for (_, w) in workers { w.send(SIGTERM); #expect(await w.wait() == 0) }
        let server = try await shop.stats()
        print("figures pool: server \(server)")
        #expect(server["conflicts"] == 0, "an account was used by two sessions at once: \(server)")
        #expect((server["logins"] ?? 0) >= 32, "the killed worker's 8 accounts were logged in again: \(server)")
        // Every account is back in the pool.
        #expect(try await Pools.show("accounts", on: c)?.held == 0)
        supervisor.send(SIGTERM)
        _ = await supervisor.wait()
        await shop.stop()
        await redis.stop()
    }
}

extension EndToEndTests {
    @Test("examples/chat with j4 run: every stream dropped mid-run reconnects and is counted; delivery latency measured; the server's counts agree")
    func chatExample() async throws {
        let chatServer = try await ExampleServer.start("chat-server")
        let base = chatServer.url
        func stats() async throws -> [String: Int] { try await chatServer.stats() }
        let vus = 10
        let file = try temporaryFile("""
            name: chat-test
            scenario: chat
            model: vus
            start: \(vus)
            stages: [{ duration: 8s, target: \(vus) }]
            shards: 4
            params: { baseURL: "\(base)", intervalMs: 500 }
            """)
        let accounts = InvalidFixtures.directory.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("examples/chat/data/accounts.csv").path
        let summaryPath = NSTemporaryDirectory() + "j4-chat-\(UUID().uuidString).json"
        let run = try J4Binary.start(["run", file, "--workers", "2", "--pool", "accounts=\(accounts)", "--summary-json", summaryPath, "--quiet"], binary: J4Binary.sibling("chat-j4"))
        // Once every VU is in the room and has sent a message or two, drop every stream.
        var members = 0
        try? await waitFor("every VU in the room, each having sent a message") {
            let now = try await stats()
            members = now["members"] ?? 0
            return members == vus && (now["messages"] ?? 0) >= vus
        }
        #expect(members == vus)
        var drop = HTTPClientRequest(url: base + "/__drop")
        drop.method = .POST
        _ = try await HTTPClient.shared.execute(drop, timeout: .seconds(10))
        #expect(await run.wait() == 0, "\(run.output.tail())")
        let s = try Self.summary(summaryPath)
        let server = try await stats()
        let counters = s["counters"] as? [String: Int] ?? [:]
        let trends = s["trends"] as? [String: [String: Any]] ?? [:]
        print("figures chat: counters \(counters), delivery \(trends["delivery"]?["latency_ms"] ?? "-"), reconnect gap \(trends["chat.reconnect_gap"]?["latency_ms"] ?? "-"), server \(server)")
        // Every VU's stream was dropped once, reconnected, and the gap was measured.
        #expect(server["drops"] == vus && counters["chat.disconnects"] == vus, "\(counters)")
        #expect(trends["chat.reconnect_gap"]?["count"] as? Int == vus)
        #expect(counters["chat.connects"] == 2 * vus && server["connections"] == 2 * vus)
        // What J4 counts is what the server counts, but for a message written just as the
        // server closed its stream (at most one per VU: the drop is one instant).
        let sent = counters["sent"] ?? 0, heard = server["messages"] ?? 0
        #expect(server["logins"] == vus && sent > 0 && sent - heard >= 0 && sent - heard <= vus, "sent \(sent), the server heard \(heard)")
        let received = counters["received"] ?? 0, delivered = server["deliveries"] ?? 0
        // A message the server sends to a member just as its stream is dropped can be lost.
        #expect(received <= delivered && received >= delivered * 9 / 10, "received \(received) of \(delivered)")
        #expect((trends["delivery"]?["count"] as? Int) == received)
        let steps = s["steps"] as? [String: [String: Any]] ?? [:]
        // A send in a VU's reconnection gap fails as ws_disconnected and is not counted as sent.
        let send = steps["send"] ?? [:]
        #expect((send["count"] as? Int ?? 0) - (send["failed"] as? Int ?? 0) == sent && steps["login"]?["count"] as? Int == vus, "\(send)")
        #expect((send["errors"] as? [String: Int] ?? [:]).keys.allSatisfy { $0 == "ws_disconnected" }, "\(send)")
        // Each handshake is a step too: the first ones and the reconnections.
        #expect(steps["chat connect"]?["count"] as? Int == 2 * vus && steps["chat connect"]?["failed"] as? Int == 0, "\(steps["chat connect"] ?? [:])")
        await chatServer.stop()
    }
}

extension EndToEndTests {
    @Test("HTTPS against j4 sink --tls-cert with a private CA: HTTP/1.1 on the lean client by default, HTTP/2 with version \"2\", every request counted once; without the CA every request fails as tls")
    func https() async throws {
        let dir = NSTemporaryDirectory() + "j4-tls-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let openssl = try ChildProcess("/usr/bin/openssl", [
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", dir + "/key.pem", "-out", dir + "/cert.pem", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ])
        #expect(await openssl.wait() == 0, "\(openssl.output.tail())")
        let sink = try await SinkProcess.start(["--tls-cert", dir + "/cert.pem", "--tls-key", dir + "/key.pem"])
        #expect(sink.url.hasPrefix("https://"))
        var expected: [String: Int64] = [:]
        for (version, trust, count) in [("1.1", true, 300), ("2", true, 300), ("1.1", false, 42)] {
            var text = Self.arrivalRate(sink, name: "https-\(version)", start: count / 3, stages: "  - { duration: 3s, target: \(count / 3) }", shards: 4)
            text += "\n  version: \"\(version)\""
            let file = try temporaryFile(text)
            let summaryPath = NSTemporaryDirectory() + "j4-https-\(UUID().uuidString).json"
            let (code, out) = try await J4Binary.run(["run", file, "--workers", "2", "--summary-json", summaryPath, "--quiet"] + (trust ? ["--ca-file", dir + "/cert.pem"] : []))
            let s = try Self.summary(summaryPath)
            let stats = try await sink.stats()
            print("figures https \(version)\(trust ? "" : " untrusted"): sink by version \(stats.by_version), summary started \(s["started"] ?? "?") dropped \(s["dropped"] ?? "?") ok \(s["ok"] ?? "?") errors \(s["errors"] ?? "?")")
            if trust {
                expected[version, default: 0] += Int64(count)
                #expect(code == 0, "\(out)")
                #expect(stats.by_version == expected, "every request over HTTP/\(version), once")
                #expect(s["started"] as? Int == count && s["ok"] as? Int == count)
            } else {
                // The handshake fails: nothing reaches the server, every iteration started counts as tls.
                let started = s["started"] as? Int ?? -1
                #expect(stats.by_version == expected)
                #expect(started + (s["dropped"] as? Int ?? -1) == count && started > 0, "\(out)")
                #expect(s["failed"] as? Int == started && (s["errors"] as? [String: Int]) == ["tls": started], "\(out)")
            }
        }
        // A CA file that is not PEM: refused before anything is written.
        let (bad, badOut) = try await J4Binary.run(["run", try temporaryFile(Self.arrivalRate(sink, name: "bad-ca", start: 1, stages: "  - { duration: 1s, target: 1 }")), "--ca-file", dir + "/key.pem.missing"])
        #expect(bad == 2 && badOut.contains("--ca-file") && badOut.contains("PEM"), "\(badOut)")
        await sink.stop()
        try? FileManager.default.removeItem(atPath: dir)
    }
}

extension EndToEndTests {
    @Test("GraphQL against the example's GraphQLSwift server: a 200 with an errors array fails the step as graphql; data comes back otherwise")
    func graphQLErrors() async throws {
        let shop = try await ExampleServer.start("checkout-server")
        let recorder = MetricsRecorder()
        let vu = VUContext(run: "r", worker: "w", vu: 0, params: .null, logger: Logger(label: "test"), http: HTTPClient.shared,
                           metrics: ScenarioMetrics(recorder: recorder) { 1 })
        let data = try await vu.graphQL("products", url: shop.url + "/graphql", query: "{ products { id } }")
        #expect(data["products"]?.arrayValue?.count == 10)
        // Not logged in: the server answers 200 with {"data": {"cart": null}, "errors": [...]}.
        await #expect(throws: GraphQLErrors.self) { _ = try await vu.graphQL("cart", url: shop.url + "/graphql", query: "{ cart { totalCents } }") }
        let fields = Dictionary(uniqueKeysWithValues: recorder.drain().flatMap(\.fields)).mapValues(String.init)
        let (steps, _, _, _) = RunSummary.scenarioMetrics(fields)
        #expect(steps["products"]?.count == 1 && steps["products"]?.failed == 0)
        #expect(steps["cart"]?.failed == 1 && steps["cart"]?.errors == ["graphql": 1])
        await shop.stop()
    }
}
