/// Where a run is in its life, as stored in `ctl.state`.
public enum RunState: String, Sendable, CaseIterable {
    /// Submitted; the supervisor has not started it yet.
    case pending
    /// Its ticks are being planned and claimed.
    case running
    /// `j4 stop` was asked: no tick from `stop_tick` on is granted.
    case stopping
    /// It ran its whole curve.
    case finished
    /// It was stopped early.
    case stopped
    /// It was aborted (kill switch).
    case aborted
    /// Its data could not be used (corrupt or unknown schema).
    case failed

    /// True for states in which load may still be produced.
    public var isLive: Bool { self == .pending || self == .running || self == .stopping }
}
