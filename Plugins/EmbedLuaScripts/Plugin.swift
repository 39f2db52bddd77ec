import Foundation
import PackagePlugin

/// Embeds `lua/*.lua` (with the `lua/lib` snippets they include) into the target as Swift string literals, so the `j4` binary (and any
/// user's binary built on the J4 library) carries its scripts and needs no files beside it.
@main struct EmbedLuaScripts: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: any Target) throws -> [Command] {
        let luaDir = context.package.directoryURL.appending(path: "lua")
        func luaFiles(_ dir: URL) throws -> [URL] {
            try FileManager.default.contentsOfDirectory(at: dir, includingPropertiesForKeys: nil)
                .filter { $0.pathExtension == "lua" }
                .sorted { $0.lastPathComponent < $1.lastPathComponent }
        }
        // The scripts, then the snippets they include (lua/lib), each an input of the build.
        let scripts = try luaFiles(luaDir) + luaFiles(luaDir.appending(path: "lib"))
        let output = context.pluginWorkDirectoryURL.appending(path: "LuaSources.swift")
        return [
            .buildCommand(
                displayName: "Embedding \(scripts.count) Lua scripts",
                executable: try context.tool(named: "J4LuaEmbed").url,
                arguments: [output.path] + scripts.map(\.path),
                inputFiles: scripts,
                outputFiles: [output]
            )
        ]
    }
}
