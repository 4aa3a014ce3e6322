import MillraceFormat

/// An RFC 6901 JSON pointer (`/lot/id`, `/items/0`, `~0` for `~` and `~1` for `/`), resolved
/// against a parsed tape without building values.
public struct JSONPointer: Sendable, Equatable {
    /// Each reference token, unescaped, as UTF-8.
    public let tokens: [[UInt8]]

    /// A pointer as RFC 6901 writes it: a `~` not followed by `0` or `1` is refused.
    public init(_ text: String) throws {
        tokens = try Self.tokens(text, strict: true)
    }

    /// A pointer already stored in a topic's policy. Versions before issue 22 stored
    /// pointers with a bare `~` (`/a~`, `/~2`); such a `~` stands for itself, as it did then,
    /// so those topics keep their keys.
    public init(stored text: String) throws {
        tokens = try Self.tokens(text, strict: false)
    }

    private static func tokens(_ text: String, strict: Bool) throws -> [[UInt8]] {
        guard !text.isEmpty else { return [] }
        guard text.hasPrefix("/") else { throw MillraceError(.invalidConfig, "JSON pointer \"\(text)\" must start with \"/\" (e.g. /event_id)") }
        let bytes = Array(text.utf8)
        var tokens: [[UInt8]] = []
        var token: [UInt8] = []
        var index = 1
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            if byte == UInt8(ascii: "/") {
                tokens.append(token)
                token = []
            } else if byte == UInt8(ascii: "~"), index < bytes.count, bytes[index] == UInt8(ascii: "0") || bytes[index] == UInt8(ascii: "1") {
                token.append(bytes[index] == UInt8(ascii: "0") ? UInt8(ascii: "~") : UInt8(ascii: "/"))
                index += 1
            } else if byte == UInt8(ascii: "~"), strict {
                throw MillraceError(
                    .invalidConfig,
                    "JSON pointer \"\(text)\": \"~\" at byte \(index - 1) must be followed by 0 or 1 (\"~0\" stands for ~ and \"~1\" for / in a name); "
                        + "write a name's ~ as ~0")
            } else {
                token.append(byte)
            }
        }
        tokens.append(token)
        return tokens
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

