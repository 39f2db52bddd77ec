import AsyncHTTPClient
import Foundation
import J4Core
import J4Scenario
import J4Redis
import Logging
import Synchronization

/// A long-lived worker process' engine: finds active runs whose scenario this binary has,
/// and takes part in each (leases, claims, load, metrics) until it ends or the worker leaves.
public final class Worker: Sendable {
    /// This worker's id: unique in the cluster (host or pod name plus a boot nonce).
    public let id: String
    let catalog: ScenarioCatalog
    let connections: WorkerConnections
    let http: HTTPClient
    let logger: Logger
    let discoveryInterval: Duration
    let endpoint: RedisEndpoint
    struct State {
        var runs: [String: (RunWorker, Task<Void, Never>)] = [:]
        var ignored: Set<String> = []
        var leaving = false
        var discovery: Task<Void, Never>?
    }
    let state = Mutex(State())
    /// Set by an announcement of a run not joined yet.
    let discoverNow = Atomic<Bool>(false)
    let reachable = Atomic<Bool>(false)
    /// True once the worker has listed the active runs in Redis, until a listing fails (the
    /// readiness probe: a worker that cannot reach Redis takes no part in any run).
    public var isConnected: Bool { reachable.load(ordering: .relaxed) }

    /// The counters behind `limits`' caps, shared by every run this worker serves.
    let caps: WorkerCaps
    /// This process' registration of its id: one live process per worker id.
    let identity: WorkerIdentity

    /// A worker with its own connections to `endpoint`, sending load only as `limits` allow.
    package init(
        id: String, endpoint: RedisEndpoint, catalog: ScenarioCatalog, http: HTTPClient, logger: Logger, discoveryInterval: Duration = .seconds(5),
        limits: WorkerLimits = .none
    ) {
        caps = WorkerCaps(limits)
        self.id = id
        self.catalog = catalog
        self.connections = WorkerConnections(endpoint: endpoint, worker: id)
        self.http = http
        var l = logger
        l[metadataKey: "worker"] = "\(id)"
        self.logger = l
        self.discoveryInterval = discoveryInterval
        self.endpoint = endpoint
        identity = WorkerIdentity(id: id, connection: connections.control, logger: l)
    }

    /// Registers this process as worker ``id``: waits out the registration of a predecessor
    /// that died under the same id (at most one registration TTL, 3 s), and throws
    /// ``WorkerIDInUse`` when another live process keeps it. Call before ``run()``.
    public func register() async throws {
        try await identity.register { [self] in state.withLock { $0.leaving } }
    }

    /// A worker id: `$J4_POD_NAME` (Kubernetes' downward API) or the host name and pid, plus
    /// a boot nonce, so a restarted container is a new worker to the cluster.
    public static func defaultID() -> String {
        let nonce = String(UInt32.random(in: 0...UInt32.max), radix: 36)
        if let pod = ProcessInfo.processInfo.environment["J4_POD_NAME"], !pod.isEmpty { return "\(pod)-\(nonce)" }
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "worker"
        return "\(host)-\(getpid())-\(nonce)"
    }

    /// Runs until ``leave()``: discovers runs, takes part in each, and on leaving hands every
    /// lease back and flushes before returning.
    public func run() async {
        // The fast path for stop and abort: act on the signal at once, not at the next claim.
        let signals = RedisSubscriber(endpoint: endpoint, channel: GlobalKeys.signals, clientName: "j4-worker:\(id):signals", logger: logger) { [self] text in
            signal(text)
        }
        defer { signals.close() }
        let keepAlive = Task { await identity.keepAlive { [self] in leave() } }
        let discovery = Task { await discoveryLoop() }
        let leavingAlready = state.withLock { s in
            s.discovery = discovery
            return s.leaving
        }
        if leavingAlready { discovery.cancel() }
        await discovery.value
        // Leaving: every run hands off gracefully.
        let runs = state.withLock { s in Array(s.runs.values) }
        for (rw, _) in runs { rw.leave() }
        for (_, task) in runs { await task.value }
        keepAlive.cancel()
        await keepAlive.value
        await identity.release()
        await connections.lease.close()
        await connections.claim.close()
        await connections.metrics.close()
        await connections.control.close()
    }

    /// Graceful shutdown (SIGTERM): stop claiming, finish the current tick, release, flush.
    public func leave() {
        let discovery = state.withLock { s in
            s.leaving = true
            return s.discovery
        }
        discovery?.cancel()
    }

    /// A message on the signals channel: `<run> <state> <stop_tick>`, or `<run> released <count>`.
    func signal(_ text: String) {
        let parts = text.split(separator: " ")
        // `<run> released <count>`: another worker handed leases back (release.lua).
        if parts.count == 3, parts[1] == "released" {
            self.state.withLock { $0.runs[String(parts[0])]?.0 }?.leasesReleased()
            return
        }
        guard parts.count == 3, let state = RunState(rawValue: String(parts[1])), let stopTick = Int64(parts[2]) else { return }
        guard let rw = self.state.withLock({ $0.runs[String(parts[0])]?.0 }) else {
            // A run this worker does not know yet (submit announces new runs): look now.
            if state.isLive { discoverNow.store(true, ordering: .relaxed) }
            return
        }
        rw.signal(state: state, stopTick: stopTick)
    }

    func discoveryLoop() async {
        while !Task.isCancelled {
            do {
                let ids = try await RunStore.activeRuns(on: connections.control)
                reachable.store(true, ordering: .relaxed)
                for run in ids where state.withLock({ $0.runs[run] == nil && !$0.ignored.contains(run) }) {
                    await join(run)
                }
            } catch {
                reachable.store(false, ordering: .relaxed)
                logger.warning("cannot list active runs", metadata: ["error": "\(error)"])
            }
            // New runs are announced on the signals channel; the slow poll is for a missed message.
            let since = ContinuousClock.now
            while !Task.isCancelled, since.duration(to: .now) < discoveryInterval, !discoverNow.exchange(false, ordering: .relaxed) {
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    func join(_ run: String) async {
        let info: RunInfo
        do {
            guard let i = try await RunStore.info(run, on: connections.control) else {
                state.withLock { _ = $0.ignored.insert(run) }
                return
            }
            info = i
        } catch let e as CorruptRunError {
            logger.error("failing a run whose data cannot be used; other runs go on", metadata: ["run": "\(run)", "reason": "\(e.reason)"])
            await RunStore.markFailed(run, reason: e.reason, by: id, deactivate: false, on: connections.control)
            state.withLock { _ = $0.ignored.insert(run) }
            return
        } catch {
            logger.warning("cannot read run", metadata: ["run": "\(run)", "error": "\(error)"])
            return
        }
        guard info.state.isLive else {
            state.withLock { _ = $0.ignored.insert(run) }
            return
        }
        guard let scenario = catalog[info.definition.scenario] else {
            logger.warning("skipping a run whose scenario this binary does not have", metadata: ["run": "\(run)", "scenario": "\(info.definition.scenario)"])
            state.withLock { _ = $0.ignored.insert(run) }
            return
        }
        let rw = RunWorker(info: info, worker: id, scenario: scenario, connections: connections, http: http, logger: logger, caps: caps)
        logger.info("joining run", metadata: ["run": "\(run)", "scenario": "\(scenario.name)", "model": "\(info.definition.model.rawValue)"])
        state.withLock { s in
            let task = Task {
                await rw.execute()
                self.state.withLock { s in
                    s.runs[run] = nil
                    s.ignored.insert(run)
                }
            }
            s.runs[run] = (rw, task)
        }
    }
}
