import MillraceFormat

/// A JSON Schema document compiled for validating records: a flat array of subschemas that
/// refer to each other by index (`$ref` resolved, loops allowed only through data).
///
/// The subset (everything else is refused by name): `type`, `properties`, `required`,
/// `additionalProperties`, `items`, `enum`, `const`, `minimum`, `maximum`,
/// `exclusiveMinimum`, `exclusiveMaximum`, `minLength`, `maxLength`, `pattern`,
/// `format: date-time`, `$ref` (a JSON pointer inside the document), `$defs`, `oneOf`,
/// `anyOf`; boolean schemas; and annotations that never change a result (`$schema`, `$id`
/// at the root, `$comment`, `title`, `description`, `default`, `examples`, `deprecated`,
/// `readOnly`, `writeOnly`).
public struct Schema: Sendable {
    /// The document as registered.
    public let document: JSONValue
    /// The compiled nodes, and the same as flat tables, which validation reads. (One
    /// reference: a `Schema` is cheap to pass around.)
    let tables: Tables
    var nodes: [Node] { tables.nodes }
    /// Each node's location in the document (a JSON pointer).
    var locations: [String] { tables.locations }

    struct TypeSet: OptionSet, Sendable {
        let rawValue: UInt8
        static let object = TypeSet(rawValue: 1)
        static let array = TypeSet(rawValue: 2)
        static let string = TypeSet(rawValue: 4)
        static let number = TypeSet(rawValue: 8)
        static let integer = TypeSet(rawValue: 16)
        static let boolean = TypeSet(rawValue: 32)
        static let null = TypeSet(rawValue: 64)

        static let names: [(String, TypeSet)] = [
            ("object", .object), ("array", .array), ("string", .string), ("number", .number), ("integer", .integer), ("boolean", .boolean),
            ("null", .null),
        ]
    }

    enum Additional: Sendable {
        case allowed
        case forbidden
        case schema(Int)
    }

    struct Property: Sendable {
        let key: [UInt8]
        let name: String
        /// The property's subschema, or nil for a name that is only required.
        var node: Int?
        /// Its bit in the required mask, when required.
        var requiredBit: Int?
    }

    /// A subschema while it is compiled.
    struct NodeDraft: Sendable {
        /// The schema `false`: nothing is valid.
        var never = false
        var types: TypeSet?
        var properties: [Property] = []
        var requiredCount = 0
        var additional = Additional.allowed
        var items: Int?
        var enumValues: [JSONValue]?
        var constValue: JSONValue?
        /// The UTF-8 of each string among `enumValues` / of a string `constValue`, compared
        /// with a record's bytes without building strings.
        var enumStrings: [[UInt8]] = []
        var constString: [UInt8]?
        var minimum: Double?
        var maximum: Double?
        var exclusiveMinimum: Double?
        var exclusiveMaximum: Double?
        var minLength: Int?
        var maxLength: Int?
        var pattern: Pattern?
        var dateTime = false
        var refs: [Int] = []
        var anyOf: [Int] = []
        var oneOf: [Int] = []
    }

    /// A compiled subschema as JSON values, for compatibility checks and messages (validation
    /// reads `tables`).
    final class Node: Sendable {
        /// The schema `false`: nothing is valid.
        let never: Bool
        let types: TypeSet?
        let properties: [Property]
        let requiredCount: Int
        let additional: Additional
        let items: Int?
        let enumValues: [JSONValue]?
        let constValue: JSONValue?
        let minimum: Double?
        let maximum: Double?
        let exclusiveMinimum: Double?
        let exclusiveMaximum: Double?
        let minLength: Int?
        let maxLength: Int?
        let pattern: Pattern?
        let dateTime: Bool
        let refs: [Int]
        let anyOf: [Int]
        let oneOf: [Int]

        init(_ draft: NodeDraft) {
            never = draft.never
            types = draft.types
            properties = draft.properties
            requiredCount = draft.requiredCount
            additional = draft.additional
            items = draft.items
            enumValues = draft.enumValues
            constValue = draft.constValue
            minimum = draft.minimum
            maximum = draft.maximum
            exclusiveMinimum = draft.exclusiveMinimum
            exclusiveMaximum = draft.exclusiveMaximum
            minLength = draft.minLength
            maxLength = draft.maxLength
            pattern = draft.pattern
            dateTime = draft.dateTime
            refs = draft.refs
            anyOf = draft.anyOf
            oneOf = draft.oneOf
        }
    }

