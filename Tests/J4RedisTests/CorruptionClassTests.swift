import J4Redis
@testable import J4Runtime
import Testing

@Suite("Which Redis errors mean a run's data is unusable")
struct CorruptionClassTests {
    @Test("data errors fail the run; refusals and outages do not", arguments: [
        ("WRONGTYPE Operation against a key holding the wrong kind of value script: ab12, on @user_script:55.", true),
        ("J4_NO_RUN", true),
        ("J4_CORRUPT the leases set is missing", true),
        ("ERR user_script:91: attempt to perform arithmetic on a nil value script: ab12, on @user_script:91.", true),
        ("ERR value is not an integer or out of range script: ab12, on @user_script:120.", true),
        // An ACL gap in a script (Redis 7.0, then 7.2 wording) is the deployment's mistake.
        ("ERR The user executing the script can't run this command or subcommand script: ab12, on @user_script:63.", false),
        ("ERR ACL failure in script: No permissions to run the 'hset' command script: ab12, on @user_script:63.", false),
        ("NOPERM this user has no permissions to run the 'evalsha' command", false),
        ("NOSCRIPT No matching script. Please use EVAL.", false),
        ("BUSY Redis is busy running a script.", false),
        ("OOM command not allowed when used memory > 'maxmemory'.", false),
        ("READONLY You can't write against a read only replica.", false),
        ("LOADING Redis is loading the dataset in memory", false),
    ])
    func classes(reply: String, corrupt: Bool) {
        #expect((RunClient.corruption(RedisError.fromReply(reply)) != nil) == corrupt, "\(reply)")
    }

    @Test("a lost connection is never corruption")
    func outages() {
        #expect(RunClient.corruption(.connection("reset by peer")) == nil)
        #expect(RunClient.corruption(.backingOff("refused")) == nil)
    }
}
