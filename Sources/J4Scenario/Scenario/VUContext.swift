import Foundation
import AsyncHTTPClient
import J4Core
import Logging
import Synchronization

/// What a VU knows and can do: handed to a scenario's per-VU setup, and kept by every
/// iteration of that VU.
///
/// A VU lives on one worker. Background routines it starts with ``background(_:_:)`` and
/// hooks it adds with ``onTeardown(_:)`` end with it: when its run ends here, when its shard
/// moves to another worker (`vus` model), or when the worker leaves.
public final class VUContext: Sendable {
    /// The run id.
    public let run: String
    /// The worker running this VU.
    public let worker: String
    /// The VU number. `vus` model: the global VU number, the same on whichever worker runs
    /// it. Arrival-rate: the VU's number in this worker's pool (0 ..< `maxInFlight`).
    public let vu: Int64
    /// `params` from the run definition.
    public let params: JSONValue
    /// A logger labelled with run, worker and VU.
    public let logger: Logger
    /// The shared HTTP client (keep-alive pool).
    public let http: HTTPClient
    /// Custom metrics: counters and duration histograms, merged across the cluster.
    public let metrics: ScenarioMetrics
    /// Where this worker may send load (`--allow-target`): J4's protocol clients check every
    /// target with it before sending; a scenario opening connections of its own should too.
    public let targets: TargetGuard

    struct Lifetime {
        var tasks: [Int: Task<Void, Never>] = [:]
        var nextTask = 0
        var teardowns: [@Sendable () async -> Void] = []
        var ended = false
    }
    let lifetime = Mutex(Lifetime())
    let pools: (any PoolSource)?
    let items = Mutex<[PoolItem]>([])
    /// Connections of `request` and `graphQL` (the lean client), closed at the end.
    let lean = LeanConnections()

    /// True to send this VU's `request` and `graphQL` calls over HTTP/2 (false, HTTP/1.1,
    /// unless set): to an `https://` URL, `h2` is offered by ALPN and HTTP/1.1 used when the
    /// server does not choose it; to an `http://` URL, HTTP/2 is spoken at once (prior
    /// knowledge, h2c), which a server that speaks only HTTP/1.1 refuses. Every request of the
    /// VU to a host then shares one connection, each on a stream of its own. Set it in the
    /// scenario's setup.
    public var http2: Bool {
        get { prefersHTTP2.load(ordering: .relaxed) }
        set { prefersHTTP2.store(newValue, ordering: .relaxed) }
    }
    private let prefersHTTP2 = Atomic<Bool>(false)

    /// A VU whose metrics go to `metrics` (without pools: ``pool(_:)`` then throws ``NoSuchPool``).
    package convenience init(
        run: String, worker: String, vu: Int64, params: JSONValue, logger: Logger, http: HTTPClient, metrics: ScenarioMetrics, targets: TargetGuard = .open
    ) {
        self.init(run: run, worker: worker, vu: vu, params: params, logger: logger, http: http, metrics: metrics, pools: nil, targets: targets)
    }

    package init(run: String, worker: String, vu: Int64, params: JSONValue, logger: Logger, http: HTTPClient, metrics: ScenarioMetrics, pools: (any PoolSource)?, targets: TargetGuard) {
        self.pools = pools
        self.targets = targets
        attributionHeaders = VUContext.attribution(run: run, worker: worker, vu: vu)
        self.run = run
        self.worker = worker
        self.vu = vu
        self.params = params
        var l = logger
        l[metadataKey: "vu"] = "\(vu)"
        self.logger = l
        self.http = http
        self.metrics = metrics
    }

    /// Headers every request J4 sends carries, so a server can attribute load: `x-j4-run`,
    /// `x-j4-worker`, `x-j4-vu`, and the same as W3C `baggage` (`j4.run`, `j4.worker`, `j4.vu`)
    /// for tracing systems.
    public let attributionHeaders: [(String, String)]

    /// `j4.run=…,j4.worker=…,j4.vu=…`, values percent-encoded as W3C baggage requires.
    public var baggage: String { attributionHeaders[3].1 }

