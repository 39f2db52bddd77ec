import J4Core
import J4Redis

/// How much of a run's recent past stays in full detail in Redis; older per-tick records and
/// per-second metrics are folded (`compact_ticks.lua`, `compact_second.lua`), so that a long
/// run's keys stay small: ticks into sums, seconds into per-minute hashes.
public struct Compaction: Sendable, Equatable {
    /// Per-second metrics younger than this, and the records of this many ticks' worth
    /// below the current one, are kept as they are.
    public var detail: Duration

    /// 15 minutes: `j4 status` and `j4 watch` read the last seconds; a report shows the
    /// last 15 minutes of a run per second and what came before per minute.
    public static let defaultDetail: Duration = .seconds(900)

    public init(detail: Duration = Compaction.defaultDetail) { self.detail = detail }

    var detailMs: Int64 { detail.components.seconds * 1000 + detail.components.attoseconds / 1_000_000_000_000_000 }
    /// Ticks kept below claimed_tick - 1 at a tick of `tickMs`.
    func keepTicks(tickMs: Int64) -> Int64 { detailMs / max(1, tickMs) }
    /// Seconds kept before now.
    var keepSeconds: Int64 { max(1, (detailMs + 999) / 1000) }

    /// How often the supervisor of a run folds it.
    static let interval: Duration = .seconds(5)
    /// The most ticks one call folds, and the most seconds one pass folds (a pass catches
    /// up over several cycles after a supervisor was away).
    static let maxTicksPerCall: Int64 = 5000
    static let maxSecondsPerPass = 300
}

extension Supervisor {
    /// Folds `info`'s settled state when a pass is due (every ``Compaction/interval``), or now
    /// when `final` (the run has ended). A failure is logged and tried again at the next pass:
    /// the plan never waits for it. The seconds' cursor comes from the ctl hash read this
    /// cycle; before any fold it is the first second of the minute the run started in.
    func compactIfDue(_ info: RunInfo, client: RunClient, startMs: Int64, final: Bool = false) async {
        let due = lastCompaction.withLock { last -> Bool in
            if !final, let at = last[info.id], at.duration(to: .now) < Compaction.interval { return false }
            if final { last.removeValue(forKey: info.id) } else { last[info.id] = .now }
            return true
        }
        guard due else { return }
        do {
            _ = try await client.compactTicks(connection, keepTicks: compaction.keepTicks(tickMs: info.definition.tickMs), maxTicks: Compaction.maxTicksPerCall)
            var s = info.compactedSecond ?? RunKeys.minuteStart(startMs / 1000)
            var moved = false
            for _ in 0..<Compaction.maxSecondsPerPass {
                let (folded, next) = try await client.compactSecond(connection, s, keepSeconds: compaction.keepSeconds)
                if !folded {
                    // The cursor moved since ctl was read (an earlier pass this cycle): go on from it, once.
                    guard next != s, !moved else { break }
                    moved = true
                }
                s = next
            }
        } catch {
            logger.warning("could not compact a run's older state; tried again later", metadata: ["run": "\(info.id)", "error": "\(error)"])
        }
    }
}
