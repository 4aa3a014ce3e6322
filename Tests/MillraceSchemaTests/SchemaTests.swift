import Foundation
import MillraceFormat
import MillraceSchema
import TestSupport
import Testing

func schema(_ text: String) throws(SchemaError) -> Schema { try Schema(json: Array(text.utf8)) }

extension Schema {
    func accepts(_ text: String) -> Bool { validate(json: Array(text.utf8)).isEmpty }
    func first(_ text: String) -> String? { validate(json: Array(text.utf8)).first?.description }
}

/// Each keyword of the subset, with cases that follow the semantics of the public
/// JSON-Schema-Test-Suite (draft 2020-12) for that keyword.
@Suite struct SchemaKeywordTests {
    @Test func type() throws {
        let integer = try schema(#"{"type":"integer"}"#)
        #expect(integer.accepts("1") && integer.accepts("1.0") && integer.accepts("-0"))
        #expect(!integer.accepts("1.1") && !integer.accepts("\"1\"") && !integer.accepts("true") && !integer.accepts("null"))
        let number = try schema(#"{"type":"number"}"#)
        #expect(number.accepts("1") && number.accepts("1.5") && !number.accepts("\"1\""))
        let several = try schema(#"{"type":["string","null"]}"#)
        #expect(several.accepts("\"x\"") && several.accepts("null") && !several.accepts("1") && !several.accepts("{}"))
        try #expect(schema(#"{"type":"object"}"#).accepts("{}") && !(schema(#"{"type":"array"}"#).accepts("{}")))
        try #expect(schema(#"{"type":"boolean"}"#).accepts("false") && !(schema(#"{"type":"boolean"}"#).accepts("0")))
        #expect(integer.first("\"7\"") == #"/: "7" is a string, not an integer"#)
    }

    @Test func propertiesRequiredAndAdditionalProperties() throws {
        let order = try schema(
            #"{"type":"object","properties":{"order_id":{"type":"string"},"qty":{"type":"number"}},"required":["order_id","work_center"],"additionalProperties":false}"#)
        #expect(order.accepts(#"{"order_id":"1","work_center":"W","qty":2}"#) == false)  // work_center is not listed: not allowed
        let open = try schema(#"{"properties":{"order_id":{"type":"string"}},"required":["order_id","work_center"]}"#)
        #expect(open.accepts(#"{"order_id":"1","work_center":"W","other":[1]}"#))
        #expect(open.accepts("[]") && open.accepts("12"))  // required applies to objects only
        #expect(open.first(#"{"work_center":"W"}"#) == "/order_id: is required but missing")
        #expect(open.first(#"{"order_id":5,"work_center":"W"}"#) == "/order_id: 5 is an integer, not a string")
        #expect(order.first(#"{"order_id":"1","extra":1}"#) == "/extra: is not allowed (no other properties than those listed)")
        let typed = try schema(#"{"properties":{"a":{}},"additionalProperties":{"type":"integer"}}"#)
        #expect(typed.accepts(#"{"a":"x","b":1}"#) && !typed.accepts(#"{"a":"x","b":"y"}"#))
        // An empty member name is a name like any other.
        let empty = try schema(#"{"properties":{"":{"type":"string"}},"additionalProperties":false}"#)
        #expect(empty.accepts(#"{"":"x"}"#) && !empty.accepts(#"{"":1}"#) && !empty.accepts(#"{"a":"x"}"#))
        // Escaped member names are compared decoded.
        #expect(open.accepts(#"{"order\u005fid":"1","work_center":"W"}"#))
        let all = order.validate(json: Array(#"{"qty":"x","more":1}"#.utf8))
        #expect(all.map(\.rule).sorted() == ["additionalProperties", "required", "required", "type"])
    }

    /// Member names are compared a word at a time where the text allows: every length around
    /// the word sizes, first in a long record and last in a short one, plain and escaped.
    @Test func memberNamesOfEveryLength() throws {
        let names = (0...40).map { length in String((0..<length).map { Character(Unicode.Scalar(UInt8(97 + $0 % 26))) }) }
        let properties = names.map { #""\#($0)":{"type":"integer"}"# }.joined(separator: ",")
        let strict = try schema(#"{"properties":{\#(properties),"pad":{}},"additionalProperties":false}"#)
        let padding = #","pad":"\#(String(repeating: "p", count: 40))""#
        for name in names {
            let escaped = name.isEmpty ? name : #"\u00\#(String(name.utf8.first!, radix: 16))"# + name.dropFirst()
            for member in [name, escaped] {
                #expect(strict.accepts(#"{"\#(member)":1\#(padding)}"#), "\(member) first")
                #expect(strict.accepts(#"{"\#(member)":1}"#), "\(member) alone")
                #expect(strict.first(#"{"\#(member)":"x"\#(padding)}"#) == #"/\#(name): "x" is a string, not an integer"#)
            }
            // The same length, one byte different (first, middle, last): not the property.
            for position in Set([0, name.count / 2, name.count - 1]) where !name.isEmpty {
                var bytes = Array(name.utf8)
                bytes[position] = UInt8(ascii: "Z")
                let other = String(decoding: bytes, as: UTF8.self)
                #expect(strict.first(#"{"\#(other)":1\#(padding)}"#) == "/\(other): is not allowed (no other properties than those listed)")
                #expect(strict.first(#"{"\#(other)":1}"#) == "/\(other): is not allowed (no other properties than those listed)")
            }
        }
    }

    @Test func items() throws {
        let lots = try schema(#"{"type":"array","items":{"type":"string","minLength":2}}"#)
        #expect(lots.accepts(#"["L1","L2"]"#) && lots.accepts("[]"))
        #expect(lots.first(#"["L1","x"]"#) == #"/1: "x" is shorter than minLength 2 (1 characters)"#)
        try #expect(schema(#"{"items":false}"#).accepts("[]") && !(schema(#"{"items":false}"#).accepts("[1]")))
    }

    @Test func enumAndConst() throws {
        let uom = try schema(#"{"enum":["PC","KG",1,null,{"a":[1,2]}]}"#)
        #expect(uom.accepts("\"KG\"") && uom.accepts("1.0") && uom.accepts("null") && uom.accepts(#"{"a":[1,2.0]}"#))
        #expect(!uom.accepts("\"kg\"") && !uom.accepts("true") && !uom.accepts(#"{"a":[2,1]}"#) && !uom.accepts(#"{"a":[1,2],"b":1}"#))
        #expect(uom.first("\"LB\"") == #"/: "LB" is not one of ["PC","KG",1,null,{"a":[1,2]}]"#)
        let constant = try schema(#"{"const":{"x":false}}"#)
        #expect(constant.accepts(#"{"x":false}"#) && !constant.accepts(#"{"x":0}"#) && !constant.accepts(#"{"x":false,"y":1}"#))
        // false is not 0, true is not 1.
        try #expect(!(schema(#"{"enum":[0]}"#).accepts("false")) && !(schema(#"{"const":1}"#).accepts("true")))
    }

    @Test func numericBounds() throws {
        let yield = try schema(#"{"minimum":0,"maximum":10}"#)
        #expect(yield.accepts("0") && yield.accepts("10") && yield.accepts("\"x\""))
        #expect(yield.first("-3") == "/: -3 is less than minimum 0" && yield.first("10.5") == "/: 10.5 is greater than maximum 10")
        let open = try schema(#"{"exclusiveMinimum":0,"exclusiveMaximum":1.5}"#)
        #expect(open.accepts("0.1") && !open.accepts("0") && !open.accepts("1.5"))
        #expect(open.first("0") == "/: 0 is not greater than exclusiveMinimum 0")
    }

    @Test func stringLengthsCountCharacters() throws {
        let code = try schema(#"{"minLength":2,"maxLength":3}"#)
        #expect(code.accepts("\"ab\"") && code.accepts("\"äöü\"") && code.accepts("\"😀😀\"") && code.accepts("5"))
        #expect(!code.accepts("\"a\"") && !code.accepts("\"abcd\"") && !code.accepts(#""\u00e9""#))
    }

    @Test func pattern() throws {
        let lot = try schema(#"{"pattern":"^L[0-9]{11}$"}"#)
        #expect(lot.accepts("\"L25112700001\"") && !lot.accepts("\"L2511270000\"") && !lot.accepts("\"xL25112700001\""))
        #expect(lot.first("\"L1\"") == #"/: "L1" does not match pattern "^L[0-9]{11}$""#)
        // Not anchored unless asked; ECMA classes and escapes.
        try #expect(schema(#"{"pattern":"a+"}"#).accepts("\"xxaxx\""))
        try #expect(schema(#"{"pattern":"^\\d{3}-\\w+\\s?$"}"#).accepts("\"123-ab_c \""))
        try #expect(schema(#"{"pattern":"^(WC|MC)-[A-Z]+-\\d\\d$"}"#).accepts("\"WC-CNC-02\""))
        try #expect(!(schema(#"{"pattern":"^[^0-9]*$"}"#).accepts("\"ab3\"")))
        try #expect(schema(#"{"pattern":"^.$"}"#).accepts("\"😀\""))  // one character, not four bytes
        // Identifier-shaped patterns are checked on bytes while the text is ASCII.
        let code = try schema(#"{"pattern":"^[A-Z]{2}.[0-9]$"}"#)
        #expect(code.accepts("\"AB-1\"") && code.accepts("\"ABé1\"") && !code.accepts("\"AB-12\"") && !code.accepts("\"AB-1é\"") && !code.accepts("\"Aé-1\""))
        try #expect(schema(#"{"pattern":"\\bend\\b"}"#).accepts("\"the end.\"") && !(schema(#"{"pattern":"\\bend\\b"}"#).accepts("\"ending\"")))
        try #expect(schema(#"{"pattern":"^a|b$"}"#).accepts("\"xb\""))
        try #expect(schema(#"{"pattern":"^(ab)*c?$"}"#).accepts("\"ababc\"") && !(schema(#"{"pattern":"^(ab)*c?$"}"#).accepts("\"aba\"")))
        try #expect(schema(#"{"pattern":"x{2,}"}"#).accepts("\"axxx\"") && !(schema(#"{"pattern":"^x{2,3}$"}"#).accepts("\"xxxx\"")))
        try #expect(schema(#"{"pattern":"^a{1}b{"}"#).accepts("\"ab{\""))  // a '{' that is no quantifier is literal
    }

    /// Patterns that make backtracking engines take exponential time run in linear time here.
    @Test func pathologicalPatternsMatchInLinearTime() throws {
        let evil = try Pattern("^(a+)+$")
        let text = String(repeating: "a", count: 5_000) + "!"
        #expect(!evil.matches(text.unicodeScalars))
        #expect(try Pattern("(x+x+)+y").matches((String(repeating: "x", count: 3_000) + "y").unicodeScalars))
    }

    @Test func dateTime() throws {
        let time = try schema(#"{"format":"date-time"}"#)
        for good in ["2026-11-28T06:00:00Z", "2026-11-28t06:00:00.123456z", "2024-02-29T23:59:59+01:00", "1998-12-31T23:59:60Z", "1998-12-31T15:59:60.123-08:00"] {
            #expect(time.accepts("\"\(good)\""), "\(good)")
        }
        for bad in ["2026-11-28", "2026-13-01T00:00:00Z", "2023-02-29T00:00:00Z", "2026-11-28T24:00:00Z", "2026-11-28T06:00:00", "2026-11-28 06:00:00Z",
            "2026-11-28T06:00:60Z", "2026-11-28T06:00:00+0100", "2026-11-28T06:00:00.Z", "2026-11-28T06:00:00Z ", "2026-11-31T06:00:00Z"]
        {
            #expect(!time.accepts("\"\(bad)\""), "\(bad)")
        }
        #expect(time.accepts("12"))  // formats apply to strings only
    }

    @Test func refsDefsAndRecursion() throws {
        let bom = try schema(
            ##"{"$defs":{"qty":{"type":"number","minimum":0},"part":{"type":"object","properties":{"qty":{"$ref":"#/$defs/qty"},"children":{"type":"array","items":{"$ref":"#/$defs/part"}}}}},"$ref":"#/$defs/part"}"##)
        #expect(bom.accepts(#"{"qty":1,"children":[{"qty":2,"children":[{"qty":0}]}]}"#))
        #expect(bom.first(#"{"qty":1,"children":[{"qty":2,"children":[{"qty":-1}]}]}"#) == "/children/0/children/0/qty: -1 is less than minimum 0")
        let root = try schema(##"{"properties":{"next":{"$ref":"#"}},"additionalProperties":false}"##)
        #expect(root.accepts(#"{"next":{"next":{}}}"#) && !root.accepts(#"{"next":{"other":1}}"#))
        // Siblings of $ref apply too (2020-12).
        let both = try schema(##"{"$defs":{"s":{"type":"string"}},"$ref":"#/$defs/s","maxLength":2}"##)
        #expect(both.accepts("\"ab\"") && !both.accepts("\"abc\"") && !both.accepts("1"))
        // Escaped pointer tokens.
        try #expect(schema(##"{"$defs":{"a/b":{"type":"integer"}},"$ref":"#/$defs/a~1b"}"##).accepts("1"))
    }

    @Test func anyOfAndOneOf() throws {
        let id = try schema(#"{"anyOf":[{"type":"string","pattern":"^SN-"},{"type":"integer","minimum":1}]}"#)
        #expect(id.accepts("\"SN-1\"") && id.accepts("7") && !id.accepts("0") && !id.accepts("\"X\""))
        #expect(id.first("0") == #"/: 0 matches none of the 2 schemas in anyOf; the first: /: 0 is an integer, not a string"#)
        let exactly = try schema(#"{"oneOf":[{"type":"integer"},{"minimum":2}]}"#)
        #expect(exactly.accepts("1") && exactly.accepts("2.5") && !exactly.accepts("3") && !exactly.accepts("1.5"))
        #expect(exactly.first("3") == "/: 3 matches 2 schemas in oneOf (0, 1); it must match exactly one")
    }

    @Test func booleanSchemas() throws {
        try #expect(schema("true").accepts(#"{"a":1}"#) && !(schema("false").accepts("1")))
        try #expect(!(schema(#"{"properties":{"gone":false}}"#).accepts(#"{"gone":1}"#)))
    }

    /// Checking a value where it lies (the produce path) gives the same answers as checking
    /// a copy, escapes included.
    @Test func checkingInPlaceMatchesCheckingACopy() throws {
        let contract = try schema(#"{"type":"object","properties":{"lot":{"type":"string","pattern":"^L\\d+$","maxLength":4},"qty":{"minimum":0}},"required":["lot"],"additionalProperties":false}"#)
        let values = [
            #"{"lot":"L12","qty":1}"#, #"{"l\u006ft":"L12"}"#, #"{"lot":"L\u0031\u0032"}"#, #"{"lot":"L12345"}"#, #"{"lot":"X\n1"}"#,
            #"{"qty":-1}"#, #"{"lot":"L1","extra":true}"#, #"{"lot":"#, "[1,2]",
        ]
        var tape = JSONTape()
        for value in values {
            let bytes = Array(value.utf8)
            let copied = contract.validate(json: bytes)
            let inPlace = bytes.withUnsafeBufferPointer { text -> [SchemaViolation] in
                do {
                    try tape.index(text)
                } catch {
                    return [SchemaViolation(path: "", rule: "json", message: "\(error)")]
                }
                #expect(contract.isValid(tape, in: text) == contract.validate(tape, in: text).isEmpty)
                return contract.validate(tape, in: text)
            }
            #expect(copied == inPlace, "\(value)")
        }
    }

    @Test func notJSONIsAViolationAtTheRoot() throws {
        let any = try schema("{}")
        #expect(any.first("{\"a\":") == "/: not valid JSON at byte 6: the text ends where a value should be")
        #expect(any.validate(json: Array("{\"a\":".utf8)).first?.rule == "json")
    }
}

/// What registration refuses, each with a named reason.
@Suite struct SchemaRefusalTests {
    func refusal(_ text: String) -> SchemaError? {
        do {
            _ = try schema(text)
            return nil
        } catch {
            return error
        }
    }

    @Test func keywordsOutsideTheSubsetAreNamed() {
        for keyword in ["if", "not", "allOf", "patternProperties", "dependentRequired", "minItems", "multipleOf", "unevaluatedProperties", "propertyNames", "contains"] {
            let error = refusal(#"{"properties":{"a":{"\#(keyword)":{}}}}"#)
            #expect(error?.code == .unsupportedKeyword && error?.message.hasPrefix("/properties/a/\(keyword): \"\(keyword)\" is not a supported keyword") == true, "\(keyword): \(String(describing: error))")
        }
        #expect(refusal(#"{"format":"email"}"#) == SchemaError(.unsupportedKeyword, #"/format: format "email" is not supported (only date-time)"#))
        #expect(refusal(#"{"items":[{}]}"#)?.code == .unsupportedKeyword)
        #expect(refusal(#"{"properties":{"a":{"$id":"x"}}}"#)?.code == .unsupportedKeyword)
        // Annotations are fine.
        #expect(refusal(#"{"$schema":"https://json-schema.org/draft/2020-12/schema","$id":"urn:x","title":"t","description":"d","$comment":"c","default":1,"examples":[1]}"#) == nil)
    }

    @Test func malformedSchemasAreInvalid() {
        #expect(refusal("{")?.code == .invalidSchema)
        #expect(refusal("[]") == SchemaError(.invalidSchema, "the root: a schema must be an object or a boolean, not []"))
        #expect(refusal(#"{"type":"float"}"#)?.code == .invalidSchema)
        #expect(refusal(#"{"minimum":"0"}"#)?.code == .invalidSchema)
        #expect(refusal(#"{"minLength":-1}"#)?.code == .invalidSchema)
        #expect(refusal(#"{"required":"a"}"#)?.code == .invalidSchema)
        #expect(refusal(#"{"enum":[]}"#)?.code == .invalidSchema)
    }

    @Test func referencesMustResolveAndReadData() {
        #expect(refusal(##"{"$ref":"#/$defs/missing"}"##)?.code == .badReference)
        #expect(refusal(##"{"$ref":"other.json#/x"}"##)?.code == .badReference)
        #expect(refusal(##"{"$ref":"#"}"##)?.code == .badReference)
        #expect(refusal(##"{"$defs":{"a":{"$ref":"#/$defs/b"},"b":{"anyOf":[{"$ref":"#/$defs/a"}]}}}"##)?.code == .badReference)
    }

    @Test func limitsAreNamed() {
        let huge = "{\"description\":\"" + String(repeating: "x", count: Limits.schemaBytesMax) + "\"}"
        #expect(refusal(huge)?.message.contains("schemaBytesMax") == true)
        let deep = String(repeating: #"{"items":"#, count: Limits.schemaDepthMax + 1) + "{}" + String(repeating: "}", count: Limits.schemaDepthMax + 1)
        #expect(refusal(deep)?.message.contains("schemaDepthMax") == true)
        let names = (0...Limits.schemaRequiredMax).map { "\"p\($0)\"" }.joined(separator: ",")
        #expect(refusal(#"{"required":[\#(names)]}"#)?.message.contains("schemaRequiredMax") == true)
        #expect(refusal(#"{"pattern":"(a{1000}){1000}"}"#)?.message.contains("patternStatesMax") == true)
        // Shared definitions nested in anyOf multiply the checks per value: 2^12 here.
        let levels = (0..<12).map { level in "\"d\(level)\":{\"anyOf\":[{\"$ref\":\"#/$defs/d\(level + 1)\"},{\"$ref\":\"#/$defs/d\(level + 1)\"}]}" }
        let fanned = "{\"$defs\":{\(levels.joined(separator: ",")),\"d12\":{\"type\":\"string\"}},\"$ref\":\"#/$defs/d0\"}"
        #expect(refusal(fanned)?.message.contains("schemaApplicatorFanOutMax") == true, "\(String(describing: refusal(fanned)))")
        let shallow = "{\"$defs\":{\(levels.suffix(4).joined(separator: ",")),\"d12\":{\"type\":\"string\"}},\"$ref\":\"#/$defs/d8\"}"
        #expect(refusal(shallow) == nil)
        #expect(refusal(#"{"pattern":"\#(String(repeating: "a", count: Limits.patternLengthMax + 1))"}"#)?.message.contains("patternLengthMax") == true)
        for bad in ["(a", "a)", "[a", "*a", "a**", "(?=a)", "(?<n>a)", "(a)\\1", "\\p{L}", "[z-a]", "a{3,2}"] {
            #expect(refusal("{\"pattern\":\(JSONValue.string(bad).description)}")?.code == .unsupportedPattern, "\(bad)")
        }
    }
}

/// Random values against a production-confirmation schema: validation never traps.
@Suite struct SchemaFuzzTests {
    @Test func fuzzedRecordsNeverTrapTheValidator() throws {
        let confirmation = try schema(ConfirmationSchema.text)
        let seed: UInt64 = 77
        var random = SeededGenerator(seed: seed)
        let base = Array(ConfirmationSchema.sample.utf8)
        let alphabet = Array(#"{}[]:,"\\0123456789-.eEtrufalsn xyzPCKG"#.utf8) + [0x80, 0xC3, 0xFF]
        var valid = 0
        var invalid = 0
        for _ in 0..<20_000 {
            var text = base
            for _ in 0..<random.next(in: 1...3) where !text.isEmpty {
                let at = random.next(in: 0...text.count - 1)
                switch random.next(in: 0...2) {
                case 0: text[at] = alphabet[random.next(in: 0...alphabet.count - 1)]
                case 1: text.remove(at: at)
                default: text.insert(alphabet[random.next(in: 0...alphabet.count - 1)], at: at)
                }
            }
            if confirmation.validate(json: text).isEmpty { valid += 1 } else { invalid += 1 }
        }
        #expect(valid > 0 && invalid > 0, "seed \(seed)")
        #expect(confirmation.accepts(ConfirmationSchema.sample))
    }
}

enum ConfirmationSchema {
    /// The example the project ships (examples/production-confirmation.schema.json).
    static var text: String {
        let path = #filePath.split(separator: "/").dropLast(3).joined(separator: "/")
        return (try? String(contentsOfFile: "/" + path + "/examples/production-confirmation.schema.json", encoding: .utf8)) ?? "false"
    }
    static let sample = #"{"type":"production.confirmation","event_id":"910a0654-81cd-477a-8407-fd25b4479b31","ts":"2025-11-27T06:00:00.023Z","plant":"DE01","order_id":"000108756533","operation":"0020","work_center":"WC-CNC-02","material":"MAT-1383-433","lot_id":"L25112700001","serial":"SN-DE01-00000001","yield_qty":499,"scrap_qty":0,"uom":"PC","start_ts":"2025-11-27T05:39:59.023Z","operator":"U10782","final":false}"#
}
