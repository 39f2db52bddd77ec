import AsyncHTTPClient
import Foundation
import Glibc
import J4Core
import J4Redis
import J4Runtime
import J4TestSupport

// Helpers the end-to-end tests share: external tools, loopback ports, process groups.

/// The path of `name` on PATH; the error says that setup installs it.
func which(_ name: String) throws -> String {
    guard let path = EmbeddedRedis.findExecutable(name) else { throw TestSupportError(description: "\(name) is not on PATH: scripts/setup.sh installs it") }
    return path
}

/// Runs a tool (`kubectl`, `redis-cli`…) to the end: its exit code and output.
func runTool(_ argv: [String]) async throws -> (Int32, String) {
    try await J4Binary.run(Array(argv.dropFirst()), binary: try which(argv[0]))
}

/// The status of `GET http://127.0.0.1:port/path`, or 0 when nothing answers.
func httpStatus(port: Int, path: String) async throws -> Int {
    guard let response = try? await HTTPClient.shared.execute(HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)"), timeout: .seconds(2)) else { return 0 }
    _ = try? await response.body.collect(upTo: 1 << 16)
    return Int(response.status.code)
}

/// A TCP socket bound to a free port on 127.0.0.1 and not listening: the port stays taken
/// (connecting to it is refused) until the socket is closed.
func bindLoopback(port wanted: Int = 0) throws -> (fd: Int32, port: Int) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(wanted).bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &address) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    guard ok else {
        close(fd)
        throw TestSupportError(description: "no free port on 127.0.0.1")
    }
    return (fd, Int(UInt16(bigEndian: address.sin_port)))
}

/// `count` different TCP ports on 127.0.0.1 that were free a moment ago (all held at once
/// while choosing, so none is given twice); with `busOffset`, port + offset is free too and
/// below 65536 (Redis Cluster's bus port is the port + 10000).
func freeLoopbackPorts(_ count: Int, busOffset: Int? = nil) throws -> [Int] {
    var held: [Int32] = []
    defer { for fd in held { close(fd) } }
    var ports: [Int] = []
    for _ in 0..<(count * 50) where ports.count < count {
        let (fd, port) = try bindLoopback()
        held.append(fd)
        guard let offset = busOffset else {
            ports.append(port)
            continue
        }
        guard port + offset <= 65535, let bus = try? bindLoopback(port: port + offset) else { continue }
        held.append(bus.fd)
        ports.append(port)
    }
    guard ports.count == count else { throw TestSupportError(description: "not \(count) free ports on 127.0.0.1") }
    return ports
}

/// One supervisor (`s0`) and `workers` workers (`w0`…) on `url`.
func startSupervisorAndWorkers(url: String, workers: Int, environment: [String: String] = [:]) throws -> [ChildProcess] {
    var processes = [try J4Binary.start(["supervisor", "--redis", url, "--id", "s0"], environment: environment)]
    for i in 0..<workers { processes.append(try J4Binary.start(["worker", "--redis", url, "--id", "w\(i)"], environment: environment)) }
    return processes
}

/// A definition file: the http scenario at `rate`/s for `seconds` against `target`.
func holdDefinition(rate: Int, seconds: Int, shards: Int, target: String) throws -> String {
    try temporaryFile("""
        name: hold
        scenario: http
        model: arrival-rate
        start: \(rate)
        stages: [{ duration: \(seconds)s, target: \(rate) }]
        shards: \(shards)
        params: { request: { url: "\(target)" } }
        """)
}


/// A definition file: the http scenario with `vus` VUs for `seconds` against `target`.
func vusDefinition(vus: Int, seconds: Int, shards: Int, target: String) throws -> String {
    try temporaryFile("""
        name: vus
        scenario: http
        model: vus
        start: \(vus)
        stages: [{ duration: \(seconds)s, target: \(vus) }]
        shards: \(shards)
        params: { request: { url: "\(target)" } }
        """)
}

/// `j4 submit FILE ARGUMENTS…` (or `binary submit …`); the run id it printed. A failed
/// submit throws, with its output.
func submitRun(_ file: String, _ arguments: [String] = [], environment: [String: String] = [:], binary: String? = nil) async throws -> String {
    let (code, out) = try await J4Binary.run(["submit", file] + arguments, environment: environment, binary: binary)
    let run = out.trimmingCharacters(in: .whitespacesAndNewlines)
    guard code == 0, RunID.isValid(run) else { throw TestSupportError(description: "j4 submit exited \(code): \(out)") }
    return run
}

/// Waits until Redis' clock (`TIME`) reaches unix time `ms`.
func waitUntilRedisTime(_ ms: Int64, on c: RedisConnection) async throws {
    while true {
        let t = try await c.send(["TIME"]).array ?? []
        let now = (t.first?.int ?? 0) * 1000 + (t.count > 1 ? (t[1].int ?? 0) / 1000 : 0)
        if now >= ms { return }
        try await Task.sleep(for: .milliseconds(min(200, ms - now)))
    }
}

/// Waits until every worker of `ids` holds its control connection (CLIENT LIST names it).
func waitForWorkers(_ ids: [String], on c: RedisConnection, timeout: Duration = .seconds(15)) async throws {
    try await waitFor("workers \(ids.joined(separator: ", ")) connected", timeout: timeout) {
        let clients = try await c.send(["CLIENT", "LIST"]).string ?? ""
        return ids.allSatisfy { clients.contains("name=j4-worker:\($0):control") }
    }
}

/// The password of `user` in the text of a Redis ACL file (its `>password` rule).
func aclPassword(_ user: String, in acl: String) -> String {
    let line = acl.split(separator: "\n").first { $0.hasPrefix("user \(user) ") } ?? ""
    return line.split(separator: " ").first { $0.hasPrefix(">") }.map { String($0.dropFirst()) } ?? ""
}

/// A file of this repository, by its path from the root.
func repositoryFile(_ relative: String) -> String {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent(relative).path
}

/// `scripts/delay-proxy.py`: a TCP proxy to `target` that delays each direction by `ms`.
func startDelayProxy(to target: String, ms: Int) async throws -> (ChildProcess, port: Int) {
    try await J4Binary.startListening([repositoryFile("scripts/delay-proxy.py"), "0", target, String(ms)], binary: try which("python3"), marker: "listening on ")
}

/// The workers' "dropped iterations" log lines (with their reasons), to show beside a failed count.
func dropLog(_ processes: [ChildProcess]) -> String {
    processes.flatMap { $0.output.all.split(separator: "\n").filter { $0.contains("dropped iterations") } }.joined(separator: "\n")
}
