import AsyncHTTPClient
import J4Core
import Logging

/// What a VU knows about itself; handed to a scenario's per-VU setup.
public struct VUContext: Sendable {
    /// The run id.
    public let run: String
    /// The worker running this VU.
    public let worker: String
    /// The VU number (arrival-rate: the shard number), stable when its shard moves.
    public let vu: Int64
    /// `params` from the run definition.
    public let params: JSONValue
    /// A logger labelled with run, worker and VU.
    public let logger: Logger
    /// The shared HTTP client (keep-alive pool).
    public let http: HTTPClient

    /// Headers every request J4 sends carries, so a server can attribute load.
    public var attributionHeaders: [(String, String)] {
        [("x-j4-run", run), ("x-j4-worker", worker), ("x-j4-vu", String(vu))]
    }
}

/// What one iteration knows.
public struct IterationContext: Sendable {
    /// Its VU.
    public let vu: VUContext
    /// The global iteration number (arrival-rate) or the VU's own count (vus).
    public let iteration: Int64
    /// The tick it belongs to (arrival-rate: the tick that granted it; vus: the tick it began in).
    public let tick: Int64

    /// The VU's attribution headers plus `x-j4-tick` and `x-j4-iteration`, so a server can
    /// count what it received per tick and check it against J4's accounting.
    public var attributionHeaders: [(String, String)] {
        vu.attributionHeaders + [("x-j4-tick", String(tick)), ("x-j4-iteration", String(iteration))]
    }
}

/// The body of one iteration; throwing means the iteration failed.
public typealias IterationBody = @Sendable (IterationContext) async throws -> Void

/// An error whose class J4 counts by name (`status_503`, `timeout`, `connect`…).
public protocol ClassifiedError: Error {
    /// A short name for the kind of failure, used as the `err:<class>` counter.
    var errorClass: String { get }
}

/// A named load scenario: a per-VU setup that returns the iteration body.
public struct Scenario: Sendable {
    /// The name a run definition refers to with `scenario:`.
    public let name: String
    /// Checks `params` at submit time; every problem names its field.
    public let validate: @Sendable (JSONValue) -> [DefinitionProblem]
    /// Runs once per VU; returns what each iteration of that VU runs.
    public let setup: @Sendable (VUContext) async throws -> IterationBody

    /// A scenario named `name`.
    public init(
        _ name: String,
        validate: @escaping @Sendable (JSONValue) -> [DefinitionProblem] = { _ in [] },
        setup: @escaping @Sendable (VUContext) async throws -> IterationBody
    ) {
        self.name = name
        self.validate = validate
        self.setup = setup
    }
}

/// The scenarios one binary can run: the built-in ones plus those the user registers.
public struct ScenarioCatalog: Sendable {
    /// By name.
    public private(set) var scenarios: [String: Scenario]

    /// The built-in scenarios plus `extra` (an extra scenario replaces a built-in of the same name).
    public init(_ extra: [Scenario] = []) {
        var all: [String: Scenario] = [:]
        for s in [HTTPScenario.scenario] + extra { all[s.name] = s }
        scenarios = all
    }

    /// The scenario named `name`, if this binary has it.
    public subscript(name: String) -> Scenario? { scenarios[name] }
}

/// Turns any error into a counter name.
func errorClass(of error: any Error) -> String {
    if let c = error as? any ClassifiedError { return c.errorClass }
    if let h = error as? HTTPClientError {
        switch h {
        case .deadlineExceeded, .readTimeout, .connectTimeout, .writeTimeout: return "timeout"
        case .remoteConnectionClosed: return "connection_closed"
        default: return "http_client"
        }
    }
    let text = String(describing: error).lowercased()
    if text.contains("connection refused") || text.contains("connect") { return "connect" }
    if text.contains("timeout") || text.contains("timed out") { return "timeout" }
    return "error"
}
