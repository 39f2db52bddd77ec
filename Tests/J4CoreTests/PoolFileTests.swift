import J4Core
import Testing

@Suite("Pool files (CSV with a header, JSON lines)")
struct PoolFileTests {
    @Test("CSV rows become objects by header; quotes, commas, line breaks and CRLF are read as RFC 4180 says")
    func csv() throws {
        let text = "user,password,note\r\nu1,p1,plain\r\n\"u,2\",\"p\"\"2\",\"two\nlines\"\r\n\r\nu3,p3,\n"
        let items = try PoolFile.items(text, format: .csv)
        #expect(items == [
            #"{"note":"plain","password":"p1","user":"u1"}"#,
            #"{"note":"two\nlines","password":"p\"2","user":"u,2"}"#,
            #"{"note":"","password":"p3","user":"u3"}"#,
        ])
    }

    @Test("JSON lines: one value per line, blank lines skipped, re-encoded canonically")
    func jsonLines() throws {
        let items = try PoolFile.items("{\"b\": 1, \"a\": [true, null]}\n\n  {\"x\":\"y\"}  \n", format: .jsonl)
        #expect(items == [#"{"a":[true,null],"b":1}"#, #"{"x":"y"}"#])
    }

    @Test("every malformed file names its line and what is accepted", arguments: [
        ("user,password\nu1\n", PoolFile.Format.csv, 2, "1 fields; the header has 2"),
        ("user,user\nu1,u2\n", .csv, 1, "names a column twice"),
        ("user,\nu1,u2\n", .csv, 1, "non-empty name for every column"),
        ("user\nab\"c\n", .csv, 2, "a quote inside an unquoted field"),
        ("user\n\"abc\n", .csv, 2, "not closed"),
        ("user\n\"a\"b\n", .csv, 2, "text after a closing quote"),
        ("user\n", .csv, 0, "no items"),
        ("{\"a\":1}\n{oops\n", .jsonl, 2, "not a JSON value"),
    ])
    func malformed(text: String, format: PoolFile.Format, line: Int, message: String) {
        #expect {
            _ = try PoolFile.items(text, format: format)
        } throws: { error in
            guard let p = error as? PoolFile.Problem else { return false }
            return p.line == line && p.message.contains(message)
        }
    }

    @Test("the format comes from the file name")
    func formats() {
        #expect(PoolFile.format(ofPath: "a/ACCOUNTS.CSV") == .csv)
        #expect(PoolFile.format(ofPath: "x.ndjson") == .jsonl)
        #expect(PoolFile.format(ofPath: "x.jsonl") == .jsonl)
        #expect(PoolFile.format(ofPath: "x.txt") == nil)
    }
}
