import J4Redis
import Logging

/// A worker id is already in use by another live process: the second one does not start.
public struct WorkerIDInUse: Error, CustomStringConvertible {
    /// The id asked for.
    public let id: String
    /// What the user reads.
    public var description: String {
        "worker id \"\(id)\" is in use by another live worker process (it kept its registration in Redis, j4:worker:\(id), alive for longer than one registration TTL); give each worker its own --id (or leave --id out: the default adds a boot nonce)"
    }
}

/// What a process does with the answer to its claim on a worker id. Pure, table-tested.
///
/// A process restarted under its predecessor's id (SIGKILL, a crash, a container restart
/// with a fixed id) finds the predecessor's registration still there for up to one TTL: it
/// waits for it to lapse and then continues, as a new process of the same worker. A
/// registration that is still held after the new process has waited longer than one TTL is
/// being renewed by a live process: the new one is refused.
public enum IdentityDecision: Equatable, Sendable {
    /// The id is this process'.
    case registered
    /// Another process holds it for `ms` more: ask again then.
    case wait(ms: Int64)
    /// Another process keeps it alive: do not start.
    case refuse

    /// The decision for a claim answered `held` (or held by another for `msLeft`), after the
    /// process has waited `waitedMs` in all for an id whose registration lasts `ttlMs`.
    public static func decide(held: Bool, msLeft: Int64, waitedMs: Int64, ttlMs: Int64) -> IdentityDecision {
        if held { return .registered }
        if waitedMs > ttlMs { return .refuse }
        return .wait(ms: min(max(msLeft, 0), ttlMs) + 50)
    }
}

/// This process' registration of its worker id in Redis (`identity.lua`), kept alive while
/// the worker runs.
final class WorkerIdentity: Sendable {
    let id: String
    let nonce = String(UInt64.random(in: 0...UInt64.max), radix: 36)
    let connection: RedisConnection
    let ttlMs: Int64
    let logger: Logger

    init(id: String, connection: RedisConnection, ttlMs: Int64 = 3000, logger: Logger) {
        self.id = id
        self.connection = connection
        self.ttlMs = ttlMs
        self.logger = logger
    }

    /// One claim: held, or the ms left on another process' registration.
    func claim() async throws -> (held: Bool, msLeft: Int64) {
        try await GlobalScripts.identity(connection, "claim", id: id, nonce: nonce, ttlMs: ttlMs)
    }

    /// Registers the id, waiting out a dead predecessor's registration; throws
    /// ``WorkerIDInUse`` when a live process keeps it. Retries while Redis cannot be reached,
    /// until `cancelled()` says to give up.
    func register(cancelled: @Sendable () -> Bool) async throws {
        var waited: Int64 = 0
        var said = false
        while !cancelled() {
            let answer: (held: Bool, msLeft: Int64)
            do {
                answer = try await claim()
            } catch {
                logger.warning("cannot register the worker id yet; trying again", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .seconds(1))
                continue
            }
            switch IdentityDecision.decide(held: answer.held, msLeft: answer.msLeft, waitedMs: waited, ttlMs: ttlMs) {
            case .registered:
                return
            case .refuse:
                throw WorkerIDInUse(id: id)
            case .wait(let ms):
                if !said {
                    logger.notice("another process held this worker id; waiting for its registration to lapse", metadata: ["ms_left": "\(answer.msLeft)"])
                    said = true
                }
                try? await Task.sleep(for: .milliseconds(ms))
                waited += ms
            }
        }
    }

    /// Renews the registration every third of its TTL until cancelled; calls `lost` if another
    /// process has taken the id meanwhile (this one stalled past the TTL).
    func keepAlive(lost: @Sendable () -> Void) async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(ttlMs / 3))
            if Task.isCancelled { return }
            guard let answer = try? await claim() else { continue }
            if !answer.held {
                logger.error("another process took this worker id while this one could not renew it; leaving")
                lost()
                return
            }
        }
    }

    /// Gives the id up (only if still this process').
    func release() async {
        _ = try? await GlobalScripts.identity(connection, "release", id: id, nonce: nonce, ttlMs: ttlMs)
    }
}
