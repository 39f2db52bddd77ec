import ArgumentParser
import Foundation
import J4Core
import Logging
import ServiceLifecycle
internal import J4Sink

struct SinkCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sink",
        abstract: "A small calibration HTTP server with injectable latency, stalls and errors.",
        discussion: "GET /__sink/stats gives the counts as JSON; POST /__sink/reset forgets them. Every other path is load.")

    @Option(name: .long, help: "Address to bind.") var host = "127.0.0.1"
    @Option(name: .long, help: "Port to bind (0: a free one; the line on stdout says which).") var port = 8080
    @Option(name: .long, help: "Latency added to every response, e.g. 5ms.") var latency = "0ms"
    @Option(name: .long, help: "Up to this much more or less latency, e.g. 2ms.") var jitter = "0ms"
    @Option(name: .long, help: "Share of requests answered with 500, 0 to 1.") var errorRate = 0.0
    @Option(name: .long, help: "EVERY:FOR, e.g. 10s:1s: for the last FOR of every EVERY, all requests wait.") var stall: String?
    @Option(name: .long, help: "PEM certificate chain: serve HTTPS (HTTP/2 or HTTP/1.1 by ALPN); needs --tls-key.") var tlsCert: String?
    @Option(name: .long, help: "PEM private key of --tls-cert.") var tlsKey: String?
    @Option(name: .long, help: "Append one tab-separated line per load request, when answered, to this file: arrival and answer unix ms, then the x-j4-run, -worker, -vu, -iteration, -tick and -shard headers.") var accessLog: String?

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port \(port) is not accepted; use 0 to 65535") }
        guard (0...1).contains(errorRate) else { throw ValidationError("--error-rate \(errorRate) is not accepted; use a share from 0 to 1, e.g. 0.01") }
        for (name, v) in [("--latency", latency), ("--jitter", jitter)] where DurationText.milliseconds(v) == nil {
            throw ValidationError("\(name) \(v) is not accepted; use a duration such as 5ms or 1s")
        }
        if let stall { _ = try parseStall(stall) }
        if (tlsCert == nil) != (tlsKey == nil) { throw ValidationError("--tls-cert and --tls-key go together: give both, or neither") }
    }

    func parseStall(_ text: String) throws -> (Duration, Duration) {
        let parts = text.split(separator: ":")
        guard parts.count == 2, let every = DurationText.milliseconds(String(parts[0])), let dur = DurationText.milliseconds(String(parts[1])), every > 0, dur <= every else {
            throw ValidationError("--stall \(text) is not accepted; use EVERY:FOR with FOR no longer than EVERY, e.g. 10s:1s")
        }
        return (.milliseconds(every), .milliseconds(dur))
    }

    func run() async throws {
        var o = SinkOptions()
        o.host = host
        o.port = port
        o.latency = .milliseconds(DurationText.milliseconds(latency) ?? 0)
        o.jitter = .milliseconds(DurationText.milliseconds(jitter) ?? 0)
        o.errorRate = errorRate
        if let stall { o.stall = try parseStall(stall) }
        if let tlsCert, let tlsKey { o.tls = (tlsCert, tlsKey) }
        o.accessLog = accessLog
        let sink: Sink
        do { sink = try await Sink.start(o) } catch let e as SinkAccessLog.OpenError {
            throw CLIError.invalid("--access-log: \(e)")
        } catch { throw CLIError.infrastructure("cannot listen on \(host):\(port): \(error)") }
        FileHandle.standardOutput.write(Data("j4 sink listening on \(tlsCert == nil ? "http" : "https")://\(host.contains(":") ? "[\(host)]" : host):\(sink.port)\n".utf8))
        try await runServices([.main(SinkService(sink: sink))], logger: Logger(label: "j4.sink"))
    }
}
