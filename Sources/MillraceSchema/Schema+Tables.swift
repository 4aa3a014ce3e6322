#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

extension Schema {
    /// What validation reads, as plain values in a few flat tables: no references, so
    /// walking a record does no reference counting. Built once when the schema compiles and
    /// never changed; what only a violation needs (messages, JSON values) stays in `Node`.
    final class Tables: @unchecked Sendable {
        /// The nodes with their JSON values (compatibility checks, messages).
        let nodes: [Node]
        /// Each node's location in the document (a JSON pointer).
        let locations: [String]
        let hot: UnsafeBufferPointer<Hot>
        /// Every node's properties, one run per node.
        let slots: UnsafeBufferPointer<Slot>
        /// The bytes of property names, enum strings and const strings.
        let pool: UnsafePointer<UInt8>
        /// Enum and const strings: byte ranges in `pool`.
        let strings: UnsafeBufferPointer<Span>
        /// Targets of `$ref`, `anyOf` and `oneOf`.
        let links: UnsafeBufferPointer<Int32>
        /// Identifier-shaped patterns, one entry per position (see `Pattern.fixedASCII`).
        let positions: UnsafeBufferPointer<(UInt64, UInt64)>

        init(_ drafts: [NodeDraft], locations: [String]) {
            nodes = drafts.map(Node.init)
            self.locations = locations
            var hot: [Hot] = []
            var slots: [Slot] = []
            var pool: [UInt8] = []
            var strings: [Span] = []
            var links: [Int32] = []
            var positions: [(UInt64, UInt64)] = []
            func pooled(_ bytes: [UInt8]) -> Span {
                let start = Int32(pool.count)
                pool += bytes
                return Span(start, Int32(pool.count))
            }
            func linked(_ targets: [Int]) -> Span {
                let start = Int32(links.count)
                links += targets.map { Int32($0) }
                return Span(start, Int32(links.count))
            }
            for draft in drafts {
                var node = Hot()
                var checks: Checks = []
                if draft.never { checks.insert(.never) }
                if let types = draft.types {
                    checks.insert(.types)
                    node.types = types
                }
                let firstSlot = Int32(slots.count)
                for property in draft.properties {
                    let name = pooled(property.key)
                    let (first, second) = Slot.words(property.key)
                    slots.append(
                        Slot(first: first, second: second, start: name.start, length: name.end - name.start, child: Int32(property.node ?? -1), bit: Int32(property.requiredBit ?? -1)))
                }
                node.properties = Span(firstSlot, Int32(slots.count))
                node.requiredCount = Int32(draft.requiredCount)
                switch draft.additional {
                case .allowed: node.additional = Hot.allowsAll
                case .forbidden: node.additional = Hot.allowsNone
                case .schema(let child): node.additional = Int32(child)
                }
                if !draft.properties.isEmpty || draft.requiredCount > 0 || node.additional != Hot.allowsAll { checks.insert(.object) }
                if let items = draft.items {
                    checks.insert(.items)
                    node.items = Int32(items)
                }
                if draft.minLength != nil || draft.maxLength != nil {
                    checks.insert(.length)
                    node.minLength = draft.minLength ?? 0
                    node.maxLength = draft.maxLength ?? Int.max
                }
                if let pattern = draft.pattern {
                    checks.insert(.pattern)
                    if let fixed = pattern.fixedASCII {
                        checks.insert(.fixedPattern)
                        let start = Int32(positions.count)
                        positions += fixed
                        node.pattern = Span(start, Int32(positions.count))
                    }
                }
                if draft.dateTime { checks.insert(.dateTime) }
                if let minimum = draft.minimum { checks.insert(.minimum); node.minimum = minimum }
                if let maximum = draft.maximum { checks.insert(.maximum); node.maximum = maximum }
                if let bound = draft.exclusiveMinimum { checks.insert(.exclusiveMinimum); node.exclusiveMinimum = bound }
                if let bound = draft.exclusiveMaximum { checks.insert(.exclusiveMaximum); node.exclusiveMaximum = bound }
                if draft.enumValues != nil {
                    checks.insert(.enum)
                    let start = Int32(strings.count)
                    for text in draft.enumStrings { strings.append(pooled(text)) }
                    node.enumStrings = Span(start, Int32(strings.count))
                }
                if draft.constValue != nil {
                    checks.insert(.const)
                    if let text = draft.constString {
                        checks.insert(.constString)
                        node.constString = pooled(text)
                    }
                }
                if !draft.refs.isEmpty { checks.insert(.refs); node.refs = linked(draft.refs) }
                if !draft.anyOf.isEmpty { checks.insert(.anyOf); node.anyOf = linked(draft.anyOf) }
                if !draft.oneOf.isEmpty { checks.insert(.oneOf); node.oneOf = linked(draft.oneOf) }
                node.checks = checks
                hot.append(node)
            }
            self.hot = UnsafeBufferPointer(start: Self.copy(hot), count: hot.count)
            self.slots = UnsafeBufferPointer(start: Self.copy(slots), count: slots.count)
            self.pool = Self.copy(pool)
            self.strings = UnsafeBufferPointer(start: Self.copy(strings), count: strings.count)
            self.links = UnsafeBufferPointer(start: Self.copy(links), count: links.count)
            self.positions = UnsafeBufferPointer(start: Self.copy(positions), count: positions.count)
        }

        deinit {
            hot.baseAddress?.deallocate()
            slots.baseAddress?.deallocate()
            pool.deallocate()
            strings.baseAddress?.deallocate()
            links.baseAddress?.deallocate()
            positions.baseAddress?.deallocate()
        }

