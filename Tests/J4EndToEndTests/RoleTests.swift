import Foundation
import J4Core
import J4Redis
import J4Runtime
import J4TestSupport
import Testing

/// The ACL users of `deploy/k8s/base/users.acl` on a real redis-server: each role does its
/// job with nothing denied, and what a role may not do is refused before anything is written.
extension EndToEndTests {
    static var aclFile: String {
        get throws {
            let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            return try String(contentsOf: root.appendingPathComponent("deploy/k8s/base/users.acl"), encoding: .utf8)
        }
    }

    @Test("ACL roles: worker, supervisor, submitter and viewer each do their job with no command denied; a viewer cannot stop, scale, abort or submit; a worker cannot submit")
    func aclRoles() async throws {
        let acl = try Self.aclFile
        let redis = try await EmbeddedRedis.start(extraArguments: ["--aclfile", try temporaryFile(acl, suffix: ".acl")])
        let sink = try await SinkProcess.start()
        func env(_ role: String) -> [String: String] {
            ["J4_REDIS_URL": redis.url, "J4_REDIS_USER": "j4-\(role)", "J4_REDIS_PASSWORD": aclPassword("j4-\(role)", in: acl)]
        }
        func connection(_ role: String) -> RedisConnection {
            RedisConnection(
                endpoint: RedisEndpoint(address: .unix(path: redis.socketPath), user: "j4-\(role)", password: aclPassword("j4-\(role)", in: acl)),
                options: RedisConnectionOptions(clientName: "j4-test-\(role)"))
        }
        let admin = connection("admin")
        var processes = [try J4Binary.start(["supervisor", "--id", "s0"], environment: env("supervisor"))]
        for i in 0..<2 { processes.append(try J4Binary.start(["worker", "--id", "w\(i)"], environment: env("worker"))) }
        try await waitForWorkers(["w0", "w1"], on: admin)

        // The submitter submits and scales; the viewer watches; the workers and the supervisor run it.
        // 15 s: long enough that the scale below still lands in the run after the viewer's
        // commands and dashboard on a loaded machine.
        let file = try holdDefinition(rate: 100, seconds: 15, shards: 4, target: sink.url)
        let run = try await submitRun(file, environment: env("submitter"))
        let ctl = RunKeys(run: run).ctl
        try await waitFor("the run to start", timeout: .seconds(15)) { try await admin.send(["HGET", ctl, "state"]).string == "running" }
        for refused in [["stop", run], ["abort", run], ["scale", run, "--target", "500"], ["submit", file], ["delete", run, "--force"]] {
            let (c, o) = try await J4Binary.run(refused, environment: env("viewer"))
            #expect(c != 0 && o.contains("NOPERM"), "viewer \(refused[0]): \(o)")
        }
        // The viewer's dashboard shows the run and, even with --allow-control, cannot change it.
        let (dashboard, port) = try await Self.startDashboard(nil, ["--allow-control"], environment: env("viewer"))
        let (shownCode, shown) = try await Self.http(port, "/api/runs/\(run)")
        #expect(shownCode == 200 && Self.object(shown)["run"] as? String == run, "\(shown)")
        var stream = Self.serverSentEvents(port, "/api/runs/\(run)/stream").makeAsyncIterator()
        while let e = try await stream.next(), e.event != "point" {}
        for (control, body) in [("stop", ""), ("abort", ""), ("scale", #"{"target": 500}"#)] {
            let (code, answer) = try await Self.http(port, "/api/runs/\(run)/\(control)", method: "POST", body: body)
            #expect(code == 403 && answer.contains("NOPERM"), "viewer's dashboard \(control): \(code) \(answer)")
        }
        dashboard.send(SIGTERM)
        _ = await dashboard.wait()
        #expect(try await admin.send(["HGET", ctl, "state"]).string == "running")
        #expect(try await admin.send(["HGET", ctl, "scales"]).string == nil)
        let viewerDenials = try await admin.send(["ACL", "LOG"]).array ?? []
        // Redis groups repeated denials: one entry per (user, command), each the viewer's.
        let users = viewerDenials.compactMap { entry -> String? in
            let fields = entry.array?.compactMap(\.string) ?? []
            return fields.firstIndex(of: "username").map { fields[$0 + 1] }
        }
        #expect(!users.isEmpty && users.allSatisfy { $0 == "j4-viewer" }, "\(viewerDenials)")
        try await admin.send(["ACL", "LOG", "RESET"])
        let (scaleCode, scaleOut) = try await J4Binary.run(["scale", run, "--target", "150"], environment: env("submitter"))
        #expect(scaleCode == 0, "\(scaleOut)")
        let (statusCode, statusOut) = try await J4Binary.run(["status", run], environment: env("viewer"))
        #expect(statusCode == 0 && statusOut.contains(run), "\(statusOut)")
        let (waitCode, waitOut) = try await J4Binary.run(["wait", run, "--timeout", "60s"], environment: env("viewer"))
        #expect(waitCode == 0, "\(waitOut)")
        let (reportCode, reportOut) = try await J4Binary.run(["report", run, "--format", "json"], environment: env("viewer"))
        #expect(reportCode == 0, "\(reportOut)")
        let summary = try await J4Binary.summary(run, url: redis.url, environment: env("viewer"))
        let started = summary["started"] as? Int ?? -1
        // Scaled up mid-run: more than 1500, and every iteration J4 counts arrived at the sink.
        #expect(started > 1500 && started == summary["target"] as? Int, "\(summary)")
        #expect(try await sink.stats().requests == Int64(started))
        // Not one command of the run was denied to any role since.
        let denied = try await admin.send(["ACL", "LOG"]).array ?? []
        #expect(denied.isEmpty, "ACL LOG: \(denied)")
        // The submitter deletes the run once it has ended: no key of it is left, nor its entry.
        let (deleteCode, deleteOut) = try await J4Binary.run(["delete", run], environment: env("submitter"))
        #expect(deleteCode == 0, "\(deleteOut)")
        #expect(try await admin.send(["ZSCORE", GlobalKeys.runs, run]).string == nil)
        #expect(try await admin.send(["EXISTS", ctl]).int == 0)
        #expect((try await admin.send(["ACL", "LOG"]).array ?? []).isEmpty, "the submitter's delete was refused something")

        // What each role may not do is refused, and nothing is written.
        let before = try await admin.send(["DBSIZE"]).string
        let history = try await admin.send(["ZCARD", GlobalKeys.runs]).string
        for role in ["worker", "supervisor", "viewer"] {
            let (c, o) = try await J4Binary.run(["submit", file], environment: env(role))
            #expect(c != 0 && o.contains("NOPERM"), "\(role) submit: \(o)")
        }
        for role in ["worker", "supervisor", "submitter", "viewer"] {
            let c = connection(role)
            await #expect(throws: RedisError.self, "\(role) writes outside j4:") { try await c.send(["SET", "not-j4", "x"]) }
            await #expect(throws: RedisError.self, "\(role) reads outside j4:") { try await c.send(["GET", "not-j4"]) }
            await #expect(throws: RedisError.self, "\(role) flushes") { try await c.send(["FLUSHALL"]) }
            await c.close()
        }
        // A viewer cannot speak on j4:signals (a forged "<run> aborted" would abort a run).
        let viewer = connection("viewer")
        await #expect(throws: RedisError.self, "a viewer publishes on j4:signals") { try await viewer.send(["PUBLISH", GlobalKeys.signals, "\(run) aborted 0"]) }
        await viewer.close()
        let worker = connection("worker")
        await #expect(throws: RedisError.self, "a worker takes the supervisor's lock") { try await worker.send(["SET", GlobalKeys.leader, "w0", "PX", "60000"]) }
        await #expect(throws: RedisError.self, "a worker indexes a run") { try await worker.send(["SADD", GlobalKeys.active, "x"]) }
        await worker.close()
        // The supervisor may take runs out of the list (retention), not put them in.
        let supervisor = connection("supervisor")
        await #expect(throws: RedisError.self, "a supervisor adds to j4:runs") { try await supervisor.send(["ZADD", GlobalKeys.runs, "1", "x"]) }
        #expect(try await supervisor.send(["ZREM", GlobalKeys.runs, "not-a-run"]).int == 0)
        await supervisor.close()
        #expect(try await admin.send(["DBSIZE"]).string == before)
        #expect(try await admin.send(["ZCARD", GlobalKeys.runs]).string == history)

        for p in processes { p.send(SIGTERM) }
        for p in processes { #expect(await p.wait() == 0) }
        await admin.close()
        await sink.stop()
        await redis.stop()
    }
}
