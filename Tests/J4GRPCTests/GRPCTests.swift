import AsyncHTTPClient
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import J4Core
import J4GRPC
import J4Runtime
import J4Scenario
import Logging
import Synchronization
import Testing

/// The message of the echo service, coded as JSON (any coding works with the interceptor).
struct Echo: Codable, Sendable, Equatable {
    var text: String
}

struct JSONCoding<Message: Codable & Sendable>: MessageSerializer, MessageDeserializer {
    func serialize<Bytes: GRPCContiguousBytes>(_ message: Message) throws -> Bytes { Bytes(try JSONEncoder().encode(message)) }
    func deserialize<Bytes: GRPCContiguousBytes>(_ bytes: Bytes) throws -> Message {
        try bytes.withUnsafeBytes { try JSONDecoder().decode(Message.self, from: Data($0)) }
    }
}

enum EchoMethods {
    static let get = MethodDescriptor(fullyQualifiedService: "echo.Echo", method: "Get")
    static let expand = MethodDescriptor(fullyQualifiedService: "echo.Echo", method: "Expand")
    static let fail = MethodDescriptor(fullyQualifiedService: "echo.Echo", method: "Fail")
}

/// A client shaped like generated code: what a user has, and adds J4's interceptor to.
struct EchoClient<Transport: ClientTransport> {
    let client: GRPCClient<Transport>

    func get(_ text: String) async throws -> Echo {
        try await client.unary(request: ClientRequest(message: Echo(text: text)), descriptor: EchoMethods.get,
                               serializer: JSONCoding<Echo>(), deserializer: JSONCoding<Echo>(), options: .defaults) { try $0.message }
    }

    func expand(_ text: String) async throws -> [Echo] {
        try await client.serverStreaming(request: ClientRequest(message: Echo(text: text)), descriptor: EchoMethods.expand,
                                         serializer: JSONCoding<Echo>(), deserializer: JSONCoding<Echo>(), options: .defaults) { response in
            var all: [Echo] = []
            for try await m in response.messages { all.append(m) }
            return all
        }
    }

    func fail() async throws -> Echo {
        try await client.unary(request: ClientRequest(message: Echo(text: "")), descriptor: EchoMethods.fail,
                               serializer: JSONCoding<Echo>(), deserializer: JSONCoding<Echo>(), options: .defaults) { try $0.message }
    }
}

/// The server: Get echoes, Expand streams each word back, Fail is unavailable. It keeps the
/// metadata of every call.
final class Seen: Sendable {
    let calls = Mutex<[Metadata]>([])
}

struct EchoService: RegistrableRPCService {
    let seen: Seen

    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        let seen = self.seen
        router.registerHandler(forMethod: EchoMethods.get, deserializer: JSONCoding<Echo>(), serializer: JSONCoding<Echo>()) { request, _ in
            seen.calls.withLock { $0.append(request.metadata) }
            var text = ""
            for try await m in request.messages { text = m.text }
            let reply = text
            return StreamingServerResponse(of: Echo.self, metadata: [:]) { writer in
                try await writer.write(Echo(text: reply))
                return [:]
            }
        }
        router.registerHandler(forMethod: EchoMethods.expand, deserializer: JSONCoding<Echo>(), serializer: JSONCoding<Echo>()) { request, _ in
            seen.calls.withLock { $0.append(request.metadata) }
            var text = ""
            for try await m in request.messages { text = m.text }
            let words = text.split(separator: " ").map(String.init)
            return StreamingServerResponse(of: Echo.self, metadata: [:]) { writer in
                for w in words { try await writer.write(Echo(text: w)) }
                return [:]
            }
        }
        router.registerHandler(forMethod: EchoMethods.fail, deserializer: JSONCoding<Echo>(), serializer: JSONCoding<Echo>()) { request, _ in
            seen.calls.withLock { $0.append(request.metadata) }
            return StreamingServerResponse(error: RPCError(code: .unavailable, message: "down for the test"))
        }
    }
}