    /// Built once per VU: every request sends them.
    static func attribution(run: String, worker: String, vu: Int64) -> [(String, String)] {
        func enc(_ s: String) -> String { s.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-_.~"))) ?? s }
        return [("x-j4-run", run), ("x-j4-worker", worker), ("x-j4-vu", String(vu)),
                ("baggage", "j4.run=\(enc(run)),j4.worker=\(enc(worker)),j4.vu=\(vu)")]
    }

    /// True once the VU has ended here; long-running code should return.
    public var isEnded: Bool { lifetime.withLock { $0.ended } }

    /// The VU whose code is running (setup, iterations, background routines), for protocol
    /// clients that cannot be handed a context, such as a gRPC interceptor.
    @TaskLocal public static var current: VUContext?

    /// Runs `body` with this VU as ``current`` (J4 does this for setup, iterations and
    /// background routines; use it to try scenario code outside a run).
    public func run<T: Sendable>(_ body: () async throws -> T) async rethrows -> T {
        try await VUContext.$current.withValue(self) { try await body() }
    }

    // MARK: - Steps and checks

    /// Starts timing the step `name`; the caller ends it once with ``OpenStep/end(errorClass:)``
    /// (for calls whose end is not a closure's, such as a stream).
    public func openStep(_ name: String) -> OpenStep {
        OpenStep(name: name, began: .now, metrics: metrics)
    }

    /// Runs `body` as the step `name`: its duration goes to the step's histogram, its outcome
    /// to the step's counts (failures by error class), and its error, if any, is rethrown.
    public func step<T: Sendable>(_ name: String, _ body: () async throws -> T) async throws -> T {
        let began = ContinuousClock.now
        do {
            let value = try await body()
            metrics.stepEnded(name, began: began, errorClass: nil)
            return value
        } catch {
            metrics.stepEnded(name, began: began, errorClass: errorClass(of: error))
            throw error
        }
    }

    /// Counts `condition` as a pass or a fail of the check `name` and returns it. A failed
    /// check does not fail the iteration (as in k6); throw to do that.
    @discardableResult
    public func check(_ name: String, _ condition: Bool) -> Bool {
        metrics.checked(name, condition)
        return condition
    }

    // MARK: - Lifetime

    /// Starts a routine that lives as long as the VU (a keep-alive ping, a stream reader).
    /// It is cancelled when the VU ends; an error it throws is counted as the counter
    /// `bg.<name>.failed` and logged.
    public func background(_ name: String, _ body: @escaping @Sendable () async throws -> Void) {
        lifetime.withLock { l in
            guard !l.ended else { return }
            let id = l.nextTask
            l.nextTask += 1
            l.tasks[id] = Task { [self] in
                // A routine outlives the iteration that may have started it: it is no iteration's.
                do { try await IterationContext.$current.withValue(nil) { try await body() } } catch where !(error is CancellationError) && !Task.isCancelled {
                    metrics.count("bg." + name + ".failed")
                    logger.warning("background routine failed", metadata: ["routine": "\(name)", "error": "\(error)"])
                } catch {}
                _ = lifetime.withLock { $0.tasks.removeValue(forKey: id) }
            }
        }
    }

    /// Runs `hook` when the VU ends (after its background routines are cancelled), latest first.
    public func onTeardown(_ hook: @escaping @Sendable () async -> Void) {
        let late = lifetime.withLock { l -> Bool in
            if l.ended { return true }
            l.teardowns.append(hook)
            return false
        }
        if late { Task { await hook() } }
    }

    // MARK: - Pools

    /// The shared data pool `name` (loaded with `j4 pool load`).
    public func pool(_ name: String) -> Pool { Pool(name: name, vu: self) }

    /// A shared data pool as a VU sees it.
    public struct Pool: Sendable {
        /// Its name.
        public let name: String
        let vu: VUContext

        /// An item for this VU. Exclusive pools: held by this VU alone until it gives it back
        /// or ends (or its worker loses it: dies, stalls past its deadline); while every item
        /// is held, it waits up to `wait`, then throws ``PoolEmpty``. Shared pools: the next
        /// item in turn.
        public func checkout(wait: Duration = .seconds(30)) async throws -> PoolItem {
            guard let keeper = vu.pools else { throw NoSuchPool(pool: name) }
            let item = try await keeper.checkout(pool: name, vu: vu.vu, wait: wait)
            vu.items.withLock { $0.append(item) }
            return item
        }

        /// Gives `item` back before the VU ends.
        public func giveBack(_ item: PoolItem) async {
            vu.items.withLock { $0.removeAll { $0.pool == item.pool && $0.index == item.index && $0.hold == item.hold } }
            await vu.pools?.giveBack([item])
        }
    }

    /// The items this VU holds.
    public var heldItems: [PoolItem] { items.withLock { $0 } }

    /// False once a pool item of this VU may have gone to another VU (its worker could not
    /// renew the hold in time): the VU must not use its items any more, not even to log out.
    /// J4 ends such a VU before its next iteration.
    public var holdsTrusted: Bool {
        guard let pools else { return true }
        return pools.trusted(items.withLock { $0 })
    }

    /// Ends the VU here: cancels its routines, waits for them, runs its teardown hooks, gives
    /// its pool items back.
    package func end() async {
        let (tasks, hooks) = lifetime.withLock { l -> ([Task<Void, Never>], [@Sendable () async -> Void]) in
            guard !l.ended else { return ([], []) }
            l.ended = true
            defer { l.tasks = [:]; l.teardowns = [] }
            return (Array(l.tasks.values), l.teardowns)
        }
        for t in tasks { t.cancel() }
        for t in tasks { await t.value }
        for hook in hooks.reversed() { await hook() }
        lean.close()
        let held = items.withLock { i in
            defer { i = [] }
            return i
        }
        if !held.isEmpty { await pools?.giveBack(held) }
    }
}

/// A step that has begun and is recorded when it ends (once; later calls do nothing).
public final class OpenStep: Sendable {
    let name: String
    let began: ContinuousClock.Instant
    let metrics: ScenarioMetrics
    let ended = Atomic<Bool>(false)

