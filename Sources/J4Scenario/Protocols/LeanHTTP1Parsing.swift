import NIOCore
import NIOHTTP1

/// Reading response heads and chunk sizes off the bytes received: no allocation on the
/// built-in scenario's path (status and framing only), headers as strings when asked for.
extension LeanHTTP1Handler {
    static let crlf: [UInt8] = Array("\r\n".utf8)
    static let crlfcrlf: [UInt8] = Array("\r\n\r\n".utf8)

    struct Head {
        var status: Int
        var contentLength: Int?
        var chunked = false
        var keepAlive = true
    }

    /// The status line and the headers that frame the body.
    static func parseHead(_ bytes: UnsafeRawBufferPointer) -> Head? {
        // "HTTP/1.1 200 ..."
        guard bytes.count >= 12, bytes[0] == UInt8(ascii: "H"), bytes[4] == UInt8(ascii: "/"), bytes[8] == UInt8(ascii: " ") else { return nil }
        var status = 0
        for i in 9..<12 {
            let d = Int(bytes[i]) - 48
            guard (0...9).contains(d) else { return nil }
            status = status * 10 + d
        }
        var head = Head(status: status)
        head.keepAlive = bytes[7] == UInt8(ascii: "1")  // HTTP/1.0 closes unless it says keep-alive
        let complete = forEachHeader(bytes) { name, value in
            if equalsLowercased(name, "content-length") {
                var n = 0
                for b in value {
                    let d = Int(b) - 48
                    guard (0...9).contains(d), n < Int.max / 16 else { return false }
                    n = n * 10 + d
                }
                head.contentLength = n
            } else if equalsLowercased(name, "transfer-encoding") {
                head.chunked = containsLowercased(value, "chunked")
            } else if equalsLowercased(name, "connection") {
                if containsLowercased(value, "close") { head.keepAlive = false }
                if containsLowercased(value, "keep-alive") { head.keepAlive = true }
            }
            return true
        }
        return complete ? head : nil
    }

    /// Every header of a response head, as sent.
    static func allHeaders(_ bytes: UnsafeRawBufferPointer) -> HTTPHeaders {
        var headers = HTTPHeaders()
        _ = forEachHeader(bytes) { name, value in
            headers.add(name: String(decoding: name, as: UTF8.self), value: String(decoding: value, as: UTF8.self))
            return true
        }
        return headers
    }

    /// Calls `visit` with the name and the value (blanks around it trimmed) of each header
    /// of a response head, the status line skipped; false when `visit` stopped it.
    static func forEachHeader(_ bytes: UnsafeRawBufferPointer, _ visit: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Bool) -> Bool {
        var i = 0
        while i + 1 < bytes.count, !(bytes[i] == 13 && bytes[i + 1] == 10) { i += 1 }
        i += 2
        while i + 1 < bytes.count {
            var lineEnd = i
            while lineEnd + 1 < bytes.count, !(bytes[lineEnd] == 13 && bytes[lineEnd + 1] == 10) { lineEnd += 1 }
            if lineEnd == i { break }
            var colon = i
            while colon < lineEnd, bytes[colon] != UInt8(ascii: ":") { colon += 1 }
            if colon < lineEnd {
                var v = colon + 1
                while v < lineEnd, bytes[v] == 32 || bytes[v] == 9 { v += 1 }
                var vEnd = lineEnd
                while vEnd > v, bytes[vEnd - 1] == 32 || bytes[vEnd - 1] == 9 { vEnd -= 1 }
                if !visit(UnsafeRawBufferPointer(rebasing: bytes[i..<colon]), UnsafeRawBufferPointer(rebasing: bytes[v..<vEnd])) { return false }
            }
            i = lineEnd + 2
        }
        return true
    }

    static func lower(_ b: UInt8) -> UInt8 { (65...90).contains(b) ? b + 32 : b }

    static func equalsLowercased(_ bytes: UnsafeRawBufferPointer, _ name: StaticString) -> Bool {
        guard bytes.count == name.utf8CodeUnitCount else { return false }
        let n = name.utf8Start
        for i in 0..<bytes.count where lower(bytes[i]) != n[i] { return false }
        return true
    }

    static func containsLowercased(_ bytes: UnsafeRawBufferPointer, _ word: StaticString) -> Bool {
        let count = word.utf8CodeUnitCount
        guard bytes.count >= count else { return false }
        let w = word.utf8Start
        outer: for start in 0...(bytes.count - count) {
            for j in 0..<count where lower(bytes[start + j]) != w[j] { continue outer }
            return true
        }
        return false
    }

    /// The hexadecimal number a chunk size line starts with (extensions after `;` ignored).
    static func hexPrefix(_ bytes: UnsafeRawBufferPointer) -> Int? {
        var n = 0
        var digits = 0
        for b in bytes {
            let d: Int
            switch b {
            case 48...57: d = Int(b) - 48
            case 97...102: d = Int(b) - 87
            case 65...70: d = Int(b) - 55
            default:
                if digits > 0 && (b == UInt8(ascii: ";") || b == 32 || b == 9) { return n }
                return nil
            }
            guard digits < 15 else { return nil }
            n = n * 16 + d
            digits += 1
        }
        return digits > 0 ? n : nil
    }
}

extension ByteBuffer {
    /// The index (absolute) where `needle` first starts in the readable bytes.
    func firstIndex(of needle: [UInt8]) -> Int? {
        withUnsafeReadableBytes { bytes -> Int? in
            guard bytes.count >= needle.count, let first = needle.first else { return nil }
            var i = 0
            let last = bytes.count - needle.count
            while i <= last {
                if bytes[i] == first {
                    var j = 1
                    while j < needle.count, bytes[i + j] == needle[j] { j += 1 }
                    if j == needle.count { return readerIndex + i }
                }
                i += 1
            }
            return nil
        }
    }
}
