import J4

// A scenario that waits 10 ms per iteration.
let pause = Scenario("pause") { vu in
    // Runs once per VU; what it returns runs once per iteration.
    return { iteration in
        try await Task.sleep(for: .milliseconds(10))
    }
}

await J4CLI.main(scenarios: [pause])
