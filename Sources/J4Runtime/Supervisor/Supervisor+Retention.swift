import Foundation
import J4Redis

/// Retention: the leading supervisor deletes runs submitted longer than `retain` ago once
/// they have ended and settled (`RunDeletion`), so that Redis, which must not evict J4's
/// keys, does not fill up with old runs.
extension Supervisor {
    /// How often the leader looks for runs to delete: every minute, or every `retain` if shorter.
    var retentionSweepInterval: Duration? { retain.map { min(.seconds(60), max(.seconds(1), $0)) } }

    /// Starts a sweep when one is due and none is running. It runs beside the supervision
    /// cycle, never in it: deleting a long run takes many calls, and the plans must go on.
    func startRetentionSweep() {
        guard let every = retentionSweepInterval else { return }
        let due = lastRetentionSweep.withLock { state -> Bool in
            if state.running || (state.last.map { $0.duration(to: .now) < every } ?? false) { return false }
            state = (.now, true)
            return true
        }
        guard due else { return }
        Task {
            await sweepRetention()
            lastRetentionSweep.withLock { $0.running = false }
        }
    }

    /// Deletes up to 10 runs past their retention, oldest first; one that cannot be deleted
    /// yet (still settling) or fails is left for a later sweep.
    func sweepRetention() async {
        guard let retain else { return }
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let retainMs = Int64(retain.components.seconds) * 1000 + Int64(retain.components.attoseconds / 1_000_000_000_000_000)
        let candidates: [String]
        do { candidates = try await RunDeletion.expired(before: now - retainMs, limit: 10, on: retentionConnection) } catch {
            logger.warning("retention sweep failed", metadata: ["error": "\(error)"])
            return
        }
        for run in candidates {
            do {
                // Kept `retain` after it ended, not only after it was submitted.
                if let finished = Int64(try await retentionConnection.send(["HGET", RunKeys(run: run).ctl, "finished_ms"]).string ?? ""), finished > now - retainMs { continue }
                if case .deleted(let keys) = try await RunDeletion.delete(run, on: retentionConnection) {
                    logger.info("deleted a run past its retention", metadata: ["run": "\(run)", "keys": "\(keys)"])
                }
            } catch {
                logger.warning("could not delete a run past its retention", metadata: ["run": "\(run)", "error": "\(error)"])
            }
        }
    }
}
