import NIOCore
import NIOHPACK
import Synchronization

/// The built-in scenario's request over HTTP/2, its header block made once per VU: an
/// iteration adds its own attribution headers and `traceparent`.
struct LeanHTTP2Request: Sendable {
    let target: LeanTarget
    /// The pseudo-headers, the run's headers and the VU's attribution headers.
    let block: HPACKHeaders
    let body: ByteBuffer?
    let isHead: Bool
    let expect: Set<Int>?
    let timeout: TimeAmount
    /// The same request over HTTP/1.1, for a server that does not choose `h2`.
    let http1: LeanRequest

    /// Nil for a URL the lean client does not serve, or a header it cannot send as it is.
    init?(plan: HTTPScenario.Plan, vu: VUContext) {
        guard let target = LeanTarget(url: plan.url), let http1 = LeanRequest(plan: plan, vu: vu) else { return nil }
        // The iteration's own headers are added per request; a run's copy of them is not sent.
        let perIteration = IterationContext.iterationHeaderNames + ["traceparent"]
        let headers = plan.headers.filter { h in !perIteration.contains { ScenarioRequest.sameName($0, h.0) } }
        let request = ScenarioRequest(method: plan.method.rawValue, url: plan.url, headers: headers, body: plan.body.map { ByteBuffer(bytes: $0) })
        guard let h2 = request.http2(for: target, own: vu.attributionHeaders) else { return nil }
        self.target = target
        block = h2.headers
        body = h2.body
        isHead = h2.head
        expect = plan.expect
        timeout = plan.timeout
        self.http1 = http1
    }

    /// The iteration body of `vu`: one connection per VU (closed when the VU ends), each
    /// iteration on a stream of its own; over HTTP/1.1 once the server declined HTTP/2.
    func iteration(_ vu: VUContext) -> IterationBody {
        let connection = LeanHTTP2Connection(host: target.host, port: target.port, tls: target.tls)
        vu.onTeardown { connection.close() }
        let request = self
        let fallback = Fallback(http1.iteration(vu))
        return { iteration in
            if let body = fallback.body { return try await body(iteration) }
            var block = request.block
            block.addHeader("x-j4-tick", String(iteration.tick))
            block.addHeader("x-j4-shard", String(iteration.shard))
            block.addHeader("x-j4-iteration", String(iteration.iteration))
            block.addHeader("traceparent", TraceContext.traceparent(traceID: iteration.traceID))
            let response: LeanResponse
            do {
                response = try await connection.exchange(LeanH2Request(headers: block, body: request.body, head: request.isHead), timeout: request.timeout, maxBody: nil)
            } catch is HTTP2NotOffered {
                fallback.engage()
                return try await fallback.body!(iteration)
            }
            try HTTPScenario.check(status: response.status, expect: request.expect)
        }
    }

    /// The HTTP/1.1 iteration body, used once the server declined HTTP/2.
    final class Fallback: Sendable {
        let http1: IterationBody
        let engaged = Atomic<Bool>(false)
        init(_ http1: @escaping IterationBody) { self.http1 = http1 }
        var body: IterationBody? { engaged.load(ordering: .relaxed) ? http1 : nil }
        func engage() { engaged.store(true, ordering: .relaxed) }
    }
}
