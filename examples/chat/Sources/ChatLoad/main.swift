import Foundation
import J4
import Synchronization

// The chat scenario. Each VU takes an account from the `accounts` pool, logs in,
// keeps a WebSocket open (reconnecting when it drops), pings it from a background routine,
// and sends a message every `interval`; the messages it receives from the other VUs give
// the delivery latency (sender's clock to receiver's clock: exact on one machine, within
// the clock skew between machines otherwise).
let chat = Scenario("chat") { vu in
    let base = vu.params["baseURL"]?.stringValue ?? "http://127.0.0.1:8082"
    let interval = Duration.milliseconds(vu.params["intervalMs"]?.intValue ?? 2000)
    let account = try await vu.pool("accounts").checkout()
    let login = try await vu.request("login", "POST", base + "/login", json: [
        "user": .string(account.string("user") ?? ""), "password": .string(account.string("password") ?? ""),
    ])
    guard let token = try login.json()["token"]?.stringValue else { throw ScenarioError("no_token", "login gave no token") }

    let pings = Mutex<[Int64: ContinuousClock.Instant]>([:])
    let socket = vu.webSocket("chat", url: base.replacingOccurrences(of: "http", with: "ws") + "/chat?token=" + token) { text in
        guard let message = try? JSONValue.parse(text) else { return }
        switch message["type"]?.stringValue {
        case "msg":
            let sentUs = message["sent_us"]?.intValue ?? 0
            let nowUs = Int64(Date().timeIntervalSince1970 * 1_000_000)
            vu.metrics.record("delivery", .microseconds(max(0, nowUs - sentUs)))
            vu.metrics.count("received")
        case "pong":
            if let id = message["id"]?.intValue, let sent = pings.withLock({ $0.removeValue(forKey: id) }) {
                vu.metrics.record("ping_rtt", sent.duration(to: .now))
            }
        default:
            break
        }
    }
    // Keep-alive: an application ping every second while the VU lives.
    vu.background("pinger") {
        var id: Int64 = 0
        while true {
            try await Task.sleep(for: .seconds(1))
            id += 1
            let now = ContinuousClock.now
            pings.withLock { $0[id] = now }
            try? await socket.send("{\"type\":\"ping\",\"id\":\(id)}")
        }
    }
    try await socket.waitUntilConnected()

    return { it in
        try await it.step("send") {
            let sentUs = Int64(Date().timeIntervalSince1970 * 1_000_000)
            try await socket.send("{\"type\":\"msg\",\"from\":\"\(vu.worker)/\(vu.vu)\",\"n\":\(it.iteration),\"sent_us\":\(sentUs)}")
        }
        it.metrics.count("sent")
        try await Task.sleep(for: interval)
    }
}

await J4CLI.main(scenarios: [chat])