    /// The key at the pointer in a tape `parse`d from its own copy of the text, as bytes: a
    /// string's characters (escapes decoded), or a number's or boolean's text; nil for a
    /// missing value, null, an object or an array. (`millrace produce --key-field`.)
    public func keyBytes(in tape: JSONTape) -> [UInt8]? {
        tape.withView { view in
            guard let index = resolve(view) else { return nil }
            switch view[index].kind {
            case .string: return Array(view.string(at: index).utf8)
            case .number, .true, .false: return Array(view.raw(index))
            case .null, .object, .array: return nil
            }
        }
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

extension JSONPointer {
    /// Whether a token is `*`: in an index field it stands for every element of an array.
    public var hasWildcard: Bool { tokens.contains([0x2A]) }

    /// Every value the pointer names, a `*` token standing for each element of an array (on
    /// an object, `*` names a member called `*`): tape indices in document order, at most
    /// `limit`.
    func resolveAll(_ view: TapeView, limit: Int) -> [Int] {
        var found: [Int] = []
        forEachResolved(view, limit: limit) { found.append($0) }
        return found
    }

    /// Calls `body` with each value the pointer names (as `resolveAll`), at most `limit` times.
    func forEachResolved(_ view: TapeView, limit: Int, _ body: (Int) -> Void) {
        var count = 0
        func walk(_ index: Int, _ depth: Int) {
            guard count < limit else { return }
            guard depth < tokens.count else {
                count += 1
                return body(index)
            }
            let token = tokens[depth]
            let entry = view[index]
            switch entry.kind {
            case .object:
                var key = index + 1
                while key < Int(entry.next) {
                    if view.stringEquals(key, token) { return walk(key + 1, depth + 1) }
                    key = view.after(key + 1)
                }
            case .array where token == [0x2A]:
                var item = index + 1
                for _ in 0..<Int(entry.count) {
                    walk(item, depth + 1)
                    item = view.after(item)
                }
            case .array:
                guard let position = Self.arrayIndex(token), position < Int(entry.count) else { return }
                var item = index + 1
                for _ in 0..<position { item = view.after(item) }
                walk(item, depth + 1)
            default:
                return
            }
        }
        walk(0, 0)
    }

    /// The values an index takes from the pointer, hashed as a trace key is: each string's
    /// characters (escapes decoded), each number's or boolean's text; null, objects, arrays
    /// and values over `Limits.dedupKeyBytesMax` bytes are skipped. At most `limit`.
    public func indexHashes(in tape: JSONTape, text: UnsafeBufferPointer<UInt8>, limit: Int) -> [DedupHash] {
        var keys: [IndexKey] = []
        appendIndexKeys(in: tape, text: text, limit: limit, record: 0, slot: 0, position: IndexKey.unknownPosition, to: &keys)
        return keys.map(\.hash)
    }

    /// As `indexHashes`, appending each as an `IndexKey` of `record` and `slot` (no array per
    /// record on the produce path). Returns how many values it looked at (what `limit` counts).
    @discardableResult
    public func appendIndexKeys(
        in tape: JSONTape, text: UnsafeBufferPointer<UInt8>, limit: Int, record: Int32, slot: UInt8, position: UInt32, to keys: inout [IndexKey]
    ) -> Int {
        var seen = 0
        tape.withView(over: text) { view in
            forEachResolved(view, limit: limit) { index in
                seen += 1
                let entry = view[index]
                let hash: DedupHash?
                switch entry.kind {
                case .string where entry.escaped:
                    let value = Array(view.string(at: index).utf8)
                    hash = value.count <= Limits.dedupKeyBytesMax ? DedupHash(value) : nil
                case .string, .number, .true, .false:
                    let raw = view.raw(index)
                    hash = raw.count <= Limits.dedupKeyBytesMax ? DedupHash(UnsafeRawBufferPointer(raw)) : nil
                case .null, .object, .array:
                    hash = nil
                }
                if let hash { keys.append(IndexKey(record: record, slot: slot, hash: hash, position: position)) }
            }
        }
        return seen
    }

    /// The same values as text, for showing a trace hit (a tape `parse`d from its own copy).
    public func indexValues(in tape: JSONTape, limit: Int = Limits.indexValuesPerRecordMax) -> [String] {
        tape.withView { view in
            resolveAll(view, limit: limit).compactMap { index in
                switch view[index].kind {
                case .string: return view.string(at: index)
                case .number, .true, .false: return String(decoding: view.raw(index), as: UTF8.self)
                case .null, .object, .array: return nil
                }
            }
        }
    }

    /// As `keyHash(in:text:)`, but reading `text` only as far as the value it names: members
    /// before it are skipped without being parsed, and nothing after it is read. For a record
    /// no schema checks (so nothing else parses it). Text that is not JSON where it is read
    /// gives nil, never a trap.
    public func keyHash(scanning text: UnsafeBufferPointer<UInt8>) -> DedupHash? {
        var scanner = PointerScanner(text: text)
        guard let (start, end, kind) = scanner.find(tokens) else { return nil }
        switch kind {
        case .plainString, .scalar:
            guard end - start <= Limits.dedupKeyBytesMax else { return nil }
            return DedupHash(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(text)[start..<end]))
        case .escapedString:
            // Rare: decode it with the full scanner.
            var tape = JSONTape()
            let quoted = UnsafeBufferPointer(rebasing: text[(start - 1)...end])
            guard (try? tape.index(quoted, depthMax: 1)) != nil else { return nil }
            return DedupHash(Array(tape.withView(over: quoted) { $0.string(at: 0) }.utf8))
        }
    }
}

/// Walks JSON text only as far as a pointer's value.
struct PointerScanner {
    enum ValueKind { case plainString, escapedString, scalar }

    let text: UnsafeBufferPointer<UInt8>
    var position = 0

    init(text: UnsafeBufferPointer<UInt8>) { self.text = text }