    /// Compiles a schema document given as JSON text.
    public init(json: [UInt8]) throws(SchemaError) {
        guard json.count <= Limits.schemaBytesMax else {
            throw SchemaError(.limitExceeded, "the schema is \(json.count) bytes; at most \(Limits.schemaBytesMax) (schemaBytesMax)")
        }
        let tape: JSONTape
        do {
            tape = try JSONTape.parse(json, depthMax: Limits.schemaDepthMax * 3)
        } catch {
            throw SchemaError(.invalidSchema, "the schema is \(error.description)")
        }
        try self.init(document: tape.value(at: 0))
    }

    public init(document: JSONValue) throws(SchemaError) {
        self.document = document
        var compiler = SchemaCompiler(root: document)
        _ = try compiler.compile(document, at: [], depth: 0)
        try compiler.checkLoops()
        try compiler.checkFanOut()
        tables = Tables(compiler.nodes, locations: compiler.locations)
    }
}

/// Turns the document into nodes, one per subschema location.
struct SchemaCompiler {
    let root: JSONValue
    var nodes: [Schema.NodeDraft] = []
    /// Location (JSON pointer) → node, so a location compiles once and `$ref` loops close.
    private var compiled: [String: Int] = [:]
    private(set) var locations: [String] = []

    static let annotations: Set<String> = ["$schema", "$comment", "title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly"]

    init(root: JSONValue) { self.root = root }

    static func pointer(_ path: [String]) -> String {
        path.isEmpty ? "" : "/" + path.map { $0.replacing("~", with: "~0").replacing("/", with: "~1") }.joined(separator: "/")
    }

    private static func at(_ path: [String]) -> String {
        path.isEmpty ? "the root" : pointer(path)
    }

    private func invalid(_ path: [String], _ why: String) -> SchemaError {
        SchemaError(.invalidSchema, "\(Self.at(path)): \(why)")
    }

    mutating func compile(_ schema: JSONValue, at path: [String], depth: Int) throws(SchemaError) -> Int {
        let location = Self.pointer(path)
        if let index = compiled[location] { return index }
        guard depth <= Limits.schemaDepthMax else {
            throw SchemaError(.limitExceeded, "\(Self.at(path)): subschemas nest deeper than \(Limits.schemaDepthMax) levels (schemaDepthMax)")
        }
        guard nodes.count < Limits.schemaNodesMax else {
            throw SchemaError(.limitExceeded, "the schema has more than \(Limits.schemaNodesMax) subschemas (schemaNodesMax)")
        }
        let index = nodes.count
        nodes.append(Schema.NodeDraft())
        locations.append(location)
        compiled[location] = index
        var node = Schema.NodeDraft()
        switch schema {
        case .bool(let value):
            node.never = !value
        case .object(let members):
            for (keyword, value) in members {
                try apply(keyword, value, to: &node, at: path, depth: depth)
            }
            try finishRequired(&node, members, at: path)
        default:
            throw invalid(path, "a schema must be an object or a boolean, not \(value: schema)")
        }
        nodes[index] = node
        return index
    }

