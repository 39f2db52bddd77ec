// swift-tools-version: 6.0
import PackageDescription

// The chat example as a user's own package: the J4 library (by path here; by URL in
// your own package), the chat scenario compiled into its own `j4` command line, and a small
// WebSocket chat server to aim at.
let package = Package(
    name: "chat",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "J4", path: "../.."),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
    ],
    targets: [
        // `chat-j4 run chat.yaml --pool accounts=data/accounts.csv`
        .executableTarget(name: "chat-j4", dependencies: [.product(name: "J4", package: "J4")], path: "Sources/ChatLoad"),
        .executableTarget(
            name: "chat-server",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ],
            path: "Sources/ChatServer"
        ),
    ]
)
