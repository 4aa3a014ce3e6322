/// Why a schema document was refused at registration. The message names the keyword and
/// where it is (a JSON pointer into the schema).
public struct SchemaError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// Not JSON, or JSON that is not a schema (a keyword with a value of the wrong type).
        case invalidSchema = "invalid_schema"
        /// A keyword outside the supported subset: refused, never silently ignored.
        case unsupportedKeyword = "unsupported_keyword"
        /// A `pattern` that is not a supported regular expression.
        case unsupportedPattern = "unsupported_pattern"
        /// A `$ref` that does not resolve inside the document, or loops without reading data.
        case badReference = "bad_reference"
        /// Over a named limit (size, depth, pattern states).
        case limitExceeded = "limit_exceeded"
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}

/// Where one record broke its schema: the JSON pointer into the record, the keyword, and a
/// sentence with the value, e.g. `/yieldQty: -3 is less than minimum 0`.
public struct SchemaViolation: Sendable, Equatable, CustomStringConvertible {
    public let path: String
    public let rule: String
    public let message: String

    public init(path: String, rule: String, message: String) {
        self.path = path
        self.rule = rule
        self.message = message
    }

    public var description: String { "\(path.isEmpty ? "/" : path): \(message)" }
}
