/// Schemas and records that cost exponential work without remembered answers (issue 22's
/// probes), shared by the schema module's tests and the broker's.
public enum HostileSchemas {
    /// Two anyOf branches, each recursing into "a".
    public static let twoBranches = ##"{"type":"object","anyOf":[{"properties":{"a":{"$ref":"#"}}},{"properties":{"a":{"$ref":"#"}},"title":"second"}]}"##

    /// `{"a":` `depth` times around `innermost`.
    public static func nested(_ depth: Int, innermost: String) -> String {
        String(repeating: #"{"a":"#, count: depth) + innermost + String(repeating: "}", count: depth)
    }

    /// Nested `$defs`, each with anyOf/oneOf of two refs to the next, the last back to the first
    /// or a string of at most `maxLength`.
    public static func chain(_ levels: Int, maxLength: Int) -> String {
        var definitions: [String] = []
        for level in 0..<levels {
            let next = "#/$defs/l\(level + 1)"
            definitions.append(
                #""l\#(level)":{"type":"object","properties":{"a":{"anyOf":[{"$ref":"\#(next)"},{"$ref":"\#(next)"},{"type":"null"}]},"b":{"oneOf":[{"$ref":"\#(next)"},{"$ref":"\#(next)"}]}}}"#
            )
        }
        definitions.append(##""l\##(levels)":{"anyOf":[{"$ref":"#/$defs/l0"},{"type":"string","maxLength":\##(maxLength)}]}"##)
        return ##"{"$defs":{\##(definitions.joined(separator: ","))},"$ref":"#/$defs/l0"}"##
    }
}
