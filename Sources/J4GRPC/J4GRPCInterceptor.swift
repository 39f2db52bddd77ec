import GRPCCore
import J4Scenario
import Synchronization

/// Instruments every RPC a scenario makes with a gRPC client (grpc-swift 2), whichever
/// transport and generated client it uses: add it to the client's interceptors.
///
/// ```swift
/// let client = GRPCClient(transport: transport, interceptors: [J4GRPCInterceptor()])
/// ```
///
/// Inside a J4 VU (its setup, iterations and background routines) each RPC gets the
/// `x-j4-*` attribution metadata and a W3C `traceparent`, and is timed as the step
/// `grpc <service>/<method>`: a unary call from its start to its response, a streaming call
/// from its start to its end. A failure is counted as `grpc_<code>` (`grpc_unavailable`,
/// `grpc_deadline_exceeded`…). Outside a VU the interceptor passes calls through untouched.
public struct J4GRPCInterceptor: ClientInterceptor {
    /// The interceptor.
    public init() {}

    public func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingClientRequest<Input>,
        context: ClientContext,
        next: (StreamingClientRequest<Input>, ClientContext) async throws -> StreamingClientResponse<Output>
    ) async throws -> StreamingClientResponse<Output> {
        guard let vu = VUContext.current else { return try await next(request, context) }
        var request = request
        let iteration = IterationContext.current
        for (k, v) in iteration?.attributionHeaders ?? vu.attributionHeaders { request.metadata.replaceOrAddString(v, forKey: k) }
        request.metadata.replaceOrAddString(TraceContext.traceparent(traceID: iteration?.traceID ?? TraceContext.newTraceID()), forKey: "traceparent")
        let step = vu.openStep("grpc " + context.descriptor.fullyQualifiedMethod)
        let response: StreamingClientResponse<Output>
        do {
            // The transport has connected (the context names its peer); no request is sent yet.
            try vu.targets.check(peer: context.remotePeer)
            response = try await next(request, context)
        } catch {
            step.end(errorClass: J4GRPCInterceptor.errorClass(error))
            throw error
        }
        switch response.accepted {
        case .failure(let error):
            step.end(errorClass: J4GRPCInterceptor.errorClass(error))
            return response
        case .success(var contents):
            // The step ends with the response stream: at its last part, or its error.
            let parts = contents.bodyParts
            contents.bodyParts = RPCAsyncSequence(wrapping: Observed(base: parts, step: step))
            return StreamingClientResponse(accepted: .success(contents))
        }
    }

    /// `grpc_<code>` for an ``RPCError`` (snake case), `grpc` for anything else.
    public static func errorClass(_ error: any Error) -> String {
        guard let rpc = error as? RPCError else { return errorClassOfOther(error) }
        var out = "grpc_"
        for c in String(describing: rpc.code) {
            if c.isUppercase { out += "_" + c.lowercased() } else { out.append(c) }
        }
        return out
    }

    static func errorClassOfOther(_ error: any Error) -> String {
        if let classified = error as? any ClassifiedError { return classified.errorClass }
        return error is CancellationError ? "cancelled" : "grpc"
    }
}

/// A response stream that ends its step once, when it finishes or fails.
struct Observed<Base: AsyncSequence & Sendable>: AsyncSequence, Sendable where Base.Element: Sendable {
    typealias Element = Base.Element
    let base: Base
    let step: OpenStep

    struct AsyncIterator: AsyncIteratorProtocol {
        var base: Base.AsyncIterator
        let step: OpenStep

        mutating func next() async throws -> Element? {
            do {
                guard let part = try await base.next() else {
                    step.end(errorClass: nil)
                    return nil
                }
                return part
            } catch {
                step.end(errorClass: J4GRPCInterceptor.errorClass(error))
                throw error
            }
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: base.makeAsyncIterator(), step: step) }
}
