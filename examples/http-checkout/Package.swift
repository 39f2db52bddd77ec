// swift-tools-version: 6.0
import PackageDescription

// A user's load-test package: the J4 library (by path here; by URL in your own package),
// its scenario compiled into its own `j4` command line, and a small shop server to aim at.
let package = Package(
    name: "http-checkout",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "J4", path: "../.."),
        .package(url: "https://github.com/GraphQLSwift/GraphQL", from: "4.0.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
    ],
    targets: [
        // `checkout-j4 run checkout.yaml --pool accounts=data/accounts.csv`: the whole j4 CLI
        // with the `checkout` scenario compiled in.
        .executableTarget(name: "checkout-j4", dependencies: [.product(name: "J4", package: "J4")], path: "Sources/CheckoutLoad"),
        // The target: REST login/products/checkout and a GraphQL cart, counting what it serves.
        .executableTarget(
            name: "checkout-server",
            dependencies: [
                .product(name: "GraphQL", package: "GraphQL"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Sources/CheckoutServer"
        ),
    ]
)
