import J4

// Each VU logs in with an account of its own from the `accounts` pool, then each iteration
// lists products (REST), adds one to the cart (GraphQL) and checks out (REST).
let checkout = Scenario("checkout") { vu in
    let base = vu.params["baseURL"]?.stringValue ?? "http://127.0.0.1:8081"
    let account = try await vu.pool("accounts").checkout()
    let login = try await vu.request("login", "POST", base + "/login", headers: account.headers, json: [
        "user": .string(account.string("user") ?? ""), "password": .string(account.string("password") ?? ""),
    ])
    guard let token = try login.json()["token"]?.stringValue else { throw ScenarioError("no_token", "login gave no token") }
    let auth = [("authorization", "Bearer " + token)] + account.headers
    vu.onTeardown {
        // Only while the account is still ours: after a lost hold another VU may be using it.
        if vu.holdsTrusted { _ = try? await vu.request("logout", "POST", base + "/logout", headers: auth) }
    }

    return { it in
        let products = try await it.request("products", "GET", base + "/products", headers: auth).json().arrayValue ?? []
        it.check("products are listed", !products.isEmpty)
        let pick = products[Int(it.iteration % Int64(max(products.count, 1)))]["id"]?.intValue ?? 1
        let cart = try await it.graphQL("add_to_cart", url: base + "/graphql", query: """
            mutation Add($id: Int!, $quantity: Int!) {
              addToCart(productId: $id, quantity: $quantity) { items { productId quantity } totalCents }
            }
            """, variables: ["id": .int(pick), "quantity": .int(1)], operationName: "Add", headers: auth)
        let items = cart["addToCart"]?["items"]?.arrayValue ?? []
        it.check("the cart holds the product", items.contains { $0["productId"]?.intValue == pick })
        let order = try await it.request("checkout", "POST", base + "/checkout", headers: auth).json()
        it.check("the order costs what the cart did", order["totalCents"] == cart["addToCart"]?["totalCents"])
        it.metrics.count("orders")
    }
}

await J4CLI.main(scenarios: [checkout])
