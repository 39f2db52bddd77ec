// checkout-server: a small shop for the http-checkout example. REST for login, products and
// checkout; GraphQL (GraphQLSwift) for the cart. It counts what it serves, so a load test's
// figures can be checked against the server's, and it counts "conflicts": requests made with
// a session of an account that has logged in again since, which is what two VUs holding the
// same pooled account at once would cause.
//
//   checkout-server [--port 8081]     GET /__stats for the counts
import Foundation
import GraphQL
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

struct Product: Sendable {
    let id: Int
    let name: String
    let priceCents: Int
}

let products = (1...10).map { Product(id: $0, name: "product-\($0)", priceCents: 100 * $0 + 99) }

/// Everything the shop knows, behind one lock.
final class Shop: Sendable {
    struct Session {
        var account: String
        var cart: [Int: Int] = [:]
    }
    struct State {
        var sessions: [String: Session] = [:]
        var current: [String: String] = [:]  // account → its newest session token
        var counts: [String: Int] = [:]
        var orders = 0
    }
    let state = Mutex(State())

    func count(_ key: String, _ n: Int = 1) { state.withLock { $0.counts[key, default: 0] += n } }

    func login(user: String, password: String) -> String? {
        guard password == "secret-" + user else { return nil }
        let token = UUID().uuidString
        state.withLock { s in
            s.sessions[token] = Session(account: user)
            s.current[user] = token
            s.counts["logins", default: 0] += 1
        }
        return token
    }

    /// The session of `token`; a session whose account has logged in again since is a conflict.
    func session(_ token: String?, counting: Bool = true) -> Session? {
        guard let token else { return nil }
        return state.withLock { s in
            guard let session = s.sessions[token] else { return nil }
            if counting, s.current[session.account] != token { s.counts["conflicts", default: 0] += 1 }
            return session
        }
    }

    func logout(_ token: String?) {
        guard let token else { return }
        state.withLock { s in
            if let account = s.sessions.removeValue(forKey: token)?.account, s.current[account] == token { s.current[account] = nil }
            s.counts["logouts", default: 0] += 1
        }
    }

    func add(token: String, product: Int, quantity: Int) -> [Int: Int]? {
        state.withLock { s in
            guard s.sessions[token] != nil else { return nil }
            s.sessions[token]!.cart[product, default: 0] += quantity
            return s.sessions[token]!.cart
        }
    }

    func checkout(token: String) -> (order: Int, totalCents: Int)? {
        state.withLock { s in
            guard let cart = s.sessions[token]?.cart, !cart.isEmpty else { return nil }
            let total = cart.reduce(0) { sum, item in sum + (products.first { $0.id == item.key }?.priceCents ?? 0) * item.value }
            s.sessions[token]!.cart = [:]
            s.orders += 1
            s.counts["checkouts", default: 0] += 1
            return (s.orders, total)
        }
    }

    var stats: [String: Int] {
        state.withLock { s in
            var c = s.counts
            c["active_sessions"] = s.sessions.count
            for key in ["logins", "logouts", "checkouts", "conflicts", "graphql", "graphql_errors", "products", "requests"] where c[key] == nil { c[key] = 0 }
            return c
        }
    }
}

let shop = Shop()

/// The cart's GraphQL schema: `products`, `cart`, and `addToCart(productId, quantity)`.
let schema: GraphQLSchema = {
    let productType = try! GraphQLObjectType(name: "Product", fields: [
        "id": GraphQLField(type: GraphQLNonNull(GraphQLInt)),
        "name": GraphQLField(type: GraphQLNonNull(GraphQLString)),
        "priceCents": GraphQLField(type: GraphQLNonNull(GraphQLInt)),
    ])
    let itemType = try! GraphQLObjectType(name: "CartItem", fields: [
        "productId": GraphQLField(type: GraphQLNonNull(GraphQLInt)),
        "quantity": GraphQLField(type: GraphQLNonNull(GraphQLInt)),
    ])
    let cartType = try! GraphQLObjectType(name: "Cart", fields: [
        "items": GraphQLField(type: GraphQLNonNull(GraphQLList(GraphQLNonNull(itemType)))),
        "totalCents": GraphQLField(type: GraphQLNonNull(GraphQLInt)),
    ])
    struct CartItem: Sendable { let productId: Int, quantity: Int }
    struct CartView: Sendable { let items: [CartItem], totalCents: Int }
    @Sendable func cartMap(_ cart: [Int: Int]) -> CartView {
        let total = cart.reduce(0) { sum, item in sum + (products.first { $0.id == item.key }?.priceCents ?? 0) * item.value }
        return CartView(items: cart.keys.sorted().map { CartItem(productId: $0, quantity: cart[$0]!) }, totalCents: total)
    }
    struct Unauthorized: Error, CustomStringConvertible { var description: String { "not logged in" } }
    struct UnknownProduct: Error, CustomStringConvertible { let id: Int; var description: String { "no product \(id)" } }
    return try! GraphQLSchema(
        query: GraphQLObjectType(name: "Query", fields: [
            "products": GraphQLField(type: GraphQLNonNull(GraphQLList(GraphQLNonNull(productType)))) { _, _, _, _ in
                products
            },
            "cart": GraphQLField(type: cartType) { _, _, context, _ in
                guard let token = context as? String, let session = shop.session(token) else { throw Unauthorized() }
                return cartMap(session.cart)
            },
        ]),
        mutation: GraphQLObjectType(name: "Mutation", fields: [
            "addToCart": GraphQLField(
                type: GraphQLNonNull(cartType),
                args: ["productId": GraphQLArgument(type: GraphQLNonNull(GraphQLInt)), "quantity": GraphQLArgument(type: GraphQLNonNull(GraphQLInt))]
            ) { _, args, context, _ in
                guard let token = context as? String, shop.session(token) != nil else { throw Unauthorized() }
                let id = args["productId"].int ?? -1
                guard products.contains(where: { $0.id == id }) else { throw UnknownProduct(id: id) }
                guard let cart = shop.add(token: token, product: id, quantity: args["quantity"].int ?? 1) else { throw Unauthorized() }
                return cartMap(cart)
            },
        ])
    )
}()

