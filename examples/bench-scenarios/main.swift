import J4

// Scenarios written as users write them, for scripts/bench/throughput.sh: what the scenario
// API costs per request next to the built-in `http` scenario and to hey, wrk and h2load.

// One request per iteration to `params.url`.
let fetch = Scenario("fetch") { vu in
    let url = vu.params["url"]?.stringValue ?? "http://127.0.0.1:8080/"
    return { it in
        _ = try await it.request("get", "GET", url)
    }
}

// Two requests and a check per iteration.
let browse = Scenario("browse") { vu in
    let url = vu.params["url"]?.stringValue ?? "http://127.0.0.1:8080/"
    return { it in
        let page = try await it.request("page", "GET", url)
        it.check("page has a body", page.body.readableBytes > 0)
        _ = try await it.request("again", "GET", url, headers: [("accept", "text/plain")])
    }
}

await J4CLI.main(scenarios: [fetch, browse])
