import MillraceSchema
import TestSupport
import Testing

@Suite struct JSONTapeTests {
    @Test func valuesLandOnTheTapeInDocumentOrder() throws {
        let tape = try JSONTape.parse(Array(#" {"lot":"L1","qty":-2.5e1,"ok":true,"tags":["a",null,false],"n":{}} "#.utf8))
        #expect(tape.entries.map(\.kind) == [.object, .string, .string, .string, .number, .string, .true, .string, .array, .string, .null, .false, .string, .object])
        #expect(tape[0].count == 5 && Int(tape[0].next) == tape.entries.count)
        #expect(tape.string(at: 2) == "L1" && tape[4].number == -25 && tape[8].count == 3)
        #expect(tape.value(at: 8) == .array([.string("a"), .null, .bool(false)]))
    }

    @Test func escapesAreDecodedOnlyWhenAsked() throws {
        let tape = try JSONTape.parse(Array(#"["a\"b\\c\/d\n", "\u00e9\ud83d\ude00", "plain é"]"#.utf8))
        #expect(tape[1].escaped && tape.string(at: 1) == "a\"b\\c/d\n")
        #expect(tape.string(at: 2) == "é😀" && tape.scalarCount(at: 2) == 2)
        #expect(!tape[3].escaped && tape.scalarCount(at: 3) == 7 && tape.stringEquals(3, Array("plain é".utf8)))
    }

    @Test func numbersFollowTheGrammar() throws {
        for (text, value) in [("0", 0.0), ("-0", 0), ("12345678901234", 12_345_678_901_234), ("1.5", 1.5), ("1e3", 1000), ("-2.5E-1", -0.25), ("123456789012345678901", 1.2345678901234568e20)] {
            #expect(try JSONTape.parse(Array(text.utf8))[0].number == value, "\(text)")
        }
        for bad in ["01", "-", "1.", ".5", "1e", "+1", "0x10", "1.e3", "--1", "NaN", "Infinity"] {
            #expect(throws: JSONSyntaxError.self, "\(bad)") { try JSONTape.parse(Array(bad.utf8)) }
        }
    }

    @Test func notJSONIsNamedByByte() {
        let cases: [(String, Int, String)] = [
            (#"{"a":1,}"#, 7, "expected a member name in quotes, found '}'"),
            (#"{"a" 1}"#, 5, "expected ':' after a member name, found '1'"),
            (#"[1 2]"#, 3, "expected ',' or ']' in an array, found '2'"),
            ("{\"a\":\"x\ty\"}", 7, "a control character (0x9) inside a string must be escaped"),
            (#"{"a":tru}"#, 5, "expected true"),
            (#"{"a":1} x"#, 8, "unexpected 'x' after the value"),
            (#""\q""#, 1, "\\q is not a JSON escape"),
            ("", 0, "the text ends where a value should be"),
            (#"{"a":"#, 5, "the text ends where a value should be"),
        ]
        for (text, offset, reason) in cases {
            #expect(throws: JSONSyntaxError(offset: offset, reason: reason), "\(text)") { try JSONTape.parse(Array(text.utf8)) }
        }
        #expect(throws: JSONSyntaxError.self) { try JSONTape.parse([0x22, 0xC3, 0x28, 0x22]) }  // bad continuation byte
        #expect(throws: JSONSyntaxError.self) { try JSONTape.parse([0x22, 0xED, 0xA0, 0x80, 0x22]) }  // a UTF-8 surrogate
        #expect(throws: JSONSyntaxError.self) { try JSONTape.parse([0x22, 0xC0, 0xAF, 0x22]) }  // overlong
    }

    @Test func depthIsBounded() throws {
        let deep = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        #expect(throws: JSONSyntaxError(offset: 64, reason: "nested deeper than 64 levels")) { try JSONTape.parse(Array(deep.utf8), depthMax: 64) }
        let fine = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        #expect(try JSONTape.parse(Array(fine.utf8), depthMax: 64).entries.count == 64)
    }

    /// Mutated, truncated and random texts: parse throws or succeeds, never traps, and a
    /// success has a consistent tape (every `next` within bounds and increasing).
    @Test func fuzzedTextsNeverTrap() {
        let seed: UInt64 = 20_261_128
        var random = SeededGenerator(seed: seed)
        let base = Array(#"{"type":"production.confirmation","order_id":"000109235643","yield_qty":499,"scrap_qty":0.5,"tags":["a","\u00e9"],"final":false,"x":null}"#.utf8)
        let alphabet = Array(#"{}[]:,"\\/0123456789-+.eEtruefalsn ab"#.utf8) + [0x00, 0x1F, 0x80, 0xC3, 0xE2, 0xF0, 0xFF]
        var tape = JSONTape()
        var parsed = 0
        for _ in 0..<20_000 {
            var text = base
            for _ in 0..<random.next(in: 1...4) {
                let at = random.next(in: 0...text.count - 1)
                switch random.next(in: 0...3) {
                case 0: text[at] = alphabet[random.next(in: 0...alphabet.count - 1)]
                case 1: text.remove(at: at)
                case 2: text.insert(alphabet[random.next(in: 0...alphabet.count - 1)], at: at)
                default: text = Array(text.prefix(at))
                }
                if text.isEmpty { break }
            }
            do {
                try tape.parse(text)
                parsed += 1
                for (index, entry) in tape.entries.enumerated() {
                    #expect(Int(entry.next) > index && Int(entry.next) <= tape.entries.count, "seed \(seed)")
                }
            } catch {}
        }
        #expect(parsed > 0)
    }
}
