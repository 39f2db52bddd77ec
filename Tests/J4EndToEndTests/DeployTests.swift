import Foundation
import J4Core
import J4Redis
import J4Runtime
import J4TestSupport
import Testing
import Yams

/// The Kubernetes manifests in deploy/k8s, rendered by kustomize, checked against the schemas
/// and against the binary: every container of J4's image is started as a real process with
/// the args, env, secrets and probes the manifests give it.
@Suite("Kubernetes manifests (kustomize, schemas, and the binary)", .serialized)
struct DeployTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let kustomizations = ["overlays/dev", "overlays/ha", "examples/autoscaling", "examples/submit-job"]

    /// `kubectl kustomize deploy/k8s/<dir>` as YAML documents.
    static func render(_ dir: String) async throws -> (text: String, documents: [[String: Any]]) {
        let (code, text) = try await runTool(["kubectl", "kustomize", root.appendingPathComponent("deploy/k8s/\(dir)").path])
        #expect(code == 0, "kubectl kustomize \(dir): \(text)")
        let documents = try Yams.load_all(yaml: text).compactMap { $0 as? [String: Any] }
        return (text, documents)
    }


    static func find(_ docs: [[String: Any]], _ kind: String, _ namePrefix: String) -> [String: Any]? {
        docs.first { $0["kind"] as? String == kind && ((($0["metadata"] as? [String: Any])?["name"] as? String)?.hasPrefix(namePrefix) ?? false) }
    }

    static func decodedSecret(_ doc: [String: Any]?) -> [String: String] {
        var out: [String: String] = [:]
        for (k, v) in (doc?["data"] as? [String: String]) ?? [:] {
            out[k] = Data(base64Encoded: v, options: .ignoreUnknownCharacters).flatMap { String(data: $0, encoding: .utf8) }
        }
        return out
    }

    static func containers(_ doc: [String: Any]?) -> [[String: Any]] {
        let spec = (doc?["spec"] as? [String: Any])?["template"] as? [String: Any]
        return ((spec?["spec"] as? [String: Any])?["containers"] as? [[String: Any]]) ?? []
    }

    /// The container's environment as Kubernetes would set it: literal values with `$(VAR)`
    /// expanded, secrets decoded from the rendered Secrets, the pod name from the downward API.
    static func environment(_ container: [String: Any], docs: [[String: Any]], podName: String) -> [String: String] {
        var env: [String: String] = [:]
        for e in (container["env"] as? [[String: Any]]) ?? [] {
            guard let name = e["name"] as? String else { continue }
            if var value = e["value"] as? String {
                for (k, v) in env { value = value.replacingOccurrences(of: "$(\(k))", with: v) }
                env[name] = value
            } else if let from = e["valueFrom"] as? [String: Any] {
                if let ref = from["secretKeyRef"] as? [String: Any], let secret = ref["name"] as? String, let key = ref["key"] as? String {
                    env[name] = decodedSecret(find(docs, "Secret", secret))[key]
                } else if let ref = from["configMapKeyRef"] as? [String: Any], let map = ref["name"] as? String, let key = ref["key"] as? String {
                    env[name] = (find(docs, "ConfigMap", map)?["data"] as? [String: String])?[key]
                } else if let field = (from["fieldRef"] as? [String: Any])?["fieldPath"] as? String, field == "metadata.name" {
                    env[name] = podName
                }
            }
        }
        return env
    }

    @Test("every kustomization renders and validates strictly against the Kubernetes schemas")
    func validate() async throws {
        for dir in Self.kustomizations {
            let (text, docs) = try await Self.render(dir)
            let file = try temporaryFile(text)
            let (code, output) = try await runTool(["kubernetes-validate", "--strict", "--quiet", file])
            #expect(code == 0, "\(dir): \(output)")
            #expect(!docs.isEmpty)
        }
        // The PodMonitor is a CRD of the Prometheus Operator: its own schema is not in
        // kubernetes-validate, so it is only checked to be one well-formed document.
        let monitor = try Yams.load_all(yaml: String(contentsOf: Self.root.appendingPathComponent("deploy/k8s/examples/monitoring/pod-monitor.yaml"), encoding: .utf8)).compactMap { $0 as? [String: Any] }
        #expect(monitor.count == 1 && monitor[0]["kind"] as? String == "PodMonitor")
    }

    @Test("the ha overlay: J4 reaches Redis through the Sentinels, every user and password the Redis pods need exists, and a primary without a replica refuses writes")
    func highAvailability() async throws {
        let (_, docs) = try await Self.render("overlays/ha")
        for name in ["j4-supervisor", "j4-worker"] {
            let container = try #require(Self.containers(Self.find(docs, "Deployment", name)).first)
            let env = Self.environment(container, docs: docs, podName: name)
            let endpoint = try RedisEndpoint.fromEnvironment(env["J4_REDIS_URL"])
            guard case .sentinel(let nodes, let master) = endpoint.address else {
                Issue.record("\(name): \(env["J4_REDIS_URL"] ?? "-") is not a Sentinel URL")
                continue
            }
            #expect(master == "j4main" && nodes.count == 3)
        }
        let sentinelConf = (Self.find(docs, "ConfigMap", "j4-sentinel-config")?["data"] as? [String: String])?["sentinel.conf"] ?? ""
        #expect(sentinelConf.contains("sentinel monitor j4main "))
        let credentials = Self.decodedSecret(Self.find(docs, "Secret", "j4-redis-credentials"))
        let acl = Self.decodedSecret(Self.find(docs, "Secret", "j4-redis-users"))["users.acl"] ?? ""
        // Each role's password in the credentials is the one its ACL user has.
        for (role, user) in [("worker", "j4-worker"), ("supervisor", "j4-supervisor"), ("submitter", "j4-submitter"), ("viewer", "j4-viewer"), ("replica", "j4-replica"), ("sentinel", "j4-sentinel")] {
            let password = try #require(credentials[role], "no \(role) password")
            #expect(acl.contains("user \(user) on >\(password) "), "\(user)")
        }
        // redis-server accepts the ACL file (it refuses to start on a bad rule).
        let redis = try await EmbeddedRedis.start(extraArguments: ["--aclfile", try temporaryFile(acl, suffix: ".acl")])
        await redis.stop()
        // The redis pods start through the script the ConfigMap carries.
        let redisContainer = try #require(Self.containers(Self.find(docs, "StatefulSet", "j4-redis")).first)
        #expect((redisContainer["command"] as? [String]) == ["sh", "/etc/redis/start-redis.sh"])
        let start = try #require((Self.find(docs, "ConfigMap", "j4-redis-config")?["data"] as? [String: String])?["start-redis.sh"])
        // Every way the script starts Redis passes the write quorum: a primary cut off from its
        // replicas for longer than the lag (2 s: below the 3 s lease TTL and Sentinel's 5 s) refuses writes.
        let execs = start.split(separator: "\n").filter { $0.trimmingCharacters(in: .whitespaces).hasPrefix("exec redis-server") }
        #expect(execs.count == 3 && execs.allSatisfy { $0.contains("$ha") }, "\(execs)")
        let ha = try #require(start.split(separator: "\n").first { $0.hasPrefix("ha=") }).dropFirst(3).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
        let flags = ha.split(separator: " ").map(String.init)
        #expect(flags == ["--min-replicas-to-write", "1", "--min-replicas-max-lag", "2"], "\(flags)")
        let lagMs = (Int(flags.last ?? "") ?? 99) * 1000
        #expect(Int64(lagMs) < DefinitionLimits.defaultLeaseTTLMs, "the lag must be below the lease TTL")
        // What the flags do, on a real redis-server with no replica: writes are refused.
        let primary = try await EmbeddedRedis.start(extraArguments: flags)
        let c = primary.connect()
        await #expect(throws: RedisError.self, "a primary without a replica refuses writes") { try await c.send(["SET", "k", "v"]) }
        await c.close()
        await primary.stop()
    }

    @Test("the dev overlay's Redis, supervisor and worker run as written: ACL users, env, flags, ports and probes")
    func containersRun() async throws {
        let (_, docs) = try await Self.render("overlays/dev")
        // Redis: the rendered redis.conf and ACL file on a real redis-server.
        let conf = ((Self.find(docs, "ConfigMap", "j4-redis-config")?["data"] as? [String: String])?["redis.conf"]) ?? ""
        let acl = Self.decodedSecret(Self.find(docs, "Secret", "j4-redis-users"))["users.acl"] ?? ""
        #expect(acl.contains("user default off") && acl.contains("user j4-worker on"))
        #expect(conf.contains("maxmemory-policy noeviction") && conf.contains("appendonly yes"))
        var redisArguments: [String] = []
        for line in conf.split(separator: "\n") where !line.hasPrefix("#") && !line.isEmpty {
            let parts = line.split(separator: " ", maxSplits: 1).map(String.init)
            // Where and how it listens and stores is the test's; the rest is the manifest's.
            if ["bind", "port", "dir", "aclfile", "protected-mode"].contains(parts[0]) { continue }
            redisArguments += ["--" + parts[0], parts.count > 1 ? parts[1] : ""]
        }
        redisArguments += ["--aclfile", try temporaryFile(acl, suffix: ".acl")]
        let redis = try await EmbeddedRedis.start(extraArguments: redisArguments)
        defer { Task { await redis.stop() } }
        let adminPassword = aclPassword("j4-admin", in: acl)
        let admin = RedisConnection(endpoint: RedisEndpoint(address: .unix(path: redis.socketPath), user: "j4-admin", password: adminPassword), options: RedisConnectionOptions(clientName: "j4-test-admin"))
        #expect(try await admin.send(["CONFIG", "GET", "appendonly"]).array?.last?.string == "yes")
        #expect(try await admin.send(["CONFIG", "GET", "maxmemory-policy"]).array?.last?.string == "noeviction")

        // The Service the URLs name is Redis' own.
        let service = Self.find(docs, "Service", "j4-redis")?["spec"] as? [String: Any]
        #expect(((service?["ports"] as? [[String: Any]])?.first?["port"] as? Int) == 6379)

        var children: [ChildProcess] = []
        defer { for c in children { c.send(SIGKILL) } }
        var probes: [(String, Int, String, String)] = []  // (deployment, port, readiness path, liveness path)
        for name in ["j4-supervisor", "j4-worker"] {
            let container = try #require(Self.containers(Self.find(docs, "Deployment", name)).first)
            #expect((container["image"] as? String)?.hasSuffix("/j4:latest") == true)
            var args = (container["args"] as? [String]) ?? []
            var env = Self.environment(container, docs: docs, podName: "\(name)-7d9f8-abcde")
            #expect(env["J4_REDIS_URL"] == "redis://j4-redis:6379")
            env["J4_REDIS_URL"] = redis.url
            // The probes' port is the container port, which is the --metrics-port the args give.
            let ports = (container["ports"] as? [[String: Any]]) ?? []
            let metricsPort = try #require(ports.first { $0["name"] as? String == "metrics" }?["containerPort"] as? Int)
            let flag = try #require(args.firstIndex(of: "--metrics-port"))
            #expect(args[flag + 1] == String(metricsPort))
            let readiness = try #require((container["readinessProbe"] as? [String: Any])?["httpGet"] as? [String: Any])
            let liveness = try #require((container["livenessProbe"] as? [String: Any])?["httpGet"] as? [String: Any])
            #expect(readiness["port"] as? String == "metrics" && liveness["port"] as? String == "metrics")
            // Two processes on one host: the port is the only thing changed.
            let (child, port) = try await J4Binary.startListening(Array(args.prefix(flag + 1)) + ["0"] + Array(args.dropFirst(flag + 2)), environment: env, marker: "metrics on http://")
            args[flag + 1] = String(port)
            children.append(child)
            probes.append((name, port, readiness["path"] as? String ?? "?", liveness["path"] as? String ?? "?"))
        }
        for (name, port, ready, live) in probes {
            try await waitFor("\(name) ready on \(ready)", timeout: .seconds(20), every: .milliseconds(200)) { try await httpStatus(port: port, path: ready) == 200 }
            #expect(try await httpStatus(port: port, path: live) == 200, "\(name) \(live)")
        }
        // Each signed in as its own ACL user, named after its pod plus a boot nonce.
        let clients = try await admin.send(["CLIENT", "LIST"]).string ?? ""
        #expect(clients.contains("name=j4-worker:j4-worker-7d9f8-abcde-") && clients.contains("user=j4-worker"))
        #expect(clients.contains("name=j4-supervisor:j4-supervisor-7d9f8-abcde") && clients.contains("user=j4-supervisor"))
        // Without Redis a worker is live but not ready.
        await redis.kill()
        let worker = probes[1]
        try await waitFor("the worker not ready without Redis", timeout: .seconds(20), every: .milliseconds(200)) { try await httpStatus(port: worker.1, path: worker.2) == 503 }
        #expect(try await httpStatus(port: worker.1, path: worker.3) == 200)
        for c in children { c.send(SIGTERM) }
        for c in children { _ = await c.wait() }
        await admin.close()
    }

    @Test("the submit Job submits its ConfigMap's run definition as the submitter user")
    func submitJob() async throws {
        let (_, dev) = try await Self.render("overlays/dev")
        let (_, docs) = try await Self.render("examples/submit-job")
        let acl = Self.decodedSecret(Self.find(dev, "Secret", "j4-redis-users"))["users.acl"] ?? ""
        // No worker runs here: the example's target is not on this machine.
        let redis = try await EmbeddedRedis.start(extraArguments: ["--aclfile", try temporaryFile(acl, suffix: ".acl")])
        defer { Task { await redis.stop() } }
        let container = try #require(Self.containers(Self.find(docs, "Job", "j4-submit")).first)
        let definition = try #require((Self.find(docs, "ConfigMap", "j4-run-definition")?["data"] as? [String: String])?["run.yaml"])
        let mount = try #require(((container["volumeMounts"] as? [[String: Any]])?.first?["mountPath"]) as? String)
        var args = (container["args"] as? [String]) ?? []
        #expect(args == ["submit", mount + "/run.yaml"])
        args[1] = try temporaryFile(definition)
        var env = Self.environment(container, docs: dev, podName: "j4-submit-xyz")
        #expect(env["J4_REDIS_USER"] == "j4-submitter")
        env["J4_REDIS_URL"] = redis.url
        let (code, output) = try await J4Binary.run(args, environment: env)
        #expect(code == 0, "\(output)")
        let run = output.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(RunID.isValid(run), "\(output)")
        let (abortCode, abortOutput) = try await J4Binary.run(["abort", run], environment: env)
        #expect(abortCode == 0, "\(abortOutput)")
        // The viewer reads the run but cannot submit one.
        let viewer = ["J4_REDIS_URL": redis.url, "J4_REDIS_USER": "j4-viewer", "J4_REDIS_PASSWORD": Self.decodedSecret(Self.find(dev, "Secret", "j4-redis-credentials"))["viewer"] ?? ""]
        let (statusCode, statusOutput) = try await J4Binary.run(["status", run], environment: viewer)
        #expect(statusCode == 0 && statusOutput.contains(run), "\(statusOutput)")
        let (refusedCode, refusedOutput) = try await J4Binary.run(args, environment: viewer)
        #expect(refusedCode != 0 && refusedOutput.contains("NOPERM"), "\(refusedOutput)")
    }
}