    mutating func find(_ tokens: [[UInt8]]) -> (Int, Int, ValueKind)? {
        skipSpace()
        for token in tokens {
            guard position < text.count else { return nil }
            switch text[position] {
            case UInt8(ascii: "{"):
                guard enterMember(token) else { return nil }
            case UInt8(ascii: "["):
                guard enterItem(token) else { return nil }
            default:
                return nil
            }
        }
        guard position < text.count else { return nil }
        switch text[position] {
        case UInt8(ascii: "\""):
            let start = position + 1
            guard let (end, escaped) = skipString() else { return nil }
            return (start, end - 1, escaped ? .escapedString : .plainString)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "t"), UInt8(ascii: "f"):
            let start = position
            while position < text.count, !Self.ends(text[position]) { position += 1 }
            return position > start ? (start, position, .scalar) : nil
        default:
            return nil
        }
    }

    /// Inside an object, moves to the value of member `name` (the first of that name).
    private mutating func enterMember(_ name: [UInt8]) -> Bool {
        position += 1
        while true {
            skipSpace()
            guard position < text.count, text[position] == UInt8(ascii: "\"") else { return false }
            let keyStart = position + 1
            guard let (keyEnd, escaped) = skipString() else { return false }
            skipSpace()
            guard position < text.count, text[position] == UInt8(ascii: ":") else { return false }
            position += 1
            skipSpace()
            let matches: Bool
            if escaped {
                var tape = JSONTape()
                let quoted = UnsafeBufferPointer(rebasing: text[(keyStart - 1)..<keyEnd])
                matches = (try? tape.index(quoted, depthMax: 1)) != nil && Array(tape.withView(over: quoted) { $0.string(at: 0) }.utf8) == name
            } else {
                matches = keyEnd - 1 - keyStart == name.count && name.withUnsafeBufferPointer { wanted in
                    (0..<name.count).allSatisfy { text[keyStart + $0] == wanted[$0] }
                }
            }
            if matches { return true }
            guard skipValue() else { return false }
            skipSpace()
            guard position < text.count, text[position] == UInt8(ascii: ",") else { return false }
            position += 1
        }
    }

    /// Inside an array, moves to item `token` (decimal).
    private mutating func enterItem(_ token: [UInt8]) -> Bool {
        guard !token.isEmpty, token.count <= 9, token.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), token.count == 1 || token[0] != 0x30 else { return false }
        let wanted = token.reduce(0) { $0 * 10 + Int($1 - 0x30) }
        position += 1
        for _ in 0..<wanted {
            skipSpace()
            guard skipValue() else { return false }
            skipSpace()
            guard position < text.count, text[position] == UInt8(ascii: ",") else { return false }
            position += 1
        }
        skipSpace()
        return position < text.count && text[position] != UInt8(ascii: "]")
    }

    /// Past a string starting at its quote: where it ended (after the closing quote), and
    /// whether it holds an escape.
    private mutating func skipString() -> (Int, Bool)? {
        position += 1
        var escaped = false
        while position < text.count {
            switch text[position] {
            case UInt8(ascii: "\""):
                position += 1
                return (position, escaped)
            case UInt8(ascii: "\\"):
                escaped = true
                position += 2
            default:
                position += 1
            }
        }
        return nil
    }

    /// Past one value of any kind (containers by depth, strings read so that brackets in them
    /// do not count).
    private mutating func skipValue() -> Bool {
        guard position < text.count else { return false }
        switch text[position] {
        case UInt8(ascii: "\""):
            return skipString() != nil
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            var depth = 0
            while position < text.count {
                switch text[position] {
                case UInt8(ascii: "\""):
                    guard skipString() != nil else { return false }
                    continue
                case UInt8(ascii: "{"), UInt8(ascii: "["):
                    depth += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    depth -= 1
                    if depth == 0 {
                        position += 1
                        return true
                    }
                default:
                    break
                }
                position += 1
            }
            return false
        default:
            let start = position
            while position < text.count, !Self.ends(text[position]) { position += 1 }
            return position > start
        }
    }

    private mutating func skipSpace() {
        while position < text.count, text[position] == 0x20 || text[position] == 0x0A || text[position] == 0x0D || text[position] == 0x09 { position += 1 }
    }

    private static func ends(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: ",") || byte == UInt8(ascii: "}") || byte == UInt8(ascii: "]") || byte == 0x20 || byte == 0x0A || byte == 0x0D
            || byte == 0x09
    }
}