    private mutating func apply(_ keyword: String, _ value: JSONValue, to node: inout Schema.NodeDraft, at path: [String], depth: Int) throws(SchemaError) {
        let here = path + [keyword]
        switch keyword {
        case "type":
            var types: Schema.TypeSet = []
            let names: [JSONValue]
            if case .array(let list) = value { names = list } else { names = [value] }
            guard !names.isEmpty else { throw invalid(here, "type needs at least one type name") }
            for name in names {
                guard case .string(let text) = name, let type = Schema.TypeSet.names.first(where: { $0.0 == text })?.1 else {
                    throw invalid(here, "\(value: name) is not a type (object, array, string, number, integer, boolean, null)")
                }
                types.insert(type)
            }
            node.types = types
        case "properties":
            guard case .object(let members) = value else { throw invalid(here, "properties must be an object") }
            for (name, subschema) in members {
                let child = try compile(subschema, at: here + [name], depth: depth + 1)
                node.properties.append(Schema.Property(key: Array(name.utf8), name: name, node: child, requiredBit: nil))
            }
        case "required":
            guard case .array(let names) = value, names.allSatisfy({ if case .string = $0 { true } else { false } }) else {
                throw invalid(here, "required must be an array of property names")
            }
        case "additionalProperties":
            switch value {
            case .bool(true): node.additional = .allowed
            case .bool(false): node.additional = .forbidden
            default: node.additional = .schema(try compile(value, at: here, depth: depth + 1))
            }
        case "items":
            guard case .array = value else {
                node.items = try compile(value, at: here, depth: depth + 1)
                return
            }
            throw SchemaError(.unsupportedKeyword, "\(Self.at(here)): items as an array (tuple validation) is not supported; use one schema for every item")
        case "enum":
            guard case .array(let values) = value, !values.isEmpty else { throw invalid(here, "enum must be a non-empty array") }
            node.enumValues = values
            node.enumStrings = values.compactMap { if case .string(let text) = $0 { Array(text.utf8) } else { nil } }
        case "const":
            node.constValue = value
            if case .string(let text) = value { node.constString = Array(text.utf8) }
        case "minimum": node.minimum = try number(value, here)
        case "maximum": node.maximum = try number(value, here)
        case "exclusiveMinimum": node.exclusiveMinimum = try number(value, here)
        case "exclusiveMaximum": node.exclusiveMaximum = try number(value, here)
        case "minLength": node.minLength = try count(value, here)
        case "maxLength": node.maxLength = try count(value, here)
        case "pattern":
            guard case .string(let source) = value else { throw invalid(here, "pattern must be a string") }
            guard source.count <= Limits.patternLengthMax else {
                throw SchemaError(.limitExceeded, "\(Self.at(here)): the pattern has \(source.count) characters; at most \(Limits.patternLengthMax) (patternLengthMax)")
            }
            do {
                node.pattern = try Pattern(source, statesMax: Limits.patternStatesMax)
            } catch {
                throw SchemaError(error.code, "\(Self.at(here)): \(error.message)")
            }
        case "format":
            guard case .string(let format) = value else { throw invalid(here, "format must be a string") }
            guard format == "date-time" else {
                throw SchemaError(.unsupportedKeyword, "\(Self.at(here)): format \"\(format)\" is not supported (only date-time)")
            }
            node.dateTime = true
        case "$ref":
            guard case .string(let reference) = value else { throw invalid(here, "$ref must be a string") }
            node.refs.append(try resolve(reference, from: here, depth: depth))
        case "$defs":
            guard case .object(let members) = value else { throw invalid(here, "$defs must be an object") }
            // Compiled so that mistakes in them are reported now, even if nothing refers to them.
            for (name, subschema) in members { _ = try compile(subschema, at: here + [name], depth: depth + 1) }
        case "anyOf", "oneOf":
            guard case .array(let branches) = value, !branches.isEmpty else { throw invalid(here, "\(keyword) must be a non-empty array of schemas") }
            var indices: [Int] = []
            for (position, branch) in branches.enumerated() {
                indices.append(try compile(branch, at: here + [String(position)], depth: depth + 1))
            }
            if keyword == "anyOf" { node.anyOf = indices } else { node.oneOf = indices }
        case "$id":
            guard path.isEmpty else {
                throw SchemaError(.unsupportedKeyword, "\(Self.at(here)): $id is only supported at the root (no embedded resources)")
            }
        default:
            guard Self.annotations.contains(keyword) else {
                throw SchemaError(.unsupportedKeyword, "\(Self.at(here)): \"\(keyword)\" is not a supported keyword (supported: type, properties, required, additionalProperties, items, enum, const, minimum, maximum, exclusiveMinimum, exclusiveMaximum, minLength, maxLength, pattern, format, $ref, $defs, oneOf, anyOf)")
            }
        }
    }

    /// Gives every required name a bit, adding names that have no subschema of their own.
    private func finishRequired(_ node: inout Schema.NodeDraft, _ members: [(String, JSONValue)], at path: [String]) throws(SchemaError) {
        guard case .array(let names)? = members.first(where: { $0.0 == "required" })?.1 else { return }
        var bit = 0
        var seen: Set<String> = []
        for case .string(let name) in names where seen.insert(name).inserted {
            guard bit < Limits.schemaRequiredMax else {
                throw SchemaError(.limitExceeded, "\(Self.at(path + ["required"])): more than \(Limits.schemaRequiredMax) required names (schemaRequiredMax)")
            }
            if let existing = node.properties.firstIndex(where: { $0.name == name }) {
                node.properties[existing].requiredBit = bit
            } else {
                node.properties.append(Schema.Property(key: Array(name.utf8), name: name, node: nil, requiredBit: bit))
            }
            bit += 1
        }
        node.requiredCount = bit
    }

    private func number(_ value: JSONValue, _ path: [String]) throws(SchemaError) -> Double {
        guard case .number(let number) = value, number.isFinite else { throw invalid(path, "\(path.last ?? "") must be a number") }
        return number
    }

