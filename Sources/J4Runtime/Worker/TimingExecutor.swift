import Foundation

/// One OS thread that runs only the arrival-rate fire loops: the tasks that wake at each
/// iteration's intended start, decide to start or drop it, and hand the iteration itself
/// to Swift's global executor.
///
/// On the shared executor a wake-up is a job in a queue like any other, so it waits behind
/// whatever runs there: a TLS handshake or a burst of VU set-ups at the start of a run
/// delayed the fire loop by tens of milliseconds, and iterations were dropped as late on
/// a machine with idle cores. On a thread of its own the kernel schedules the wake-up at
/// once, preemptively, whatever the other threads are doing.
///
/// The thread keeps its own timers too (``sleep(until:)``): `Task.sleep` would hand the
/// wake-up to the runtime's timer and a dispatch queue first, and only then back to this
/// thread. Here the thread itself waits on a condition until the earliest deadline, on the
/// monotonic clock (a step of the wall clock neither wakes it early nor makes it oversleep).
final class TimingExecutor: TaskExecutor, @unchecked Sendable {
    /// The process' one timing thread.
    static let shared = TimingExecutor()

    private enum Timer {
        case allocated
        case cancelled
        case waiting(ContinuousClock.Instant, CheckedContinuation<Void, Never>)
    }

    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var jobs: [UnownedJob] = []
    private var timers: [UInt64: Timer] = [:]
    private var nextTimer: UInt64 = 0
    /// A timer this close to its deadline fires now: the condition's wait is not finer.
    private static let slack: Duration = .microseconds(100)

    private init() {
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
        let thread = Thread { [self] in loop() }
        thread.name = "j4-timing"
        thread.stackSize = 1 << 20
        thread.start()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        pthread_mutex_lock(mutex)
        jobs.append(job)
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
    }

    /// Suspends the calling task (which runs on this executor) until `deadline`, or until it
    /// is cancelled; then it resumes on this thread.
    func sleep(until deadline: ContinuousClock.Instant) async {
        guard deadline > .now + Self.slack else { return }
        let id = locked { () -> UInt64 in
            nextTimer += 1
            timers[nextTimer] = .allocated
            return nextTimer
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let now = locked { () -> Bool in
                    if case .cancelled = timers[id] {
                        timers[id] = nil
                        return true
                    }
                    timers[id] = .waiting(deadline, c)
                    pthread_cond_signal(condition)
                    return false
                }
                if now { c.resume() }
            }
        } onCancel: {
            let waiting = locked { () -> CheckedContinuation<Void, Never>? in
                switch timers[id] {
                case .allocated:
                    timers[id] = .cancelled
                    return nil
                case .waiting(_, let c):
                    timers[id] = nil
                    return c
                case .cancelled, nil:
                    return nil
                }
            }
            waiting?.resume()
        }
    }

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body()
    }

    /// Waits on the condition (the mutex held) for at most `d`, on CLOCK_MONOTONIC.
    private func wait(for d: Duration) {
        var deadline = timespec()
        clock_gettime(CLOCK_MONOTONIC, &deadline)
        let (s, atto) = d.components
        let nanos = Int(deadline.tv_nsec) + Int(atto / 1_000_000_000)
        deadline.tv_sec += Int(s) + nanos / 1_000_000_000
        deadline.tv_nsec = nanos % 1_000_000_000
        _ = pthread_cond_timedwait(condition, mutex, &deadline)
    }

    private func loop() {
        while true {
            pthread_mutex_lock(mutex)
            var due: [CheckedContinuation<Void, Never>] = []
            while true {
                let now = ContinuousClock.now
                var earliest: ContinuousClock.Instant?
                for (id, timer) in timers {
                    guard case .waiting(let at, let c) = timer else { continue }
                    if at <= now + Self.slack {
                        due.append(c)
                        timers[id] = nil
                    } else if earliest.map({ at < $0 }) ?? true {
                        earliest = at
                    }
                }
                if !due.isEmpty || !jobs.isEmpty { break }
                if let earliest {
                    wait(for: now.duration(to: earliest))
                } else {
                    pthread_cond_wait(condition, mutex)
                }
            }
            let batch = jobs
            jobs.removeAll(keepingCapacity: true)
            pthread_mutex_unlock(mutex)
            // A resumed task is enqueued here again (its executor preference) and runs next.
            for c in due { c.resume() }
            for job in batch { job.runSynchronously(on: asUnownedTaskExecutor()) }
        }
    }
}
