// The code of docs/SCENARIOS.md, compiled with the package (product `j4-guide`) so that the
// guide cannot rot: a test checks that every Swift block of the guide is in this file.
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import J4
import J4GRPC
import Synchronization

// MARK: first

let hello = Scenario("hello") { vu in
    // Once per VU: read params, log in, open sessions.
    let base = vu.params["baseURL"]?.stringValue ?? "http://127.0.0.1:8080"
    return { iteration in
        // Again and again: one iteration. Throwing fails it.
        _ = try await iteration.request("home", "GET", base + "/")
    }
}

// MARK: steps

let browse = Scenario("browse") { vu in
    let base = vu.params["baseURL"]?.stringValue ?? "http://127.0.0.1:8080"
    return { it in
        let page = try await it.request("catalog", "GET", base + "/catalog?page=\(it.iteration % 10)")
        it.check("catalog is not empty", page.body.readableBytes > 0)
        // Any code can be a step: timed, and its failures counted by error class.
        let items = try await it.step("parse catalog") { try page.json().arrayValue ?? [] }
        it.metrics.count("items seen", Int64(items.count))
        if items.isEmpty { throw ScenarioError("empty_catalog", "page \(it.iteration % 10) has no items") }
    }
}

// MARK: graphql

let cart = Scenario("cart") { vu in
    let url = (vu.params["baseURL"]?.stringValue ?? "http://127.0.0.1:8080") + "/graphql"
    return { it in
        // A response whose `errors` array is not empty fails the step, even with status 200.
        let data = try await it.graphQL("add to cart", url: url, query: """
            mutation Add($id: Int!) { addToCart(productId: $id, quantity: 1) { totalCents } }
            """, variables: ["id": .int(it.iteration % 10 + 1)])
        it.check("total is positive", (data["addToCart"]?["totalCents"]?.intValue ?? 0) > 0)
    }
}

// MARK: session

let session = Scenario("session") { vu in
    let base = vu.params["baseURL"]?.stringValue ?? "http://127.0.0.1:8082"
    let sent = Mutex<[Int64: ContinuousClock.Instant]>([:])
    // A WebSocket that lives as long as the VU and reconnects with backoff when it drops.
    let socket = vu.webSocket("feed", url: base.replacingOccurrences(of: "http", with: "ws") + "/feed") { text in
        if let id = Int64(text), let t = sent.withLock({ $0.removeValue(forKey: id) }) {
            vu.metrics.record("echo time", t.duration(to: .now))
        }
    }
    // A routine bound to the VU: cancelled when the VU ends.
    vu.background("keep-alive") {
        while true {
            try await Task.sleep(for: .seconds(5))
            try? await socket.send("ping")
        }
    }
    vu.onTeardown { vu.logger.info("VU \(vu.vu) ends") }
    try await socket.waitUntilConnected()
    return { it in
        sent.withLock { $0[it.iteration] = .now }
        try await socket.send(String(it.iteration))
        try await Task.sleep(for: .seconds(1))
    }
}

// MARK: stream

let ticker = Scenario("ticker") { vu in
    // Any stream: J4 reconnects it with backoff and counts ticker.connects, ticker.disconnects,
    // ticker.connect_failures and the ticker.reconnect_gap histogram.
    vu.reconnecting("ticker") { link in
        let response = try await vu.http.get(url: "http://127.0.0.1:8080/ticks").get()
        link.connected()
        if response.status != .ok { throw ScenarioError("ticker_status", "status \(response.status.code)") }
    }
    return { _ in try await Task.sleep(for: .seconds(1)) }
}

// MARK: pool

let shop = Scenario("shop") { vu in
    let base = vu.params["baseURL"]?.stringValue ?? "http://127.0.0.1:8081"
    // An account no other VU in the cluster holds while this VU lives.
    let account = try await vu.pool("accounts").checkout()
    let login = try await vu.request("login", "POST", base + "/login", json: [
        "user": .string(account.string("user") ?? ""), "password": .string(account.string("password") ?? ""),
    ])
    let token = try login.json()["token"]?.stringValue ?? ""
    vu.onTeardown {
        // Log out only while the account is still ours.
        if vu.holdsTrusted { _ = try? await vu.request("logout", "POST", base + "/logout", headers: [("authorization", "Bearer " + token)]) }
    }
    return { it in
        _ = try await it.request("products", "GET", base + "/products", headers: [("authorization", "Bearer " + token)])
    }
}

// MARK: grpc

/// Any grpc-swift 2 client, generated or not: add J4's interceptor and call it in a scenario.
func makeClient(port: Int) throws -> GRPCClient<HTTP2ClientTransport.Posix> {
    GRPCClient(
        transport: try HTTP2ClientTransport.Posix(target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: .plaintext),
        interceptors: [J4GRPCInterceptor()])
}

// MARK: main

await J4CLI.main(scenarios: [hello, browse, cart, session, ticker, shop])