        /// A copy that lives as long as the tables (room for at least one element, so even
        /// an empty table has an address).
        private static func copy<T>(_ values: [T]) -> UnsafePointer<T> {
            let memory = UnsafeMutablePointer<T>.allocate(capacity: max(1, values.count))
            _ = UnsafeMutableBufferPointer(start: memory, count: values.count).initialize(from: values)
            return UnsafePointer(memory)
        }
    }

    /// A half-open range of indices into one of the tables.
    struct Span: Sendable {
        var start: Int32 = 0
        var end: Int32 = 0

        init() {}
        init(_ start: Int32, _ end: Int32) {
            self.start = start
            self.end = end
        }

        var range: Range<Int> { Int(start)..<Int(end) }
    }

    /// Which keywords a node has: the validator tests one word instead of each optional.
    struct Checks: OptionSet, Sendable {
        let rawValue: UInt32
        static let never = Checks(rawValue: 1 << 0)
        static let types = Checks(rawValue: 1 << 1)
        /// properties, required or additionalProperties other than `true`.
        static let object = Checks(rawValue: 1 << 2)
        static let items = Checks(rawValue: 1 << 3)
        static let length = Checks(rawValue: 1 << 4)
        static let pattern = Checks(rawValue: 1 << 5)
        /// The pattern also has a per-position table (`Hot.pattern`).
        static let fixedPattern = Checks(rawValue: 1 << 6)
        static let dateTime = Checks(rawValue: 1 << 7)
        static let minimum = Checks(rawValue: 1 << 8)
        static let maximum = Checks(rawValue: 1 << 9)
        static let exclusiveMinimum = Checks(rawValue: 1 << 10)
        static let exclusiveMaximum = Checks(rawValue: 1 << 11)
        static let `enum` = Checks(rawValue: 1 << 12)
        static let const = Checks(rawValue: 1 << 13)
        /// The const is a string (`Hot.constString`).
        static let constString = Checks(rawValue: 1 << 14)
        static let refs = Checks(rawValue: 1 << 15)
        static let anyOf = Checks(rawValue: 1 << 16)
        static let oneOf = Checks(rawValue: 1 << 17)

        static let string: Checks = [.length, .pattern, .dateTime]
        static let number: Checks = [.minimum, .maximum, .exclusiveMinimum, .exclusiveMaximum]
    }

    /// One node's keywords as plain values (those of a keyword not in `checks` are unused).
    struct Hot: Sendable {
        static let allowsAll: Int32 = -2
        static let allowsNone: Int32 = -1

        var checks: Checks = []
        var types = TypeSet(rawValue: 0)
        /// `allowsAll`, `allowsNone`, or the node other members are checked against.
        var additional = allowsAll
        var requiredCount: Int32 = 0
        var properties = Span()
        var items: Int32 = -1
        var minLength = 0
        var maxLength = Int.max
        var minimum = 0.0
        var maximum = 0.0
        var exclusiveMinimum = 0.0
        var exclusiveMaximum = 0.0
        var pattern = Span()
        var enumStrings = Span()
        var constString = Span()
        var refs = Span()
        var anyOf = Span()
        var oneOf = Span()
    }

    /// A property: its name's first sixteen bytes as two little-endian words (zero past the
    /// end), so most names compare in two loads; the rest in `pool`.
    struct Slot: Sendable {
        let first: UInt64
        let second: UInt64
        let start: Int32
        let length: Int32
        /// The property's subschema (-1: a name only in `required`).
        let child: Int32
        /// Its bit in the required mask (-1: not required).
        let bit: Int32

        static func words(_ name: [UInt8]) -> (UInt64, UInt64) {
            var words: (UInt64, UInt64) = (0, 0)
            for (position, byte) in name.prefix(16).enumerated() {
                if position < 8 { words.0 |= UInt64(byte) << UInt64(position * 8) } else { words.1 |= UInt64(byte) << UInt64((position - 8) * 8) }
            }
            return words
        }
    }
}

extension TapeView {
    /// Whether the string at `index` is the property `slot` names (`pool` holds its bytes).
    @inline(__always) func isName(_ index: Int, _ slot: Schema.Slot, pool: UnsafePointer<UInt8>) -> Bool {
        let entry = entries[index]
        let length = Int(slot.length)
        guard !entry.escaped else { return stringEquals(index, pool + Int(slot.start), length) }
        guard Int(entry.end &- entry.start) == length else { return false }
        let start = Int(entry.start)
        // A member name is followed by at least `":` and a value, so sixteen bytes can mostly
        // be read at once; near the end of the text, compare the bytes themselves.
        guard start + 16 <= bytes.count, let base = bytes.baseAddress else {
            return stringEquals(index, pool + Int(slot.start), length)
        }
        var first = UInt64(littleEndian: UnsafeRawPointer(base + start).loadUnaligned(as: UInt64.self))
        var second = UInt64(littleEndian: UnsafeRawPointer(base + start + 8).loadUnaligned(as: UInt64.self))
        if length < 8 {
            first &= (1 << UInt64(length * 8)) &- 1
            second = 0
        } else if length < 16 {
            second &= (1 << UInt64((length - 8) * 8)) &- 1
        }
        guard first == slot.first, second == slot.second else { return false }
        return length <= 16 || memcmp(base + start + 16, pool + Int(slot.start) + 16, length - 16) == 0
    }

    /// Whether the string at `index` is the bytes `span` marks in `pool`.
    @inline(__always) func stringEquals(_ index: Int, _ span: Schema.Span, pool: UnsafePointer<UInt8>) -> Bool {
        stringEquals(index, pool + Int(span.start), Int(span.end - span.start))
    }
}
