import AsyncHTTPClient
import J4Core
import Logging

/// The body of one iteration; throwing means the iteration failed.
public typealias IterationBody = @Sendable (IterationContext) async throws -> Void

/// Runs an iteration body with its context as the current one.
package func runIteration(_ body: IterationBody, _ context: IterationContext) async throws {
    try await IterationContext.$current.withValue(context) { try await body(context) }
}

/// An error whose class J4 counts by name (`status_503`, `timeout`, `connect`…).
public protocol ClassifiedError: Error {
    /// A short name for the kind of failure, used as the `err:<class>` counter.
    var errorClass: String { get }
}

/// A named load scenario: a per-VU setup that returns the iteration body.
///
/// ```swift
/// let browse = Scenario("browse") { vu in
///     // Once per VU: log in, open sessions, start background routines.
///     let token = try await vu.step("login") { try await login(vu) }
///     return { iteration in
///         // Again and again: one iteration.
///         try await iteration.step("home") { try await home(token, iteration) }
///     }
/// }
/// ```
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
package struct ScenarioCatalog: Sendable {
    /// By name.
    public private(set) var scenarios: [String: Scenario]

    /// The built-in scenarios plus `extra` (an extra scenario replaces a built-in of the same name).
    public init(_ extra: [Scenario] = []) {
        var all: [String: Scenario] = [:]
        for s in [HTTPScenario.scenario, SleepScenario.scenario] + extra { all[s.name] = s }
        scenarios = all
    }

    /// The scenario named `name`, if this binary has it.
    public subscript(name: String) -> Scenario? { scenarios[name] }
}

/// What one iteration knows, and the VU's tools at hand.
public struct IterationContext: Sendable {
    /// Its VU.
    public let vu: VUContext
    /// The global iteration number (arrival-rate) or the VU's own count (vus).
    public let iteration: Int64
    /// The tick it belongs to (arrival-rate: the tick that granted it; vus: the tick it began in).
    public let tick: Int64
    /// The shard it belongs to (arrival-rate: iteration mod shards; vus: the VU's shard).
    public let shard: Int
    /// The W3C trace id of this iteration: every request it sends is a span of this trace.
    public let traceID: String

    /// A context (for tests of scenario code and for the runtime).
    public init(vu: VUContext, iteration: Int64, tick: Int64, shard: Int) {
        self.vu = vu
        self.iteration = iteration
        self.tick = tick
        self.shard = shard
        self.traceID = TraceContext.newTraceID()
    }

    /// The iteration whose code is running, for protocol clients that cannot be handed a
    /// context (a gRPC interceptor).
    @TaskLocal public static var current: IterationContext?

    /// The names of ``iterationHeaders``.
    public static let iterationHeaderNames = ["x-j4-tick", "x-j4-shard", "x-j4-iteration"]

    /// `x-j4-tick`, `x-j4-shard` and `x-j4-iteration`.
    public var iterationHeaders: [(String, String)] {
        Array(zip(IterationContext.iterationHeaderNames, [String(tick), String(shard), String(iteration)]))
    }

    /// The VU's attribution headers plus the iteration's, so a server can attribute load and
    /// check it against J4's accounting.
    public var attributionHeaders: [(String, String)] { vu.attributionHeaders + iterationHeaders }

    /// ``VUContext/step(_:_:)``.
    public func step<T: Sendable>(_ name: String, _ body: () async throws -> T) async throws -> T {
        try await vu.step(name, body)
    }

    /// ``VUContext/check(_:_:)``.
    @discardableResult
    public func check(_ name: String, _ condition: Bool) -> Bool { vu.check(name, condition) }

    /// The VU's custom metrics.
    public var metrics: ScenarioMetrics { vu.metrics }
    /// The run's `params`.
    public var params: JSONValue { vu.params }
    /// The VU's logger.
    public var logger: Logger { vu.logger }
}

/// Turns any error into a counter name.
public func errorClass(of error: any Error) -> String {
    if let c = error as? any ClassifiedError { return c.errorClass }
    if error is CancellationError { return "cancelled" }
    if let h = error as? HTTPClientError {
        switch h {
        case .deadlineExceeded, .readTimeout, .connectTimeout, .writeTimeout: return "timeout"
        case .remoteConnectionClosed: return "connection_closed"
        case .cancelled: return "cancelled"
        default: return "http_client"
        }
    }
    let text = String(describing: error).lowercased()
    if text.contains("connection refused") || text.contains("connect") { return "connect" }
    if text.contains("timeout") || text.contains("timed out") { return "timeout" }
    return "error"
}

/// An error a scenario throws to fail an iteration (or a VU's setup) under a class of its own.
public struct ScenarioError: ClassifiedError, CustomStringConvertible {
    /// The counter name (`err:<class>` for iterations, `s:<step>:e:<class>` for steps).
    public let errorClass: String
    /// What happened.
    public let message: String

    /// An error counted as `errorClass`.
    public init(_ errorClass: String, _ message: String) {
        self.errorClass = MetricName.clean(errorClass)
        self.message = message
    }

    public var description: String { "\(errorClass): \(message)" }
}
