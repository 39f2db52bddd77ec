import AsyncHTTPClient
import Foundation
import J4Redis
import J4Runtime
import J4Sink
import NIOCore
import NIOSSL

/// The `j4` executable built next to the tests (`swift build --build-tests` builds it).
public enum J4Binary {
    /// Its path: `$J4_BIN`, or `j4` beside the test bundle, or under `.build/debug`.
    public static let path: String = {
        if let p = ProcessInfo.processInfo.environment["J4_BIN"] { return p }
        let fm = FileManager.default
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("j4").path
            if fm.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return here.appendingPathComponent(".build/debug/j4").path
    }()

    /// Another executable of this package, built next to `j4` (the examples' servers and
    /// scenario binaries).
    public static func sibling(_ name: String) -> String {
        URL(fileURLWithPath: path).deletingLastPathComponent().appendingPathComponent(name).path
    }

    /// Starts `j4 ARGS…` (or `binary ARGS…`); its output is drained and kept.
    public static func start(_ arguments: [String], environment: [String: String] = [:], binary: String? = nil) throws -> ChildProcess {
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        return try ChildProcess(binary ?? path, arguments, environment: env)
    }

    /// Runs `j4 ARGS…` (or `binary ARGS…`) to the end; its exit code and output.
    public static func run(_ arguments: [String], environment: [String: String] = [:], binary: String? = nil) async throws -> (code: Int32, output: String) {
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        let child = try ChildProcess(binary ?? path, arguments, environment: env)
        let code = await child.wait()
        // The drain thread may still be reading the last bytes: wait for the pipe to close.
        _ = await child.output.wait(timeout: .seconds(5)) { _ in false }
        return (code, child.output.all)
    }
}

extension J4Binary {
    /// Starts a server (`j4 sink`, an example's server, a process with `--metrics-port 0`)
    /// that prints `<marker>HOST:PORT`, and returns it with that port once the line is out.
    public static func startListening(
        _ arguments: [String], environment: [String: String] = [:], binary: String? = nil, marker: String = "listening on http"
    ) async throws -> (ChildProcess, Int) {
        let child = try start(arguments, environment: environment, binary: binary)
        guard let text = await child.output.wait(timeout: .seconds(20), until: { $0.contains(marker) }),
              let at = text.range(of: marker),
              let range = text[at.upperBound...].range(of: #"[0-9a-z.\[\]]+:(\d+)"#, options: .regularExpression),
              let port = Int(text[at.upperBound...][range].split(separator: ":").last ?? "")
        else {
            child.send(SIGKILL)
            throw TestSupportError(description: "\(binary ?? path) \(arguments.joined(separator: " ")) did not start: \(child.output.tail())")
        }
        return (child, port)
    }
}

/// Waits until `condition` holds, asking again every `every`; throws after `timeout`. For
/// states that only polling can observe (a Redis field, a server's counters).
public func waitFor(
    _ what: @autoclosure () -> String, timeout: Duration = .seconds(30), every: Duration = .milliseconds(50),
    _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while try await !condition() {
        guard ContinuousClock.now < deadline else { throw TestSupportError(description: "timed out after \(timeout) waiting for \(what())") }
        try await Task.sleep(for: every)
    }
}

/// A `j4 sink` child process on a free port.
public final class SinkProcess: Sendable {
    /// The child.
    public let child: ChildProcess
    /// Its port on 127.0.0.1.
    public let port: Int

    /// Starts `j4 sink --port 0 EXTRA…` and waits for its "listening" line.
    public static func start(_ extra: [String] = []) async throws -> SinkProcess {
        let (child, port) = try await J4Binary.startListening(["sink", "--port", "0"] + extra)
        return SinkProcess(child: child, port: port)
    }

    init(child: ChildProcess, port: Int) {
        self.child = child
        self.port = port
    }

    /// The load URL.
    public var url: String { "\(child.output.all.contains("listening on https://") ? "https" : "http")://127.0.0.1:\(port)/" }

    /// A client for the sink's own endpoints: over HTTPS it does not check the sink's
    /// (self-signed, test-only) certificate.
    static let insecure: HTTPClient = {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .none
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: HTTPClient.Configuration(tlsConfiguration: tls))
    }()

    /// `GET /__sink/stats`.
    public func stats() async throws -> SinkStats {
        let response = try await SinkProcess.insecure.execute(HTTPClientRequest(url: url + "__sink/stats"), timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 1 << 22)
        return try JSONDecoder().decode(SinkStats.self, from: Data(buffer: body))
    }

    /// `GET /__sink/attribution`.
    public func attribution() async throws -> SinkAttribution {
        let response = try await SinkProcess.insecure.execute(HTTPClientRequest(url: url + "__sink/attribution"), timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 1 << 26)
        return try JSONDecoder().decode(SinkAttribution.self, from: Data(buffer: body))
    }

    /// Stops the sink.
    public func stop() async {
        child.send(SIGTERM)
        _ = await child.wait()
    }
}

extension Data {
    init(buffer: ByteBuffer) {
        self = Data(buffer.readableBytesView)
    }
}

extension EmbeddedRedis {
    /// A connection for a test.
    public func connect(_ name: String = "j4-test") -> RedisConnection {
        RedisConnection(endpoint: endpoint, options: RedisConnectionOptions(clientName: name))
    }

    /// The URL to hand to `j4 --redis`.
    public var url: String { "unix://\(socketPath)" }
}

/// Writes `text` to a new temporary file and returns its path.
public func temporaryFile(_ text: String, suffix: String = ".yaml") throws -> String {
    let path = NSTemporaryDirectory() + "j4-test-\(UUID().uuidString)\(suffix)"
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

/// A test fixture could not be set up.
public struct TestSupportError: Error, CustomStringConvertible {
    /// What went wrong.
    public var description: String
    /// An error saying `description`.
    public init(description: String) { self.description = description }
}

/// The malformed definitions in `Tests/Fixtures/invalid` and the field each error must name
/// (listed in its `expectations.txt`).
public enum InvalidFixtures {
    /// The fixture folder.
    public static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Tests/Fixtures/invalid")

    /// One malformed definition.
    public struct Case: Sendable, CustomStringConvertible {
        /// Its file name.
        public var file: String
        /// The field its error must name.
        public var field: String
        /// `core` when the definition itself is wrong, `cli` when only the scenario's params are.
        public var layer: String
        /// Its full path.
        public var path: String { directory.appendingPathComponent(file).path }
        public var description: String { file }
    }

    /// Every case of `expectations.txt`.
    public static var all: [Case] {
        let text = (try? String(contentsOf: directory.appendingPathComponent("expectations.txt"), encoding: .utf8)) ?? ""
        return text.split(separator: "\n").filter { !$0.hasPrefix("#") }.compactMap { line in
            let p = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            return p.count == 3 ? Case(file: p[0], field: p[1], layer: p[2]) : nil
        }
    }
}

extension J4Binary {
    /// `j4 status RUN --json` read back as a dictionary (the run's summary).
    public static func summary(_ run: String, redis: EmbeddedRedis) async throws -> [String: Any] {
        try await summary(run, url: redis.url)
    }

    /// `j4 status RUN --json --redis URL` read back as a dictionary.
    public static func summary(_ run: String, url: String, environment: [String: String] = [:]) async throws -> [String: Any] {
        let (code, output) = try await self.run(["status", run, "--json", "--redis", url], environment: environment)
        guard code == 0, let s = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any] else {
            throw TestSupportError(description: "j4 status \(run) --json exited \(code): \(output)")
        }
        return s
    }
}
