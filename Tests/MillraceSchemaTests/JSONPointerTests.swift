import MillraceFormat
import MillraceSchema
import TestSupport
import Testing

/// A dedup key read at a JSON pointer: through a full parse, and by scanning only as far as
/// the key; both must agree on every input, valid or not, and never trap.
@Suite struct JSONPointerTests {
    func both(_ json: String, _ pointer: String) throws -> (parsed: DedupHash?, scanned: DedupHash?) {
        let compiled = try JSONPointer(pointer)
        let bytes = Array(json.utf8)
        return bytes.withUnsafeBufferPointer { text in
            var tape = JSONTape()
            let parsed = (try? tape.index(text, depthMax: 64)) != nil ? compiled.keyHash(in: tape, text: text) : nil
            return (parsed, compiled.keyHash(scanning: text))
        }
    }

    @Test func keysAtPointers() throws {
        let key = { (text: String) in DedupHash(Array(text.utf8)) }
        let record = #"{"type":"c","event_id":"E-1","lot":{"id":"L1","tags":["a","b"]},"qty":12.5,"final":true,"n":null,"e\u0076":"x\"y","a/b":"s","m~n":"t"}"#
        for (pointer, expected) in [
            ("/event_id", key("E-1")), ("/lot/id", key("L1")), ("/lot/tags/1", key("b")), ("/qty", key("12.5")), ("/final", key("true")),
            ("/n", nil), ("/lot", nil), ("/missing", nil), ("/lot/tags/2", nil), ("/lot/tags/01", nil), ("/ev", key("x\"y")), ("/a~1b", key("s")),
            ("/m~0n", key("t")),
        ] as [(String, DedupHash?)] {
            let (parsed, scanned) = try both(record, pointer)
            #expect(parsed == expected && scanned == expected, "\(pointer)")
        }
        // The first of two members with one name, as the parse resolves it.
        #expect(try both(#"{"id":"1","id":"2"}"#, "/id").scanned == key("1"))
        #expect(throws: MillraceError.self) { try JSONPointer("event_id") }
    }

    /// RFC 6901: a `~` is followed by 0 or 1; `json:/a~` and `json:/~2` were accepted (issue 22).
    /// Pointers stored before keep their meaning (a bare `~` stands for itself).
    @Test func aBareTildeIsRefused() throws {
        for text in ["/a~", "/~2", "/~", "/a~b", "/x/~/y"] {
            #expect(throws: MillraceError.self, "\(text)") { try JSONPointer(text) }
        }
        do {
            _ = try JSONPointer("/a~")
        } catch let error as MillraceError {
            #expect(error.code == .invalidConfig && error.message.contains("~0"), "\(error)")
        }
        #expect(try JSONPointer("/a~0b~1c").tokens == [Array("a~b/c".utf8)])
        #expect(try JSONPointer("/~01").tokens == [Array("~1".utf8)])
        #expect(try JSONPointer("/a//b").tokens == [Array("a".utf8), [], Array("b".utf8)])
        #expect(try JSONPointer(stored: "/a~").tokens == [Array("a~".utf8)])
        #expect(try JSONPointer(stored: "/~2/~1").tokens == [Array("~2".utf8), Array("/".utf8)])
    }

    /// Cut-off and mangled records: the scan may stop before the damage (it reads no further
    /// than the key), but never traps and never disagrees on a record that parses.
    @Test func brokenRecordsNeverTrap() throws {
        let record = #"{"type":"production.confirmation","event_id":"910a0654","lot":{"id":"L\u0031","tags":["a",{"x":"]"}]},"qty":-3e2}"#
        var generator = SeededGenerator(seed: 11)
        for cut in 0...record.utf8.count {
            for pointer in ["/event_id", "/lot/id", "/lot/tags/1/x", "/qty"] {
                let (parsed, scanned) = try both(String(decoding: Array(record.utf8)[..<cut], as: UTF8.self), pointer)
                if parsed != nil { #expect(scanned == parsed) }
            }
        }
        for _ in 0..<2_000 {
            var bytes = Array(record.utf8)
            for _ in 0..<3 { bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator) }
            for pointer in ["/event_id", "/lot/tags/1/x", "/qty"] {
                let (parsed, scanned) = try both(String(decoding: bytes, as: UTF8.self), pointer)
                if parsed != nil && !bytes.contains(where: { $0 >= 0x80 }) { #expect(scanned == parsed, "\(String(decoding: bytes, as: UTF8.self))") }
            }
        }
    }

    /// Index fields: `*` names every element of an array, values come back in document order,
    /// strings, numbers and booleans only, never more than the limit.
    @Test func wildcardPointersNameEveryElement() throws {
        let record = #"{"order":"O-7","components":[{"lot":"L1","qty":2},{"lot":"L\u0032"},{"serial":"S9"},{"lot":{"nested":1}},{"lot":17}],"tags":["a","b",null,true]}"#
        let bytes = Array(record.utf8)
        var tape = JSONTape()
        try tape.parse(bytes)
        let hash = { (text: String) in DedupHash(Array(text.utf8)) }
        for (pointer, expected) in [
            ("/components/*/lot", ["L1", "L2", "17"]), ("/tags/*", ["a", "b", "true"]), ("/order", ["O-7"]), ("/components/*/serial", ["S9"]),
            ("/components/1/lot", ["L2"]), ("/missing/*", []), ("/order/*", []), ("/components/*", []),
        ] {
            let compiled = try JSONPointer(pointer)
            #expect(compiled.indexValues(in: tape) == expected, "\(pointer)")
            let hashes = bytes.withUnsafeBufferPointer { compiled.indexHashes(in: tape, text: $0, limit: 100) }
            #expect(hashes == expected.map(hash), "\(pointer)")
        }
        let many = "[" + (0..<50).map { "\"v\($0)\"" }.joined(separator: ",") + "]"
        var wide = JSONTape()
        let wideBytes = Array(#"{"all":\#(many)}"#.utf8)
        try wide.parse(wideBytes)
        let limited = try wideBytes.withUnsafeBufferPointer { try JSONPointer("/all/*").indexHashes(in: wide, text: $0, limit: 10) }
        #expect(limited == (0..<10).map { hash("v\($0)") })
        #expect(try JSONPointer("/components/*/lot").hasWildcard && !JSONPointer("/lot").hasWildcard)
    }
}
