import ArgumentParser
import Foundation
import Metrics
import Prometheus
import Synchronization

/// `--metrics-port` and `--metrics-host`: Prometheus metrics of this process on
/// `http://HOST:PORT/metrics`, with `/healthz` and `/readyz` for Kubernetes' probes.
struct MetricsOptions: ParsableArguments {
    @Option(name: .long, help: "Serve Prometheus metrics on this port at /metrics (0: a free one, printed on stderr).")
    var metricsPort: Int?

    @Option(name: .long, help: "Address for --metrics-port (0.0.0.0 to be scraped from other hosts, as in Kubernetes).")
    var metricsHost = "127.0.0.1"

    func validate() throws {
        if let metricsPort, !(0...65535).contains(metricsPort) {
            throw ValidationError("--metrics-port \(metricsPort) is not accepted; use 0 to 65535")
        }
    }

    /// Bootstraps swift-metrics with Prometheus and serves it, when `--metrics-port` is given,
    /// with `/healthz` (the process answers: liveness) and `/readyz` (200 while `ready()`
    /// says so, 503 otherwise: readiness).
    func start(ready: @escaping @Sendable () -> Bool = { true }) async throws -> MetricsEndpoint? {
        guard let metricsPort else { return nil }
        let registry = MetricsOptions.bootstrap()
        let endpoint: MetricsEndpoint
        do {
            endpoint = try await MetricsEndpoint.start(host: metricsHost, port: metricsPort) { path in
                switch path {
                case "/metrics": return (200, "text/plain; version=0.0.4", registry.emitToString())
                case "/healthz": return (200, "text/plain", "ok\n")
                case "/readyz": return ready() ? (200, "text/plain", "ready\n") : (503, "text/plain", "not connected to Redis\n")
                default: return (404, "text/plain", "GET /metrics, /healthz or /readyz\n")
                }
            }
        } catch {
            throw CLIError.infrastructure("cannot serve metrics on \(metricsHost):\(metricsPort): \(error)")
        }
        let host = metricsHost.contains(":") ? "[\(metricsHost)]" : metricsHost
        FileHandle.standardError.write(Data("j4: metrics on http://\(host):\(endpoint.port)/metrics\n".utf8))
        return endpoint
    }

    static let registryBox = Mutex<PrometheusCollectorRegistry?>(nil)

    /// One registry per process, bootstrapped once.
    static func bootstrap() -> PrometheusCollectorRegistry {
        registryBox.withLock { r in
            if let r { return r }
            let registry = PrometheusCollectorRegistry()
            let factory = J4MetricsFactory(registry: registry)
            MetricsSystem.bootstrap(factory)
            r = registry
            return registry
        }
    }
}