func json(_ value: Any) -> String {
    String(decoding: (try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys])) ?? Data("{}".utf8), as: UTF8.self)
}

/// One HTTP/1.1 connection: gathers each request, answers it.
final class Handler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    var head: HTTPRequestHead?
    var body = ByteBuffer()

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body.clear()
        case .body(var b):
            body.writeBuffer(&b)
        case .end:
            guard let h = head else { return }
            let text = String(buffer: body)
            let loop = context.eventLoop
            let ctx = NIOLoopBound(context, eventLoop: loop)
            let me = NIOLoopBound(self, eventLoop: loop)
            Task {
                let (status, reply) = await respond(h, text)
                loop.execute { me.value.write(ctx.value, status, reply, keepAlive: h.isKeepAlive) }
            }
        }
    }

    func write(_ context: ChannelHandlerContext, _ status: HTTPResponseStatus, _ body: String, keepAlive: Bool) {
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: "application/json")
        headers.add(name: "content-length", value: String(body.utf8.count))
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in if !keepAlive { context.close(promise: nil) } }
    }
}

func respond(_ head: HTTPRequestHead, _ body: String) async -> (HTTPResponseStatus, String) {
    let path = head.uri.split(separator: "?").first.map(String.init) ?? head.uri
    let token = head.headers.first(name: "authorization").flatMap { $0.hasPrefix("Bearer ") ? String($0.dropFirst(7)) : nil }
    let input = (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:]
    if path != "/__stats" { shop.count("requests") }
    switch (head.method, path) {
    case (.GET, "/__stats"):
        return (.ok, json(shop.stats))
    case (.POST, "/login"):
        guard let user = input["user"] as? String, let password = input["password"] as? String, let t = shop.login(user: user, password: password) else {
            return (.unauthorized, json(["error": "bad user or password"]))
        }
        return (.ok, json(["token": t]))
    case (.POST, "/logout"):
        shop.logout(token)
        return (.ok, json(["ok": true]))
    case (.GET, "/products"):
        guard shop.session(token) != nil else { return (.unauthorized, json(["error": "not logged in"])) }
        shop.count("products")
        return (.ok, json(products.map { ["id": $0.id, "name": $0.name, "priceCents": $0.priceCents] }))
    case (.POST, "/checkout"):
        guard let token, shop.session(token) != nil else { return (.unauthorized, json(["error": "not logged in"])) }
        guard let (order, total) = shop.checkout(token: token) else { return (.conflict, json(["error": "the cart is empty"])) }
        return (.ok, json(["order": order, "totalCents": total]))
    case (.POST, "/graphql"):
        shop.count("graphql")
        guard let query = input["query"] as? String else { return (.badRequest, json(["errors": [["message": "no query"]]])) }
        var variables: [String: Map] = [:]
        for (k, v) in input["variables"] as? [String: Any] ?? [:] {
            if let i = v as? Int { variables[k] = .number(Number(i)) } else if let s = v as? String { variables[k] = .string(s) }
        }
        do {
            let result = try await graphql(schema: schema, request: query, context: token ?? "", variableValues: variables, operationName: input["operationName"] as? String)
            if !result.errors.isEmpty { shop.count("graphql_errors") }
            let encoded = try GraphQLJSONEncoder().encode(result)
            return (.ok, String(decoding: encoded, as: UTF8.self))
        } catch {
            shop.count("graphql_errors")
            return (.ok, json(["errors": [["message": "\(error)"]]]))
        }
    default:
        return (.notFound, json(["error": "no route \(head.method) \(path)"]))
    }
}

var port = 8081
var arguments = CommandLine.arguments.dropFirst()
while let a = arguments.popFirst() {
    if a == "--port", let p = arguments.popFirst().flatMap(Int.init) { port = p } else {
        FileHandle.standardError.write(Data("usage: checkout-server [--port N]\n".utf8))
        exit(2)
    }
}
let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
    .childChannelInitializer { channel in
        channel.pipeline.configureHTTPServerPipeline().flatMap { channel.pipeline.addHandler(Handler()) }
    }
    .bind(host: "127.0.0.1", port: port).get()
FileHandle.standardOutput.write(Data("checkout-server listening on http://127.0.0.1:\(channel.localAddress?.port ?? port)/\n".utf8))
try await channel.closeFuture.get()
