import MillraceFormat

/// An RFC 6901 JSON pointer (`/lot/id`, `/items/0`, `~0` for `~` and `~1` for `/`), resolved
/// against a parsed tape without building values.
public struct JSONPointer: Sendable, Equatable {
    /// Each reference token, unescaped, as UTF-8.
    public let tokens: [[UInt8]]

    public init(_ text: String) throws {
        guard !text.isEmpty else {
            tokens = []
            return
        }
        guard text.hasPrefix("/") else { throw MillraceError(.invalidConfig, "JSON pointer \"\(text)\" must start with \"/\" (e.g. /event_id)") }
        tokens = text.dropFirst().split(separator: "/", omittingEmptySubsequences: false).map {
            Array($0.replacing("~1", with: "/").replacing("~0", with: "~").utf8)
        }
    }

    /// The tape index of the value the pointer names, or nil when there is none.
    public func resolve(in tape: JSONTape, text: UnsafeBufferPointer<UInt8>) -> Int? {
        tape.withView(over: text) { view in resolve(view) }
    }

    func resolve(_ view: TapeView) -> Int? {
        var index = 0
        for token in tokens {
            let entry = view[index]
            switch entry.kind {
            case .object:
                var key = index + 1
                var found: Int?
                while key < Int(entry.next) {
                    if view.stringEquals(key, token) {
                        found = key + 1
                        break
                    }
                    key = view.after(key + 1)
                }
                guard let found else { return nil }
                index = found
            case .array:
                guard let position = Self.arrayIndex(token), position < Int(entry.count) else { return nil }
                var item = index + 1
                for _ in 0..<position { item = view.after(item) }
                index = item
            default:
                return nil
            }
        }
        return index
    }

    /// `0`, or digits without a leading zero.
    private static func arrayIndex(_ token: [UInt8]) -> Int? {
        guard !token.isEmpty, token.count <= 9, token.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), token.count == 1 || token[0] != 0x30 else { return nil }
        return token.reduce(0) { $0 * 10 + Int($1 - 0x30) }
    }

    /// The business key at the pointer, hashed: a string's characters (escapes decoded), or a
    /// number's or boolean's text; nil for a missing value, null, an object or an array.
    public func keyHash(in tape: JSONTape, text: UnsafeBufferPointer<UInt8>) -> DedupHash? {
        tape.withView(over: text) { view in
            guard let index = resolve(view) else { return nil }
            let entry = view[index]
            switch entry.kind {
            case .string where entry.escaped:
                return DedupHash(Array(view.string(at: index).utf8))
            case .string, .number, .true, .false:
                let raw = view.raw(index)
                guard raw.count <= Limits.dedupKeyBytesMax else { return nil }
                return DedupHash(UnsafeRawBufferPointer(raw))
            case .null, .object, .array:
                return nil
            }
        }
    }
}
