import MillraceFormat
import MillraceSchema
import Testing

/// Each mode × each kind of change, closed content model (additionalProperties false), as a
/// plant contract is usually written; then the open model, transitive modes and recursion.
@Suite struct CompatibilityTests {
    static func object(_ properties: String, required: String = #"["order"]"#, closed: Bool = true) -> String {
        #"{"type":"object","properties":{\#(properties)},"required":\#(required)\#(closed ? #","additionalProperties":false"# : "")}"#
    }

    static let baseProperties = #""order":{"type":"string"},"qty":{"type":"number"},"uom":{"enum":["PC","KG"]}"#
    static let base = object(baseProperties)

    /// change → (backward holds, forward holds)
    static let changes: [(name: String, schema: String, backward: Bool, forward: Bool)] = [
        ("add an optional field", object(baseProperties + #","note":{"type":"string"}"#), true, false),
        ("add a required field", object(baseProperties + #","plant":{"type":"string"}"#, required: #"["order","plant"]"#), false, false),
        ("remove a field", object(#""order":{"type":"string"},"uom":{"enum":["PC","KG"]}"#), false, true),
        ("widen a type", object(#""order":{"type":"string"},"qty":{"type":["number","string"]},"uom":{"enum":["PC","KG"]}"#), true, false),
        ("narrow a type", object(#""order":{"type":"string"},"qty":{"type":"integer"},"uom":{"enum":["PC","KG"]}"#), false, true),
        ("add an enum value", object(#""order":{"type":"string"},"qty":{"type":"number"},"uom":{"enum":["PC","KG","M"]}"#), true, false),
        ("remove an enum value", object(#""order":{"type":"string"},"qty":{"type":"number"},"uom":{"enum":["PC"]}"#), false, true),
        ("make a field required", object(baseProperties, required: #"["order","qty"]"#), false, true),
        ("raise a minimum", object(#""order":{"type":"string"},"qty":{"type":"number","minimum":0},"uom":{"enum":["PC","KG"]}"#), false, true),
    ]

    func problems(_ new: String, after earlier: [String], _ mode: SchemaCompatibility) throws -> [String] {
        let compiled = try earlier.enumerated().map { (Int32($0.offset + 1), try Schema(json: Array($0.element.utf8))) }
        return try Schema.compatibilityProblems(new: try Schema(json: Array(new.utf8)), earlier: compiled, mode: mode)
    }

    @Test(arguments: [SchemaCompatibility.noChecks, .backward, .forward, .full])
    func matrix(_ mode: SchemaCompatibility) throws {
        for change in Self.changes {
            let found = try problems(change.schema, after: [Self.base], mode)
            let expected: Bool
            switch mode {
            case .noChecks: expected = true
            case .backward, .backwardTransitive: expected = change.backward
            case .forward, .forwardTransitive: expected = change.forward
            case .full, .fullTransitive: expected = change.backward && change.forward
            }
            #expect(found.isEmpty == expected, "\(mode) / \(change.name): \(found)")
        }
    }

    @Test func reasonsNameThePathAndTheRule() throws {
        let found = try problems(Self.changes[1].schema, after: [Self.base], .full)
        #expect(found.contains("backward (records written with version 1 must still be accepted): /required: the new version requires \"plant\", version 1 does not"))
        #expect(found.contains("forward (readers of version 1 must accept new records): /properties/plant: the new version allows \"plant\", version 1 does not (additionalProperties is false)"))
        let enumRemoved = try problems(Self.changes[6].schema, after: [Self.base], .backward)
        #expect(enumRemoved == ["backward (records written with version 1 must still be accepted): /properties/uom/enum: \"KG\" allowed by version 1 but not by the new version"])
        let narrowed = try problems(Self.changes[4].schema, after: [Self.base], .backward)
        #expect(narrowed == ["backward (records written with version 1 must still be accepted): /properties/qty/type: type number is allowed by version 1 but not by the new version"])
    }

    /// Open content model (additional properties allowed): a new constrained field is not
    /// backward compatible (old records may carry it with any value), but is forward.
    @Test func openContentModel() throws {
        let open = Self.object(Self.baseProperties, closed: false)
        let added = Self.object(Self.baseProperties + #","note":{"type":"string"}"#, closed: false)
        #expect(try !problems(added, after: [open], .backward).isEmpty)
        #expect(try problems(added, after: [open], .forward).isEmpty)
        let removed = Self.object(#""order":{"type":"string"},"uom":{"enum":["PC","KG"]}"#, closed: false)
        #expect(try problems(removed, after: [open], .backward).isEmpty)
        // Closing an open model breaks backward compatibility.
        #expect(try problems(Self.base, after: [open], .backward).contains { $0.contains("/additionalProperties") })
    }

    /// Plain modes compare with the latest version; transitive ones with all of them.
    @Test func transitiveModesCompareWithEveryVersion() throws {
        let v1 = Self.object(#""uom":{"enum":["PC","KG"]}"#, required: "[]")
        let v2 = Self.object(#""uom":{"enum":["PC"]}"#, required: "[]")  // registered while checks were off
        let v3 = Self.object(#""uom":{"enum":["PC","M"]}"#, required: "[]")
        #expect(try problems(v3, after: [v1, v2], .backward).isEmpty)
        let transitive = try problems(v3, after: [v1, v2], .backwardTransitive)
        #expect(transitive.count == 1 && transitive[0].contains("version 1") && transitive[0].contains("\"KG\""))
        #expect(try problems(v3, after: [v1, v2], .fullTransitive).count > 1)
        #expect(try problems(v3, after: [], .fullTransitive).isEmpty)  // the first version is always accepted
    }

    @Test func refsAndRecursiveSchemasAreCompared() throws {
        let v1 = ##"{"$defs":{"part":{"type":"object","properties":{"qty":{"type":"integer"},"children":{"type":"array","items":{"$ref":"#/$defs/part"}}}}},"$ref":"#/$defs/part"}"##
        let wider = ##"{"$defs":{"part":{"type":"object","properties":{"qty":{"type":"number"},"children":{"type":"array","items":{"$ref":"#/$defs/part"}}}}},"$ref":"#/$defs/part"}"##
        #expect(try problems(wider, after: [v1], .backward).isEmpty)
        #expect(try !problems(wider, after: [v1], .forward).isEmpty)
        #expect(try problems(v1, after: [v1], .full).isEmpty)  // identical: compatible both ways
        #expect(try problems(Self.base, after: [Self.base], .fullTransitive).isEmpty)
        let anyOfWider = #"{"anyOf":[{"type":"string"},{"type":"integer"}]}"#
        #expect(try problems(anyOfWider, after: [#"{"type":"string"}"#], .backward).isEmpty)
        #expect(try !problems(#"{"type":"string"}"#, after: [anyOfWider], .backward).isEmpty)
    }
}
