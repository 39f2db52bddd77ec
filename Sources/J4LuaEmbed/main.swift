// Writes a Swift file holding each Lua script's text: `J4LuaEmbed OUTPUT FILE...`, where the
// files are lua/*.lua (scripts) and lua/lib/*.lua (shared snippets). In a script, a line
// `-- @include lib/NAME.lua` is replaced by that snippet, so a rule shared by several
// scripts (the fence, the fair share, Redis' clock) is written once.
// Run by the EmbedLuaScripts build plugin; not meant to be called by hand.
import Foundation

let args = Array(CommandLine.arguments.dropFirst())
guard let output = args.first else {
    FileHandle.standardError.write(Data("usage: J4LuaEmbed OUTPUT FILE...\n".utf8))
    exit(2)
}
let files = args.dropFirst().map { URL(fileURLWithPath: $0) }
let libraries = files.filter { $0.deletingLastPathComponent().lastPathComponent == "lib" }
let scripts = files.filter { $0.deletingLastPathComponent().lastPathComponent != "lib" }

func literal(_ text: String) -> String {
    var hashes = "#"
    while text.contains("\"" + hashes) || text.contains("\"\"\"" + hashes) { hashes += "#" }
    return "\(hashes)\"\"\"\n\(text)\n\"\"\"\(hashes)"
}

/// `text` with each include line replaced by the snippet it names.
func expand(_ text: String, of script: URL) throws -> String {
    var lines: [String] = []
    for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
        guard line.hasPrefix("-- @include ") else {
            lines.append(String(line))
            continue
        }
        let path = line.dropFirst("-- @include ".count).trimmingCharacters(in: .whitespaces)
        let url = script.deletingLastPathComponent().appendingPathComponent(path)
        guard libraries.contains(where: { $0.standardizedFileURL == url.standardizedFileURL }) else {
            FileHandle.standardError.write(Data("\(script.path): \(line): no such snippet in lua/lib\n".utf8))
            exit(1)
        }
        lines.append(try String(contentsOf: url, encoding: .utf8).trimmingCharacters(in: .newlines))
    }
    return lines.joined(separator: "\n")
}

var out = "// Generated from lua/*.lua and lua/lib/*.lua by the EmbedLuaScripts plugin. Do not edit.\n"
out += "enum LuaSources {\n    /// Script name (file name without `.lua`) → source text, snippets included.\n    static let all: [String: String] = [\n"
for url in scripts {
    let text = try expand(try String(contentsOf: url, encoding: .utf8), of: url)
    out += "        \"\(url.deletingPathExtension().lastPathComponent)\": \(literal(text)),\n"
}
out += "    ]\n    /// Snippet name (file name in lua/lib without `.lua`) → source text.\n    static let libraries: [String: String] = [\n"
for url in libraries {
    out += "        \"\(url.deletingPathExtension().lastPathComponent)\": \(literal(try String(contentsOf: url, encoding: .utf8))),\n"
}
out += "    ]\n}\n"
try out.write(to: URL(fileURLWithPath: output), atomically: true, encoding: .utf8)