    private func count(_ value: JSONValue, _ path: [String]) throws(SchemaError) -> Int {
        guard case .number(let number) = value, number >= 0, number == number.rounded(), number < 1e9 else {
            throw invalid(path, "\(path.last ?? "") must be a whole number, 0 or more")
        }
        return Int(number)
    }

    /// `#` or `#/json/pointer` into this document.
    private mutating func resolve(_ reference: String, from path: [String], depth: Int) throws(SchemaError) -> Int {
        guard reference.hasPrefix("#") else {
            throw SchemaError(.badReference, "\(Self.at(path)): $ref \"\(reference)\" points outside the document; only \"#\" and \"#/...\" are supported")
        }
        let pointer = String(reference.dropFirst())
        var target = root
        var targetPath: [String] = []
        if !pointer.isEmpty {
            guard pointer.hasPrefix("/") else {
                throw SchemaError(.badReference, "\(Self.at(path)): $ref \"\(reference)\" is not a JSON pointer (anchors are not supported)")
            }
            for token in pointer.dropFirst().split(separator: "/", omittingEmptySubsequences: false) {
                let name = (token.removingPercentEncoding ?? String(token)).replacing("~1", with: "/").replacing("~0", with: "~")
                switch target {
                case .object(let members):
                    guard let next = members.first(where: { $0.0 == name })?.1 else {
                        throw SchemaError(.badReference, "\(Self.at(path)): $ref \"\(reference)\" does not resolve (no \"\(name)\")")
                    }
                    target = next
                case .array(let items):
                    guard let position = Int(name), items.indices.contains(position) else {
                        throw SchemaError(.badReference, "\(Self.at(path)): $ref \"\(reference)\" does not resolve (no item \(name))")
                    }
                    target = items[position]
                default:
                    throw SchemaError(.badReference, "\(Self.at(path)): $ref \"\(reference)\" does not resolve")
                }
                targetPath.append(name)
            }
        }
        return try compile(target, at: targetPath, depth: depth + 1)
    }

    /// Refuses a schema where one value would be checked against too many subschemas
    /// through `$ref`/`anyOf`/`oneOf` chains (nested anyOf of shared definitions multiply):
    /// the validator's work per value stays bounded. Run after `checkLoops` (no cycles).
    func checkFanOut() throws(SchemaError) {
        var memo = [Int?](repeating: nil, count: nodes.count)
        func fanOut(_ index: Int) -> Int {
            if let known = memo[index] { return known }
            let node = nodes[index]
            var total = 1
            for next in node.refs + node.anyOf + node.oneOf {
                total = Swift.min(total + fanOut(next), Limits.schemaApplicatorFanOutMax + 1)
            }
            memo[index] = total
            return total
        }
        for index in nodes.indices where fanOut(index) > Limits.schemaApplicatorFanOutMax {
            let where_ = locations[index].isEmpty ? "the root" : locations[index]
            throw SchemaError(
                .limitExceeded,
                "\(where_): $ref, anyOf and oneOf here lead to more than \(Limits.schemaApplicatorFanOutMax) subschemas for one value (schemaApplicatorFanOutMax); share less or nest less")
        }
    }

    /// Refuses `$ref`/`anyOf`/`oneOf` cycles that never move into the data (they would
    /// never end); cycles through `properties`, `items` or `additionalProperties` are fine.
    func checkLoops() throws(SchemaError) {
        var state = [UInt8](repeating: 0, count: nodes.count)  // 0 new, 1 on the path, 2 done
        func visit(_ index: Int) throws(SchemaError) {
            if state[index] == 2 { return }
            if state[index] == 1 {
                let where_ = locations[index].isEmpty ? "the root" : locations[index]
                throw SchemaError(.badReference, "\(where_): $ref, anyOf or oneOf loop back to it without reading any data")
            }
            state[index] = 1
            let node = nodes[index]
            for next in node.refs + node.anyOf + node.oneOf { try visit(next) }
            state[index] = 2
        }
        for index in nodes.indices { try visit(index) }
    }
}

extension String.StringInterpolation {
    mutating func appendInterpolation(value: JSONValue) {
        let text = value.description
        appendLiteral(text.count > 80 ? String(text.prefix(77)) + "..." : text)
    }
}

extension StringProtocol {
    fileprivate var removingPercentEncoding: String? {
        var bytes: [UInt8] = []
        var iterator = utf8.makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let high = iterator.next().flatMap(JSONScanner.hexValue), let low = iterator.next().flatMap(JSONScanner.hexValue) else { return nil }
                bytes.append(UInt8(high << 4 | low))
            } else {
                bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }
}
