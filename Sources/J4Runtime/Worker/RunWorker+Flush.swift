import J4Core
import J4Scenario

/// Metric flushes: each finished second is sent once, with a sequence number so that a retry
/// is counted once.
extension RunWorker {
    /// Whose sequence numbers these flushes carry: the worker id and this process' nonce, so
    /// that a process restarted under the same id starts a sequence of its own and none of
    /// its flushes is taken for a retry of its predecessor's.
    var flushIdentity: String { worker + "|" + nonce }

    func flushLoop() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            await flushNow(final: false)
        }
    }

    /// Sends what was recorded, one flush per second of data; a failed flush is retried with
    /// the same sequence number (flush.lua counts it once).
    func flushNow(final: Bool) async {
        let fresh = metrics.drain(before: final ? nil : clock.serverMs(at: .now).map { Int64($0 / 1000) })
        pendingFlushes.withLock { p in
            for (second, fields) in fresh {
                let seq = flushSeq.add(1, ordering: .relaxed).newValue
                // max:w:<worker> = 1 marks this worker as active in that second (kept as a maximum).
                p.append((seq, second, fields + [(MetricField.activeWorker(worker).name, 1)]))
            }
        }
        let attempts = final ? 3 : 1
        for attempt in 0..<attempts {
            let batch = pendingFlushes.withLock { $0 }
            if batch.isEmpty { return }
            var sent = 0
            for item in batch {
                do {
                    try await client.flush(connections.metrics, worker: flushIdentity, seq: item.seq, second: item.second, fields: item.fields)
                    sent += 1
                } catch let e as CorruptRunError {
                    // The run's metrics keys cannot take them: the run is failed, they are dropped.
                    await corrupt(e)
                    pendingFlushes.withLock { $0 = [] }
                    return
                } catch {
                    logger.warning("metrics flush failed; kept for the next one", metadata: ["error": "\(error)", "attempt": "\(attempt)"])
                    break
                }
            }
            pendingFlushes.withLock { $0.removeFirst(sent) }
            if final, sent < batch.count { try? await Task.sleep(for: .milliseconds(200)) }
        }
    }
}

/// A VU's setup threw: its iteration is counted failed with class `setup`.
struct SetupFailed: Error {
    let underlying: any Error
}

/// An arrival-rate VU of the pool: its context and iteration body. A class on purpose: a
/// closure kept in a generic container (an array of tuples) is reabstracted each time it
/// goes in and comes out, and the thunks pile up, one more layer per iteration (measured:
/// about 1 KiB of memory per iteration, and slower calls). A class reference is not.
final class PooledVU: Sendable {
    let context: VUContext
    let body: IterationBody

    init(context: VUContext, body: @escaping IterationBody) {
        self.context = context
        self.body = body
    }
}
