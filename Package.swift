// swift-tools-version: 6.0
import Foundation
import PackageDescription

/// One settings array for every target (Swift 6 language mode is the default for tools 6.0).
let settings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

/// scripts/fuzz-definitions.sh sets J4_FUZZ=1 (with its own --scratch-path): the definition
/// parser and its fuzz target are then built with libFuzzer's coverage instrumentation.
let fuzzing = ProcessInfo.processInfo.environment["J4_FUZZ"] == "1"
let fuzzed: [SwiftSetting] = fuzzing ? [.unsafeFlags(["-sanitize=fuzzer"])] : []

let package = Package(
    name: "J4",
    platforms: [.macOS(.v15)],
    products: [
        /// What a user's own scenario package depends on: the scenario API (J4Scenario, J4Core)
        /// and the whole `j4` command line; the cluster's internals are not part of it.
        .library(name: "J4", targets: ["J4"]),
        /// The gRPC client interceptor, for scenarios that use grpc-swift 2.
        .library(name: "J4GRPC", targets: ["J4GRPC"]),
        .executable(name: "j4", targets: ["j4"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.25.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.27.0"),
        .package(url: "https://github.com/apple/swift-nio-http2", from: "1.35.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/hummingbird-project/swift-websocket", from: "1.6.0"),
        .package(url: "https://github.com/grpc/grpc-swift-2", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        // Only for the example shop server in examples/http-checkout.
        .package(url: "https://github.com/GraphQLSwift/GraphQL", from: "4.0.0"),
    ],
    targets: [
        // C module: hiredis 0.14 from Debian's libhiredis-dev. No Swift inside.
        .systemLibrary(
            name: "CHiredis",
            pkgConfig: "hiredis",
            providers: [.apt(["libhiredis-dev"])]
        ),
        // Build tool that turns lua/*.lua into a Swift source file, so the binary carries its scripts.
        .executableTarget(name: "J4LuaEmbed", swiftSettings: settings),
        .plugin(
            name: "EmbedLuaScripts",
            capability: .buildTool(),
            dependencies: ["J4LuaEmbed"]
        ),
        // Redis client: connections on dedicated threads, replies, script registry, key names.
        .target(
            name: "J4Redis",
            dependencies: [
                "CHiredis",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: settings,
            plugins: ["EmbedLuaScripts"]
        ),
        // Pure core: curves, ticks, striping, quotas, run definitions and validation. No I/O.
        .target(
            name: "J4Core",
            dependencies: [.product(name: "Yams", package: "Yams")],
            swiftSettings: settings + fuzzed
        ),
        // The calibration HTTP server `j4 sink`.
        .target(
            name: "J4Sink",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
            ],
            swiftSettings: settings
        ),
        // The scenario API, what a user's scenarios see: Scenario, the VU and iteration
        // contexts, the protocol clients (HTTP, GraphQL, WebSocket, streams), steps, checks,
        // custom metrics and pool items. Public API of the J4 product.
        .target(
            name: "J4Scenario",
            dependencies: [
                "J4Core", "J4Redis",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "WSClient", package: "swift-websocket"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: settings
        ),
        // The cluster: worker, supervisor, the Redis-side protocol (typed script clients),
        // pools, summaries and reports. Not public API of the J4 product.
        .target(
            name: "J4Runtime",
            dependencies: [
                "J4Core", "J4Redis", "J4Scenario",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: settings
        ),
        // gRPC instrumentation: a client interceptor for grpc-swift 2 (its own product, so
        // that users without gRPC do not build it).
        .target(
            name: "J4GRPC",
            dependencies: ["J4Scenario", .product(name: "GRPCCore", package: "grpc-swift-2")],
            swiftSettings: settings
        ),
        // The command line, as a library: a user's executable calls `J4CLI.main(scenarios:)`.
        .target(
            name: "J4",
            dependencies: [
                "J4Core", "J4Redis", "J4Scenario", "J4Runtime", "J4Sink",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: settings
        ),
        .executableTarget(name: "j4", dependencies: ["J4"], swiftSettings: settings),
        // The README's "your own scenarios" example, compiled so that it cannot rot.
        .executableTarget(name: "j4-example", dependencies: ["J4"], path: "examples/custom-scenario", swiftSettings: settings),
        // Scenarios in Swift that scripts/bench/throughput.sh measures next to the built-in one.
        .executableTarget(name: "j4-bench-scenarios", dependencies: ["J4"], path: "examples/bench-scenarios", swiftSettings: settings),
        // gRPC and WebSocket through J4 next to bare client loops, for scripts/bench/protocols.sh.
        .executableTarget(
            name: "j4-bench-protocols",
            dependencies: [
                "J4", "J4GRPC",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "WSClient", package: "swift-websocket"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"), .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "examples/bench-protocols",
            swiftSettings: settings),
        // The code of docs/SCENARIOS.md, compiled so that the guide cannot rot.
        .executableTarget(
            name: "j4-guide",
            dependencies: [
                "J4", "J4GRPC",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
            ],
            path: "examples/guide",
            swiftSettings: settings
        ),
        // examples/http-checkout, built here too so that CI compiles it with the package's own
        // build (the example's Package.swift builds the same sources on its own).
        .executableTarget(name: "checkout-j4", dependencies: ["J4"], path: "examples/http-checkout/Sources/CheckoutLoad", swiftSettings: settings),
        .executableTarget(
            name: "checkout-server",
            dependencies: [
                .product(name: "GraphQL", package: "GraphQL"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "examples/http-checkout/Sources/CheckoutServer",
            swiftSettings: settings
        ),
        // examples/chat, likewise.
        .executableTarget(name: "chat-j4", dependencies: ["J4"], path: "examples/chat/Sources/ChatLoad", swiftSettings: settings),
        .executableTarget(
            name: "chat-server",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ],
            path: "examples/chat/Sources/ChatServer",
            swiftSettings: settings
        ),
        // The definition parser's fuzz target. Built plainly, it replays the inputs given as
        // files; built by scripts/fuzz-definitions.sh with -sanitize=fuzzer, it is libFuzzer.
        .executableTarget(
            name: "j4-definition-fuzz", dependencies: ["J4Core"], path: "Sources/J4DefinitionFuzz",
            swiftSettings: settings + fuzzed + (fuzzing ? [.define("J4_FUZZ")] : []),
            linkerSettings: fuzzing ? [.unsafeFlags(["-sanitize=fuzzer", "-use-ld=lld"])] : []
        ),
        // Test support: real redis-server processes, free ports, child processes.
        .target(
            name: "J4TestSupport",
            dependencies: [
                "J4Redis", "J4Core", "J4Scenario", "J4Runtime", "J4Sink",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: settings
        ),
        .testTarget(name: "J4CoreTests", dependencies: ["J4Core", "J4TestSupport"], swiftSettings: settings),
        // The worker's and supervisor's decisions as pure code: table tests, no Redis, no clock.
        .testTarget(name: "J4RuntimeTests", dependencies: ["J4Runtime", "J4Scenario", "J4Core"], swiftSettings: settings),
        .testTarget(
            name: "J4RedisTests",
            dependencies: ["J4Redis", "J4Runtime", "J4Scenario", "J4Core", "J4TestSupport"],
            swiftSettings: settings
        ),
        .testTarget(
            name: "J4GRPCTests",
            dependencies: [
                "J4GRPC", "J4Scenario", "J4Runtime",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
            ],
            swiftSettings: settings
        ),
        .testTarget(
            name: "J4EndToEndTests",
            dependencies: [
                "J4Core", "J4Redis", "J4Scenario", "J4Runtime", "J4TestSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"), .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"), .product(name: "Yams", package: "Yams"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"), .product(name: "NIOHPACK", package: "swift-nio-http2"),
            ],
            swiftSettings: settings
        ),
    ]
)
