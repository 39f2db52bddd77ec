import Foundation
internal import J4Runtime
internal import J4Sink
import Logging
import ServiceLifecycle
import UnixSignals

// The long-lived parts of `j4 worker`, `j4 supervisor`, `j4 sink` and `j4 run` as services
// of swift-service-lifecycle's `ServiceGroup`. The group traps the signals and shuts its
// services down gracefully in the reverse of their order: the part doing the work first,
// the metrics endpoint (listed first) last, so that it is scraped until the end.

/// The signals on which a long-lived command shuts down gracefully. SIGHUP too: a worker
/// started from a terminal that is closed leaves like one that is told to.
let gracefulSignals: [UnixSignal] = [.sigterm, .sigint, .sighup]

/// Runs `services` (the first configuration is shut down last) until the main one ends or a
/// signal of `signals` arrives; rethrows the error a service threw.
func runServices(_ services: [ServiceGroupConfiguration.ServiceConfiguration], signals: [UnixSignal] = gracefulSignals, logger: Logger) async throws {
    var configuration = ServiceGroupConfiguration(services: services, logger: logger)
    configuration.gracefulShutdownSignals = signals
    try await ServiceGroup(configuration: configuration).run()
}

/// `services`, after the metrics endpoint when there is one (so that it is shut down last).
func withMetrics(_ endpoint: MetricsEndpoint?, _ services: [ServiceGroupConfiguration.ServiceConfiguration]) -> [ServiceGroupConfiguration.ServiceConfiguration] {
    (endpoint.map { [.helper(MetricsEndpointService(endpoint: $0))] } ?? []) + services
}

extension ServiceGroupConfiguration.ServiceConfiguration {
    /// The service whose end ends the command: returning or throwing shuts the others down
    /// gracefully (the group then rethrows what it threw).
    static func main(_ service: any Service) -> Self {
        .init(service: service, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup)
    }

    /// A helper that ends when it is told to (or when the main service ends).
    static func helper(_ service: any Service) -> Self {
        .init(service: service, successTerminationBehavior: .ignore, failureTerminationBehavior: .gracefullyShutdownGroup)
    }
}

/// A worker: registers its id (a live process with the same id is refused, exit 2), then runs
/// until it is told to leave; graceful shutdown makes it leave (hand its shards back first).
struct WorkerService: Service {
    let worker: Worker
    let logger: Logger
    /// False for `j4 run`'s own workers, whose ids are new to their private Redis.
    var register = true

    func run() async throws {
        // Registration is inside the handler too: it waits while Redis is unreachable or the
        // id's previous process lapses, and a signal must end that wait (leave() does).
        try await withGracefulShutdownHandler {
            if register {
                do { try await worker.register() } catch let e as WorkerIDInUse { throw CLIError.invalid(e.description) }
            }
            await worker.run()
        } onGracefulShutdown: { [worker, logger] in
            logger.info("shutting down: leaving gracefully")
            worker.leave()
        }
    }
}

/// A supervisor: runs until graceful shutdown, then resigns (a leader clears its fences so
/// that a standby takes over at once).
struct SupervisorService: Service {
    let supervisor: Supervisor

    func run() async throws {
        await withGracefulShutdownHandler {
            await supervisor.run()
        } onGracefulShutdown: { [supervisor] in
            supervisor.resign()
        }
    }
}

/// The `/metrics` endpoint: serves until graceful shutdown reaches it, then closes.
struct MetricsEndpointService: Service {
    let endpoint: MetricsEndpoint

    func run() async throws {
        try? await gracefulShutdown()
        await endpoint.close()
    }
}

/// `j4 sink`: serves until graceful shutdown, then closes its listener and its connections.
struct SinkService: Service {
    let sink: Sink

    func run() async throws {
        await withGracefulShutdownHandler {
            await sink.wait()
        } onGracefulShutdown: { [sink] in
            Task { await sink.close() }
        }
    }
}
