/// An operating error: bad input, a full disk, an unknown topic. It carries a stable
/// code and a message a person can act on. Programmer errors are preconditions instead.
public struct MillraceError: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: ErrorCode
    public var message: String

    public init(_ code: ErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}
