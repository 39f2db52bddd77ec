import AsyncHTTPClient
import Foundation
import Synchronization
import J4Core
import NIOCore
import NIOHTTP1

/// A response read to its end.
public struct HTTPResult: Sendable {
    /// The status code.
    public let status: Int
    /// The response headers.
    public let headers: HTTPHeaders
    /// The whole body.
    public let body: ByteBuffer

    /// The body as UTF-8 text.
    public var text: String { String(buffer: body) }

    /// The body as JSON.
    public func json() throws -> JSONValue { try decode(JSONValue.self) }

    /// The body decoded as JSON into `type`.
    public func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try JSONDecoder().decode(type, from: Data(body.readableBytesView))
    }
}

/// A GraphQL response with a non-empty `errors` array: a failure even when the status is 200.
public struct GraphQLErrors: ClassifiedError, CustomStringConvertible {
    /// The `message` of each error.
    public let messages: [String]
    public var errorClass: String { "graphql" }
    public var description: String { "GraphQL errors: " + messages.joined(separator: "; ") }
}

/// W3C trace context (`traceparent`) for the requests J4 sends.
public enum TraceContext {
    /// A new random 16-byte trace id in hex (never all zeros).
    public static func newTraceID() -> String { hex(FastRandom.next() | 1, FastRandom.next()) }

    /// `00-<trace id>-<new span id>-01`: a new span of trace `traceID`, sampled.
    public static func traceparent(traceID: String) -> String {
        "00-" + traceID + "-" + hex(FastRandom.next() | 1) + "-01"
    }

    /// The numbers in lowercase hex, 16 digits each.
    static func hex(_ values: UInt64...) -> String {
        String(unsafeUninitializedCapacity: 16 * values.count) { out in
            let digits: StaticString = "0123456789abcdef"
            var i = 0
            for v in values {
                for shift in stride(from: 60, through: 0, by: -4) {
                    out[i] = digits.utf8Start[Int((v >> UInt64(shift)) & 15)]
                    i += 1
                }
            }
            return i
        }
    }
}

/// Random 64-bit numbers for trace and span ids, without a system call each: SplitMix64 over
/// an atomic counter seeded once from the system's generator. Unique per process, and well
/// spread; not for secrets.
enum FastRandom {
    static let seed = UInt64.random(in: 0...UInt64.max)
    static let counter = Atomic<UInt64>(0)

