import ArgumentParser
import Foundation
import J4Core
internal import J4Redis
internal import J4Runtime

struct PoolCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pool",
        abstract: "Shared data pools: items (accounts, products…) that VUs check out.",
        subcommands: [PoolLoadCommand.self, PoolShowCommand.self])
}

struct PoolLoadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "load",
        abstract: "Load a pool from a CSV file with a header row, or from JSON lines; replaces the pool.",
        discussion: """
            exclusive (default): across the cluster, an item is held by one VU at a time; it comes \
            back when the VU ends, or when its holder dies or stalls past its hold. shared: every \
            checkout gets the next item in turn, nothing is held. Nothing is written when the file \
            has a problem, or (without --force) while items of the pool are checked out.
            """)

    @Argument(help: "The pool's name (letters, digits, '_', '-', '.'; up to 64).") var name: String
    @Argument(help: "The file: .csv, or .jsonl / .ndjson / .json (one JSON value per line).") var file: String
    @Option(name: .long, help: "exclusive or shared.") var mode = "exclusive"
    @Option(name: .long, help: "csv or jsonl (default: from the file name).") var format: String?
    @Flag(name: .long, help: "Replace the pool even while items are checked out.") var force = false
    @OptionGroup var redisOptions: RedisOptions

    func run() async throws {
        guard Pools.isValidName(name) else {
            throw CLIError.invalid("pool name \(name) is not accepted; use 1 to 64 characters of letters, digits, '_', '-' and '.'")
        }
        guard mode == "exclusive" || mode == "shared" else { throw CLIError.invalid("--mode \(mode) is not accepted; use exclusive or shared") }
        let items = try readPoolFile(file, format: format)
        let connection = RedisConnection(endpoint: try redisOptions.endpoint(), options: RedisConnectionOptions(clientName: "j4-pool"))
        guard let count = try await Pools.load(name, mode: mode, items: items, force: force, on: connection) else {
            throw CLIError.invalid("pool \(name) has items checked out by running VUs; wait for its runs to end, or pass --force")
        }
        print("pool \(name): \(count) items, \(mode)")
    }
}

struct PoolShowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "A pool's mode, size, items held (by worker) and first items.")

    @Argument(help: "The pool's name.") var name: String
    @Flag(name: .long, help: "Print JSON.") var json = false
    @OptionGroup var redisOptions: RedisOptions

    func run() async throws {
        guard Pools.isValidName(name) else { throw CLIError.invalid("pool name \(name) is not accepted; use 1 to 64 characters of letters, digits, '_', '-' and '.'") }
        let connection = RedisConnection(endpoint: try redisOptions.endpoint(), options: RedisConnectionOptions(clientName: "j4-pool"))
        guard let info = try await Pools.show(name, on: connection) else { throw CLIError.invalid("no pool \(name) in \(connection.endpoint)") }
        if json {
            let e = JSONEncoder()
            e.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try e.encode(info), as: UTF8.self))
            return
        }
        print("pool \(info.name): \(info.count) items, \(info.mode)")
        if info.mode == "exclusive" {
            print("  held ........ \(info.held)" + (info.holders.isEmpty ? "" : " (" + info.holders.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ") + ")"))
            print("  free ........ \(info.count - info.held)")
        }
        for item in info.sample { print("  \(item)") }
        if info.count > Int64(info.sample.count) { print("  … \(info.count - Int64(info.sample.count)) more") }
    }
}

/// The items of a pool file, or a clear error naming the file, line and problem.
func readPoolFile(_ file: String, format: String?) throws -> [String] {
    let fmt: PoolFile.Format
    if let format {
        guard let f = PoolFile.Format(rawValue: format) else { throw CLIError.invalid("--format \(format) is not accepted; use csv or jsonl") }
        fmt = f
    } else {
        guard let f = PoolFile.format(ofPath: file) else {
            throw CLIError.invalid("cannot tell the format of \(file) from its name; name it .csv or .jsonl, or pass --format csv|jsonl")
        }
        fmt = f
    }
    let text: String
    do {
        let attributes = try FileManager.default.attributesOfItem(atPath: file)
        let size = (attributes[.size] as? NSNumber)?.intValue ?? 0
        guard size <= 256 << 20 else { throw CLIError.invalid("\(file) is \(size) bytes; a pool file may have at most 256 MiB") }
        text = try String(contentsOfFile: file, encoding: .utf8)
    } catch let e as CLIError {
        throw e
    } catch {
        throw CLIError.invalid("cannot read \(file) as UTF-8 text: \((error as NSError).localizedDescription)")
    }
    do { return try PoolFile.items(text, format: fmt) } catch { throw CLIError.invalid("\(file): \(error)") }
}

/// `NAME=FILE` of `j4 run --pool` and `--shared-pool`.
func poolArgument(_ text: String, option: String) throws -> (name: String, file: String) {
    let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
    guard parts.count == 2, Pools.isValidName(parts[0]), !parts[1].isEmpty else {
        throw CLIError.invalid("\(option) \(text) is not accepted; use NAME=FILE, NAME of letters, digits, '_', '-' and '.'")
    }
    return (parts[0], parts[1])
}