    init(name: String, began: ContinuousClock.Instant, metrics: ScenarioMetrics) {
        self.name = name
        self.began = began
        self.metrics = metrics
    }

    /// Records the step: its duration until now, and its failure class if it failed.
    public func end(errorClass: String?) {
        guard !ended.exchange(true, ordering: .relaxed) else { return }
        metrics.stepEnded(name, began: began, errorClass: errorClass)
    }
}

/// A scenario's own metrics, merged across the cluster like J4's: per second in Redis
/// (`c:<name>` counters, `x:<name>` histograms of durations), and in the summary.
///
/// Names are printable ASCII without `:`; anything else becomes `_` (at most 64 characters).
public struct ScenarioMetrics: Sendable {
    let recorder: MetricsRecorder
    let second: @Sendable () -> Int64
    let telemetry: Telemetry?

    /// Metrics recorded into `recorder`, at the second `second()` returns, and mirrored to
    /// Prometheus through `telemetry` when given.
    package init(recorder: MetricsRecorder, telemetry: Telemetry? = nil, second: @escaping @Sendable () -> Int64) {
        self.recorder = recorder
        self.second = second
        self.telemetry = telemetry
    }

    /// Adds `n` to the counter `name`.
    public func count(_ name: String, _ n: Int64 = 1) {
        let clean = MetricName.clean(name)
        recorder.add(.counter(clean), n, second: second())
        telemetry?.count("j4_custom_total", [("name", clean)], n)
    }

    /// Records `duration` in the histogram `name` (such as a message's delivery time).
    public func record(_ name: String, _ duration: Duration) {
        let clean = MetricName.clean(name)
        recorder.observe(MetricField.custom(clean), micros: MetricsRecorder.micros(duration), second: second())
        telemetry?.time("j4_custom_duration_seconds", [("name", clean)], nanoseconds: Telemetry.nanos(duration))
    }

    /// Records the end of a step begun at `began` (used by ``VUContext/step(_:_:)``).
    public func stepEnded(_ name: String, began: ContinuousClock.Instant, errorClass: String?) {
        let clean = MetricName.clean(name)
        let n = MetricField.step(clean)
        let s = second()
        let took = began.duration(to: .now)
        recorder.observe(n, micros: MetricsRecorder.micros(took), second: s)
        telemetry?.step(clean, nanoseconds: Telemetry.nanos(took), failed: errorClass != nil)
        if let errorClass {
            recorder.add(.stepFailed(clean), second: s)
            recorder.add(.stepError(clean, MetricName.clean(errorClass)), second: s)
        }
    }

    /// Counts a check (used by ``VUContext/check(_:_:)``).
    public func checked(_ name: String, _ ok: Bool) {
        recorder.add(.check(MetricName.clean(name), passed: ok), second: second())
        telemetry?.count("j4_checks_total", [("check", MetricName.clean(name)), ("outcome", ok ? "pass" : "fail")])
    }
}

/// Metric, step and check names as they are stored: printable, without `:` (the separator of
/// the stored field names), bounded length.
package enum MetricName {
    /// `name` with every `:` and every control or non-ASCII character replaced by `_`, at most
    /// 64 characters.
    public static func clean(_ name: String) -> String { MetricField.clean(name) }
}
