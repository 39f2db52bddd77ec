import Foundation
import J4Runtime
import J4TestSupport
import Testing

/// What a user's own package gets from the J4 product. The compiler is run as it would be
/// for a package outside this one: only the built module files, no `-package-name`, so
/// `package` declarations (the worker's hooks into the scenario API) are out of reach just
/// as they are for a dependent package.
@Suite("The J4 product, compiled against from outside the package")
struct PublicAPITests {
    /// The built modules and the C module maps a client of them needs.
    static func compilerArguments() throws -> [String] {
        let build = URL(fileURLWithPath: J4Binary.path).resolvingSymlinksInPath().deletingLastPathComponent()
        var scratch = build
        while !FileManager.default.fileExists(atPath: scratch.appendingPathComponent("checkouts").path) {
            guard scratch.pathComponents.count > 1 else { throw TestSupportError(description: "no checkouts above \(build.path)") }
            scratch = scratch.deletingLastPathComponent()
        }
        var arguments = ["-typecheck", "-I", build.appendingPathComponent("Modules").path]
        let fm = FileManager.default
        // Module maps SwiftPM generated for C targets (CNIOAtomics and the like).
        for entry in try fm.contentsOfDirectory(atPath: build.path) where entry.hasSuffix(".build") {
            let map = build.appendingPathComponent(entry).appendingPathComponent("module.modulemap").path
            if fm.fileExists(atPath: map) { arguments += ["-Xcc", "-fmodule-map-file=\(map)"] }
        }
        // The C targets' own include folders (their module maps and headers).
        let checkouts = scratch.appendingPathComponent("checkouts")
        for case let path as String in fm.enumerator(atPath: checkouts.path) ?? FileManager.DirectoryEnumerator() where path.hasSuffix("/include") {
            arguments += ["-Xcc", "-I\(checkouts.appendingPathComponent(path).path)"]
        }
        // The hiredis system library's module map: J4's modules import it (internally, but a
        // client of modules built without library evolution still loads it).
        arguments += ["-Xcc", "-fmodule-map-file=\(repository.appendingPathComponent("Sources/CHiredis/module.modulemap").path)"]
        return arguments
    }

    static func typecheck(_ files: [String]) async throws -> (code: Int32, output: String) {
        let child = try ChildProcess("/usr/bin/env", ["swiftc"] + (try compilerArguments()) + files, environment: ProcessInfo.processInfo.environment)
        let code = await child.wait()
        _ = await child.output.wait(timeout: .seconds(5)) { _ in false }
        return (code, child.output.all)
    }

    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test("every example's scenarios compile against J4 (and J4GRPC) alone, as a dependent package's would", arguments: [
        "examples/custom-scenario", "examples/guide", "examples/chat/Sources/ChatLoad", "examples/http-checkout/Sources/CheckoutLoad",
    ])
    func examples(_ folder: String) async throws {
        let dir = Self.repository.appendingPathComponent(folder)
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".swift") }.map { dir.appendingPathComponent($0).path }
        #expect(!files.isEmpty)
        let (code, output) = try await Self.typecheck(files)
        #expect(code == 0, "\(output)")
    }

    @Test("the cluster's internals are not part of the J4 product: each is out of scope after `import J4`")
    func internalsHidden() async throws {
        // Coordination, worker, supervisor, Redis, pools' Redis side, the metrics plumbing,
        // the built-in scenarios' parsers and the calibration server.
        let internals = [
            "RunClient", "LeaseReply", "RunStore", "PoolClient", "GlobalScripts", "LeaseTable", "Admission", "Worker", "RunWorker",
            "Supervisor", "RedisConnection", "RedisEndpoint", "PoolKeeper", "MetricsRecorder", "Telemetry", "ScenarioCatalog",
            "HTTPScenario", "Sink", "MetricsEndpoint",
        ]
        let file = NSTemporaryDirectory() + "j4-outside-\(UInt32.random(in: 0...UInt32.max)).swift"
        defer { try? FileManager.default.removeItem(atPath: file) }
        try ("import J4\n" + internals.map { "_ = \($0).self\n" }.joined()).write(toFile: file, atomically: true, encoding: .utf8)
        let (code, output) = try await Self.typecheck([file])
        #expect(code != 0)
        try #require(!output.contains("missing required module"), "\(output)")
        for name in internals {
            #expect(output.contains("cannot find '\(name)' in scope"), "\(name) is visible through import J4:\n\(output)")
        }
        // The same file with the scenario API only compiles: the failures above are the names.
        try """
            import J4
            let s = Scenario("s") { vu in
                let item = try await vu.pool("accounts").checkout()
                return { it in
                    let r = try await it.request("get", "GET", "http://127.0.0.1:1/", headers: item.headers)
                    _ = it.check("200", r.status == 200)
                    it.metrics.count("seen")
                    try vu.targets.check(url: "http://127.0.0.1:2/")
                    throw ScenarioError("late", "too slow")
                }
            }
            let problems: [DefinitionProblem] = []
            _ = (s, problems)
            """.write(toFile: file, atomically: true, encoding: .utf8)
        let (apiCode, apiOutput) = try await Self.typecheck([file])
        #expect(apiCode == 0, "\(apiOutput)")
    }
}
