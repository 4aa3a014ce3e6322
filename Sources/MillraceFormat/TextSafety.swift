extension Unicode.Scalar {
    /// Whether the scalar must not reach a log line or a terminal as it is: C0 and C1
    /// controls, DEL, and the bidirectional overrides and isolates (a newline forges a line,
    /// an escape sequence drives the terminal, an override makes a line read other than it is).
    public var isUnsafeInText: Bool {
        value < 0x20 || (0x7F...0x9F).contains(value) || (0x202A...0x202E).contains(value) || (0x2066...0x2069).contains(value)
    }
}

extension String {
    /// The text with every `isUnsafeInText` scalar as `?`, at most `max` scalars.
    public func printable(max: Int = .max) -> String {
        guard unicodeScalars.count > max || unicodeScalars.contains(where: \.isUnsafeInText) else { return self }
        return String(String.UnicodeScalarView(unicodeScalars.prefix(max).map { $0.isUnsafeInText ? "?" : $0 }))
    }
}
