import J4Core
#if canImport(Glibc)
import Glibc
#endif

/// What must hold for every input, valid or not: parsing never traps or hangs; a rejection
/// names at least one field and what is accepted; an accepted definition survives its own
/// canonical JSON unchanged, and its curve can be computed end to end. A violation stops the
/// process (a crash libFuzzer records with the input that caused it).
func check(_ bytes: UnsafeRawBufferPointer) {
    guard let first = bytes.first else { return }
    // The first byte picks the format, the rest is the file.
    let format: RunDefinition.Format = first & 1 == 0 ? .yaml : .json
    let text = String(decoding: bytes.dropFirst(), as: UTF8.self)
    let definition: RunDefinition
    do {
        definition = try RunDefinition.parse(text: text, format: format)
    } catch {
        precondition(!error.problems.isEmpty, "a rejection with no problem")
        for p in error.problems {
            precondition(!p.field.isEmpty && !p.expected.isEmpty, "a problem without its field or what is accepted: \(p)")
            precondition(p.field.utf8.count <= 512, "a field path that echoes \(p.field.utf8.count) bytes of input")
            if let v = p.value { precondition(v.utf8.count <= 4096, "a problem that echoes \(v.utf8.count) bytes of input") }
        }
        return
    }
    let json = definition.canonical.canonicalJSON
    let again: RunDefinition
    do { again = try RunDefinition.parse(text: json, format: .json) } catch {
        preconditionFailure("an accepted definition's canonical JSON is rejected: \(error)\n\(json)")
    }
    precondition(again == definition, "the canonical JSON does not give back the same definition:\n\(json)")
    let curve = Curve(definition)
    _ = curve.totalIterations
    _ = curve.peakVUs
    let last = curve.tickCount - 1
    for n in [0, last / 2, last] where n >= 0 {
        _ = curve.planValue(tick: n)
        _ = curve.firstIteration(ofTick: n)
    }
}

#if J4_FUZZ
/// libFuzzer's driver: scripts/fuzz-definitions.sh builds this target with -sanitize=fuzzer.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

/// The executable's entry point under the name SwiftPM links it by: hands over to libFuzzer.
@_cdecl("j4_definition_fuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var arguments = argv
    return LLVMFuzzerRunDriver(&count, &arguments) { data, size in
        check(UnsafeRawBufferPointer(start: data, count: size))
        return 0
    }
}
#else
/// Replays inputs (a crash libFuzzer saved, or a whole corpus): `j4-definition-fuzz FILE…`.
@main
struct Replay {
    static func main() throws {
        var count = 0
        for path in CommandLine.arguments.dropFirst() {
            guard let file = fopen(path, "rb") else { fatalError("cannot open \(path)") }
            var bytes: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = fread(&buffer, 1, buffer.count, file)
                if n <= 0 { break }
                bytes += buffer[0..<n]
            }
            fclose(file)
            bytes.withUnsafeBytes { check($0) }
            count += 1
        }
        print("replayed \(count) inputs: every property held")
    }
}
#endif