    static func next() -> UInt64 {
        var z = seed &+ counter.add(1, ordering: .relaxed).newValue &* 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension VUContext {
    /// Sends `request` as the step `name` (timed, failures classified) with J4's attribution
    /// headers plus `extraHeaders`, reads the whole body (at most `maxBody` bytes) and throws
    /// ``UnexpectedStatus`` for a status outside `expect` (nil accepts any).
    public func http(
        _ name: String, _ request: HTTPClientRequest, timeout: Duration = .seconds(30), expect: ClosedRange<Int>? = 200...299,
        maxBody: Int = 16 << 20, traceID: String = TraceContext.newTraceID(), extraHeaders: [(String, String)] = []
    ) async throws -> HTTPResult {
        try await step(name) {
            try await exchange(request, timeout: timeout, expect: expect, maxBody: maxBody, traceID: traceID, extraHeaders: extraHeaders)
        }
    }

    /// Sends `request` with the attribution headers and a `traceparent`, reads the whole body.
    func exchange(
        _ request: HTTPClientRequest, timeout: Duration, expect: ClosedRange<Int>?, maxBody: Int, traceID: String, extraHeaders: [(String, String)]
    ) async throws -> HTTPResult {
        try targets.check(url: request.url)
        var request = request
        for (k, v) in attributionHeaders + extraHeaders { request.headers.replaceOrAdd(name: k, value: v) }
        request.headers.replaceOrAdd(name: "traceparent", value: TraceContext.traceparent(traceID: traceID))
        let response = try await http.execute(request, timeout: TimeAmount(timeout))
        let body = try await response.body.collect(upTo: maxBody)
        let status = Int(response.status.code)
        if let expect, !expect.contains(status) { throw UnexpectedStatus(status: status) }
        return HTTPResult(status: status, headers: response.headers, body: body)
    }

    /// Sends `request` as the step `name`: on this VU's lean connection (HTTP/1.1, or HTTP/2
    /// when the VU asks for it; plain or TLS), else (credentials or characters to encode in the
    /// URL, a header the lean client would not send as it is) with AsyncHTTPClient; the same
    /// headers, checks, step metrics and error classes either way.
    func send<T: Sendable>(
        _ name: String, _ request: ScenarioRequest, timeout: Duration, expect: ClosedRange<Int>?, maxBody: Int, traceID: String,
        extraHeaders: [(String, String)], then: @Sendable (HTTPResult) throws -> T
    ) async throws -> T {
        try await step(name) {
            try await then(try await transfer(request, timeout: timeout, expect: expect, maxBody: maxBody, traceID: traceID, extraHeaders: extraHeaders))
        }
    }

    /// The request of ``send(_:_:timeout:expect:maxBody:traceID:extraHeaders:then:)``, outside any step.
    func transfer(
        _ request: ScenarioRequest, timeout: Duration, expect: ClosedRange<Int>?, maxBody: Int, traceID: String, extraHeaders: [(String, String)]
    ) async throws -> HTTPResult {
        try targets.check(url: request.url)
        let own = attributionHeaders + extraHeaders + [("traceparent", TraceContext.traceparent(traceID: traceID))]
        if let result = try await leanExchange(request, own: own, timeout: timeout, expect: expect, maxBody: maxBody) { return result }
        var r = HTTPClientRequest(url: request.url)
        r.method = HTTPMethod(rawValue: request.method)
        for (k, v) in request.headers { r.headers.add(name: k, value: v) }
        if let body = request.body { r.body = .bytes(body) }
        return try await exchange(r, timeout: timeout, expect: expect, maxBody: maxBody, traceID: traceID, extraHeaders: extraHeaders)
    }

    /// Posts a GraphQL operation to `url` as the step `name`; returns its `data`. A response
    /// whose `errors` array is not empty throws ``GraphQLErrors``, whatever its status.
    public func graphQL(
        _ name: String, url: String, query: String, variables: [String: JSONValue] = [:], operationName: String? = nil,
        headers: [(String, String)] = [], timeout: Duration = .seconds(30), traceID: String = TraceContext.newTraceID(),
        extraHeaders: [(String, String)] = []
    ) async throws -> JSONValue {
        var payload: [String: JSONValue] = ["query": .string(query), "variables": .object(variables)]
        if let operationName { payload["operationName"] = .string(operationName) }
        let request = ScenarioRequest(
            method: "POST", url: url,
            headers: ScenarioRequest.merged([("content-type", "application/json"), ("accept", "application/graphql-response+json, application/json")], headers),
            body: ByteBuffer(string: JSONValue.object(payload).canonicalJSON))
        // A GraphQL server may answer errors with 200 or with 4xx; both are read for `errors`.
        return try await send(name, request, timeout: timeout, expect: nil, maxBody: 16 << 20, traceID: traceID, extraHeaders: extraHeaders) { result in
            let body = try? result.json()
            if let errors = body?["errors"]?.arrayValue, !errors.isEmpty {
                throw GraphQLErrors(messages: errors.map { $0["message"]?.stringValue ?? $0.canonicalJSON })
            }
            guard (200..<300).contains(result.status) else { throw UnexpectedStatus(status: result.status) }
            guard let data = body?["data"] else { throw GraphQLErrors(messages: ["response has no data"]) }
            return data
        }
    }
}

extension IterationContext {
    /// ``VUContext/http(_:_:timeout:expect:maxBody:traceID:extraHeaders:)`` with this
    /// iteration's headers (`x-j4-tick`, `x-j4-shard`, `x-j4-iteration`) and trace.
    public func http(_ name: String, _ request: HTTPClientRequest, timeout: Duration = .seconds(30), expect: ClosedRange<Int>? = 200...299, maxBody: Int = 16 << 20) async throws -> HTTPResult {
        try await vu.http(name, request, timeout: timeout, expect: expect, maxBody: maxBody, traceID: traceID, extraHeaders: iterationHeaders)
    }

    /// ``VUContext/graphQL(_:url:query:variables:operationName:headers:timeout:traceID:extraHeaders:)``
    /// with this iteration's headers and trace.
    public func graphQL(_ name: String, url: String, query: String, variables: [String: JSONValue] = [:], operationName: String? = nil, headers: [(String, String)] = [], timeout: Duration = .seconds(30)) async throws -> JSONValue {
        try await vu.graphQL(name, url: url, query: query, variables: variables, operationName: operationName, headers: headers, timeout: timeout, traceID: traceID, extraHeaders: iterationHeaders)
    }
}

extension VUContext {
    /// An HTTP request as the step `name`: `method` to `url` with `headers`, and `json` (sent
    /// as `application/json`) or `body` (sent as it is) when given.
    public func request(
        _ name: String, _ method: String = "GET", _ url: String, headers: [(String, String)] = [], json: JSONValue? = nil, body: String? = nil,
        timeout: Duration = .seconds(30), expect: ClosedRange<Int>? = 200...299
    ) async throws -> HTTPResult {
        try await send(name, Self.makeRequest(method, url, headers: headers, json: json, body: body), timeout: timeout, expect: expect,
                       maxBody: 16 << 20, traceID: TraceContext.newTraceID(), extraHeaders: []) { $0 }
    }

    static func makeRequest(_ method: String, _ url: String, headers: [(String, String)], json: JSONValue?, body: String?) -> ScenarioRequest {
        ScenarioRequest(
            method: method.uppercased(), url: url, headers: ScenarioRequest.merged(json == nil ? [] : [("content-type", "application/json")], headers),
            body: json.map { ByteBuffer(string: $0.canonicalJSON) } ?? body.map { ByteBuffer(string: $0) })
    }
}

extension IterationContext {
    /// ``VUContext/request(_:_:_:headers:json:body:timeout:expect:)`` with this iteration's
    /// headers and trace.
    public func request(
        _ name: String, _ method: String = "GET", _ url: String, headers: [(String, String)] = [], json: JSONValue? = nil, body: String? = nil,
        timeout: Duration = .seconds(30), expect: ClosedRange<Int>? = 200...299
    ) async throws -> HTTPResult {
        try await vu.send(name, VUContext.makeRequest(method, url, headers: headers, json: json, body: body), timeout: timeout, expect: expect,
                          maxBody: 16 << 20, traceID: traceID, extraHeaders: iterationHeaders) { $0 }
    }
}
