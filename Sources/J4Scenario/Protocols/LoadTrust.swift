import Foundation
import NIOSSL
import Synchronization

/// What the process' load clients trust for `https://` targets: the system's CAs plus the
/// PEM certificates of `--ca-file` (or `$J4_CA_FILE`). AsyncHTTPClient (`vu.http`) and the
/// lean client (HTTP/1.1 and HTTP/2 over TLS) are made from the same configuration, so both
/// accept the same servers.
public enum LoadTrust {
    /// The configuration the lean client uses (the system's CAs until ``use(_:)``), and its
    /// context, made once from it (a context loads its CAs once; a connection made from it
    /// costs only its handshake). One lock: a context is never made from a replaced trust.
    private static let state = Mutex<(configuration: TLSConfiguration, lean: [Bool: NIOSSLContext])>((TLSConfiguration.makeClientConfiguration(), [:]))

    /// A client configuration that trusts the system's CAs and those in `caFile`. Throws
    /// ``LoadTrustError`` when the file cannot be read as PEM certificates.
    public static func configuration(caFile: String?) throws -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        if let caFile {
            do {
                tls.additionalTrustRoots = [.certificates(try NIOSSLCertificate.fromPEMFile(caFile))]
            } catch {
                throw LoadTrustError(path: caFile, reason: "\(error)")
            }
        }
        return tls
    }

    /// Makes `configuration` the lean client's trust (the CLI calls it once, at start-up,
    /// with the configuration it gives AsyncHTTPClient).
    public static func use(_ configuration: TLSConfiguration) {
        state.withLock { $0 = (configuration, [:]) }
    }

    /// The lean client's TLS context: the configured trust, and HTTP/1.1 offered by ALPN, or
    /// with `http2`, `h2` then HTTP/1.1 (the server chooses).
    static func leanContext(http2: Bool = false) throws -> NIOSSLContext {
        try state.withLock { s in
            if let context = s.lean[http2] { return context }
            var tls = s.configuration
            tls.applicationProtocols = http2 ? ["h2", "http/1.1"] : ["http/1.1"]
            let context = try NIOSSLContext(configuration: tls)
            s.lean[http2] = context
            return context
        }
    }
}

/// A `--ca-file` that is not PEM certificates.
public struct LoadTrustError: Error, CustomStringConvertible {
    /// The file.
    public let path: String
    /// What NIOSSL said of it.
    public let reason: String
    public var description: String { "--ca-file \(path) is not accepted: it must be PEM certificates (\(reason))" }
}
