// Writes a Swift file holding each Lua script's text: `J4LuaEmbed OUTPUT SCRIPT...`.
// Run by the EmbedLuaScripts build plugin; not meant to be called by hand.
import Foundation

let args = CommandLine.arguments.dropFirst()
guard let output = args.first else {
    FileHandle.standardError.write(Data("usage: J4LuaEmbed OUTPUT SCRIPT...\n".utf8))
    exit(2)
}
var out = "// Generated from lua/*.lua by the EmbedLuaScripts plugin. Do not edit.\n"
out += "enum LuaSources {\n    /// Script name (file name without `.lua`) → source text.\n    static let all: [String: String] = [\n"
for path in args.dropFirst() {
    let url = URL(fileURLWithPath: path)
    let text = try String(contentsOf: url, encoding: .utf8)
    var hashes = "#"
    while text.contains("\"" + hashes) || text.contains("\"\"\"" + hashes) { hashes += "#" }
    let name = url.deletingPathExtension().lastPathComponent
    out += "        \"\(name)\": \(hashes)\"\"\"\n\(text)\n\"\"\"\(hashes),\n"
}
out += "    ]\n}\n"
try out.write(to: URL(fileURLWithPath: output), atomically: true, encoding: .utf8)