@Suite("gRPC through J4GRPCInterceptor (grpc-swift 2, HTTP/2 NIO transport, a real server on 127.0.0.1)")
struct GRPCTests {
    @Test("unary and server-streaming calls are steps with J4's metadata and a traceparent; a failure is counted by its code")
    func instrumented() async throws {
        let seen = Seen()
        let server = GRPCServer(
            transport: .http2NIOPosix(address: .ipv4(host: "127.0.0.1", port: 0), transportSecurity: .plaintext),
            services: [EchoService(seen: seen)])
        let serving = Task { try await server.serve() }
        guard let port = try await server.listeningAddress?.ipv4?.port else {
            Issue.record("the server did not listen")
            return
        }
        let grpc = GRPCClient(
            transport: try .http2NIOPosix(target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: .plaintext),
            interceptors: [J4GRPCInterceptor()])
        let connections = Task { try await grpc.runConnections() }
        let client = EchoClient(client: grpc)

        // Outside a VU the interceptor passes calls through untouched.
        #expect(try await client.get("plain") == Echo(text: "plain"))
        #expect(seen.calls.withLock { $0.last?.firstString(forKey: "x-j4-run") } == nil)

        let recorder = MetricsRecorder()
        let vu = VUContext(run: "r1", worker: "w1", vu: 7, params: .null, logger: Logger(label: "test"), http: HTTPClient.shared,
                           metrics: ScenarioMetrics(recorder: recorder) { 100 })
        let (got, expanded) = try await vu.run { () async throws -> (Echo, [Echo]) in
            (try await client.get("hello"), try await client.expand("a b c"))
        }
        #expect(got == Echo(text: "hello") && expanded.map(\.text) == ["a", "b", "c"])
        await #expect(throws: RPCError.self) { try await vu.run { try await client.fail() } }
        let calls = seen.calls.withLock { Array($0.suffix(3)) }
        for metadata in calls {
            #expect(metadata.firstString(forKey: "x-j4-run") == "r1" && metadata.firstString(forKey: "x-j4-worker") == "w1" && metadata.firstString(forKey: "x-j4-vu") == "7")
            #expect(metadata.firstString(forKey: "baggage") == "j4.run=r1,j4.worker=w1,j4.vu=7")
            let traceparent = metadata.firstString(forKey: "traceparent") ?? ""
            #expect(traceparent.wholeMatch(of: /00-[0-9a-f]{32}-[0-9a-f]{16}-01/) != nil, "\(traceparent)")
        }
        let fields = Dictionary(uniqueKeysWithValues: recorder.drain().flatMap(\.fields))
        let (steps, _, _, _) = RunSummary.scenarioMetrics(fields.mapValues(String.init))
        #expect(steps["grpc echo.Echo/Get"]?.count == 1 && steps["grpc echo.Echo/Get"]?.failed == 0)
        #expect(steps["grpc echo.Echo/Expand"]?.count == 1 && steps["grpc echo.Echo/Expand"]?.failed == 0)
        #expect(steps["grpc echo.Echo/Fail"]?.failed == 1 && steps["grpc echo.Echo/Fail"]?.errors == ["grpc_unavailable": 1])

        // A VU whose worker may not send to this server: the RPC is refused before it is sent.
        let callsBefore = seen.calls.withLock { $0.count }
        let refusals = Mutex(0)
        let guarded = VUContext(run: "r1", worker: "w1", vu: 8, params: .null, logger: Logger(label: "test"), http: HTTPClient.shared,
                                metrics: ScenarioMetrics(recorder: recorder) { 100 },
                                targets: TargetGuard(allowlist: try TargetAllowlist(parsing: ["127.0.0.1:\(port == 1 ? 2 : 1)"])) { _ in refusals.withLock { $0 += 1 } })
        for _ in 0..<2 {
            await #expect(throws: (any Error).self) { try await guarded.run { try await client.get("refused") } }
        }
        #expect(seen.calls.withLock { $0.count } == callsBefore)
        #expect(refusals.withLock { $0 } == 1)
        let refused = Dictionary(recorder.drain().flatMap(\.fields), uniquingKeysWith: +)
        #expect(RunSummary.scenarioMetrics(refused.mapValues(String.init)).0["grpc echo.Echo/Get"]?.errors == ["target_refused": 2])

        grpc.beginGracefulShutdown()
        try await connections.value
        server.beginGracefulShutdown()
        try await serving.value
    }
}

extension Metadata {
    func firstString(forKey key: String) -> String? {
        for value in self[stringValues: key] { return value }
        return nil
    }
}
