import Foundation
import PackagePlugin

/// Embeds `lua/*.lua` into the target as Swift string literals, so the `j4` binary (and any
/// user's binary built on the J4 library) carries its scripts and needs no files beside it.
@main struct EmbedLuaScripts: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: any Target) throws -> [Command] {
        let luaDir = context.package.directoryURL.appending(path: "lua")
        let scripts = try FileManager.default.contentsOfDirectory(at: luaDir, includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "lua" }
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
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
