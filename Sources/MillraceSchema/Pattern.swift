/// JSON Schema's `pattern`: an ECMA-262 regular expression, searched (not anchored) in a
/// string. Compiled to a program for a Pike VM (Thompson's construction, all threads in step),
/// so matching takes time linear in the string whatever the pattern — a pattern such as
/// `(a+)+$` cannot stall the produce path. What needs backtracking (back-references,
/// lookaround) is refused at registration, as is a program over `Limits.patternStatesMax`.
///
/// Supported: literals and escapes (`\d \D \w \W \s \S \b \B \t \n \r \f \v \uXXXX \xXX`,
/// escaped punctuation), `.`, classes `[...]` `[^...]` with ranges, groups `(...)` `(?:...)`,
/// `|`, `* + ? {n} {n,} {n,m}` (greedy or lazy: the same for a yes/no match), `^ $`.
public final class Pattern: Sendable {
    public let source: String
    private let program: [Instruction]
    private let classes: [ScalarClass]

    enum Instruction: Sendable, Equatable {
        case scalar(UInt32)
        case any
        case inClass(Int)
        case split(Int, Int)
        case jump(Int)
        case lineStart
        case lineEnd
        case wordBoundary(Bool)
        case match
    }

    struct ScalarClass: Sendable {
        var ranges: [ClosedRange<UInt32>] = [] {
            didSet { ascii = Self.asciiBits(ranges) }
        }
        var negated = false
        /// Membership of the 128 ASCII scalars (before negation), looked up without the ranges.
        private var ascii: (UInt64, UInt64) = (0, 0)

        init(ranges: [ClosedRange<UInt32>] = [], negated: Bool = false) {
            self.ranges = ranges
            self.negated = negated
            ascii = Self.asciiBits(ranges)
        }

        private static func asciiBits(_ ranges: [ClosedRange<UInt32>]) -> (UInt64, UInt64) {
            var bits: (UInt64, UInt64) = (0, 0)
            for range in ranges where range.lowerBound < 128 {
                for scalar in range.lowerBound...min(range.upperBound, 127) {
                    if scalar < 64 { bits.0 |= 1 << UInt64(scalar) } else { bits.1 |= 1 << UInt64(scalar - 64) }
                }
            }
            return bits
        }

        func contains(_ scalar: UInt32) -> Bool {
            if scalar < 128 {
                let member = scalar < 64 ? ascii.0 & (1 << UInt64(scalar)) != 0 : ascii.1 & (1 << UInt64(scalar - 64)) != 0
                return member != negated
            }
            var found = false
            for range in ranges where range.contains(scalar) {
                found = true
                break
            }
            return found != negated
        }
    }

    /// The common shape of identifiers (`^L[0-9]{11}$`): anchored at both ends, a sequence of
    /// single-scalar steps each repeated a fixed number of times. Matched by one walk, no VM.
    private let fixed: [(step: Instruction, count: Int)]?
    /// The fixed shape again, one entry per position: which ASCII scalars it accepts (bit n of
    /// the pair for scalar n). An ASCII string matches when it has exactly this many bytes
    /// and each is accepted where it stands.
    let fixedASCII: [(UInt64, UInt64)]?

    public init(_ source: String, statesMax: Int = 4_096) throws(SchemaError) {
        self.source = source
        var parser = PatternParser(Array(source.unicodeScalars), source: source)
        let tree = try parser.parse()
        var emitter = PatternEmitter(statesMax: statesMax, source: source)
        try emitter.emit(tree)
        emitter.program.append(.match)
        program = emitter.program
        classes = parser.classes
        fixed = Self.fixedShape(tree)
        fixedASCII = fixed.map { steps in
            steps.flatMap { step, count in
                var bits: (UInt64, UInt64) = (0, 0)
                for scalar in UInt32(0)..<128 where Self.accepts(step, scalar, classes: parser.classes) {
                    if scalar < 64 { bits.0 |= 1 << UInt64(scalar) } else { bits.1 |= 1 << UInt64(scalar - 64) }
                }
                return Array(repeating: bits, count: count)
            }
        }
    }

    private static func fixedShape(_ tree: PatternNode) -> [(step: Instruction, count: Int)]? {
        guard case .sequence(let items) = tree, items.count >= 2, case .lineStart = items[0], case .lineEnd = items[items.count - 1] else { return nil }
        var steps: [(step: Instruction, count: Int)] = []
        for item in items.dropFirst().dropLast() {
            var node = item
            var count = 1
            if case .repeated(let inner, let min, let max) = item {
                guard max == min else { return nil }
                node = inner
                count = min
            }
            switch node {
            case .scalar(let value): steps.append((.scalar(value), count))
            case .any: steps.append((.any, count))
            case .inClass(let index): steps.append((.inClass(index), count))
            default: return nil
            }
        }
        return steps
    }

    @inline(__always) private func accepts(_ step: Instruction, _ scalar: UInt32) -> Bool {
        Self.accepts(step, scalar, classes: classes)
    }

    @inline(__always) private static func accepts(_ step: Instruction, _ scalar: UInt32, classes: [ScalarClass]) -> Bool {
        switch step {
        case .scalar(let wanted): scalar == wanted
        case .any: !isLineTerminator(scalar)
        case .inClass(let index): classes[index].contains(scalar)
        case .split, .jump, .lineStart, .lineEnd, .wordBoundary, .match: false
        }
    }

    /// Whether UTF-8 `bytes` (well formed) contain a match. An identifier-shaped pattern over
    /// ASCII text is checked byte by byte, without decoding.
    func matches(utf8 bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        var steps = Int.max
        return matches(utf8: bytes, steps: &steps)
    }

    /// As `matches(utf8:)`, spending `steps` (one per state visited per scalar): when they run
    /// out, `steps` is negative and the answer is false. The VM is linear in the text, but
    /// states × scalars is still more than one value may cost.
    func matches(utf8 bytes: UnsafeBufferPointer<UInt8>, steps: inout Int) -> Bool {
        if let fixed {
            // At most the pattern's own length in steps: no budget needed.
            var position = 0
            for (step, count) in fixed {
                for _ in 0..<count {
                    guard position < bytes.count else { return false }
                    let byte = bytes[position]
                    if byte >= 0x80 { return matches(UTF8Scalars(bytes), steps: &steps) }
                    guard accepts(step, UInt32(byte)) else { return false }
                    position += 1
                }
            }
            // Anchored at the end: anything left over (a scalar or more) means no match.
            return position == bytes.count
        }
        return matches(UTF8Scalars(bytes), steps: &steps)
    }

    /// Whether `text` contains a match.
    public func matches(_ text: some Sequence<Unicode.Scalar>) -> Bool {
        var steps = Int.max
        return matches(text, steps: &steps)
    }

    /// As `matches(_:)`, spending `steps` as `matches(utf8:steps:)` does.
    public func matches(_ text: some Sequence<Unicode.Scalar>, steps: inout Int) -> Bool {
        if let fixed {
            var iterator = text.makeIterator()
            for (step, count) in fixed {
                for _ in 0..<count {
                    guard let scalar = iterator.next(), accepts(step, scalar.value) else { return false }
                }
            }
            return iterator.next() == nil
        }
        var current = ThreadList(capacity: program.count)
        var next = ThreadList(capacity: program.count)
        var iterator = text.makeIterator()
        var previous: UInt32? = nil
        var this = iterator.next()?.value
        var upcoming = this == nil ? nil : iterator.next()?.value
        while true {
            // Searching, not anchored: a new thread starts at every position.
            if addThread(&current, 0, previous: previous, current: this) { return true }
            guard let scalar = this else { return false }
            steps -= current.items.count + 1
            guard steps >= 0 else { return false }
            next.clear()
            for pc in current.items {
                let step: Bool
                switch program[pc] {
                case .scalar(let wanted): step = scalar == wanted
                case .any: step = !Self.isLineTerminator(scalar)
                case .inClass(let index): step = classes[index].contains(scalar)
                case .split, .jump, .lineStart, .lineEnd, .wordBoundary, .match: step = false
                }
                if step, addThread(&next, pc + 1, previous: scalar, current: upcoming) { return true }
            }
            swap(&current, &next)
            previous = scalar
            this = upcoming
            upcoming = this == nil ? nil : iterator.next()?.value
        }
    }

    /// Follows jumps, splits and assertions from `pc`; true when it reaches a match.
    private func addThread(_ list: inout ThreadList, _ pc: Int, previous: UInt32?, current: UInt32?) -> Bool {
        var stack = [pc]
        while let pc = stack.popLast() {
            guard list.insert(pc) else { continue }
            switch program[pc] {
            case .match: return true
            case .jump(let target): stack.append(target)
            case .split(let first, let second):
                stack.append(second)
                stack.append(first)
            case .lineStart: if previous == nil { stack.append(pc + 1) }
            case .lineEnd: if current == nil { stack.append(pc + 1) }
            case .wordBoundary(let wanted):
                let before = previous.map(Self.isWord) ?? false
                let after = current.map(Self.isWord) ?? false
                if (before != after) == wanted { stack.append(pc + 1) }
            case .scalar, .any, .inClass: break
            }
        }
        return false
    }

    static func isLineTerminator(_ scalar: UInt32) -> Bool {
        scalar == 0x0A || scalar == 0x0D || scalar == 0x2028 || scalar == 0x2029
    }

    static func isWord(_ scalar: UInt32) -> Bool {
        (0x30...0x39).contains(scalar) || (0x41...0x5A).contains(scalar) || (0x61...0x7A).contains(scalar) || scalar == 0x5F
    }
}

/// A sparse set of program counters: insertion order kept, membership in O(1).
struct ThreadList {
    private(set) var items: [Int] = []
    private var seen: [Bool]

    init(capacity: Int) {
        seen = Array(repeating: false, count: capacity)
        items.reserveCapacity(capacity)
    }

    /// Only the threads that consume a scalar need keeping, but every state visited is marked
    /// so that a loop of splits ends.
    mutating func insert(_ pc: Int) -> Bool {
        if seen[pc] { return false }
        seen[pc] = true
        items.append(pc)
        return true
    }

    mutating func clear() {
        for pc in items { seen[pc] = false }
        items.removeAll(keepingCapacity: true)
    }
}

indirect enum PatternNode {
    case empty
    case scalar(UInt32)
    case any
    case inClass(Int)
    case lineStart
    case lineEnd
    case wordBoundary(Bool)
    case sequence([PatternNode])
    case alternation([PatternNode])
    case repeated(PatternNode, min: Int, max: Int?)
}

struct PatternParser {
    private let scalars: [Unicode.Scalar]
    private let source: String
    private var position = 0
    private(set) var classes: [Pattern.ScalarClass] = []

    init(_ scalars: [Unicode.Scalar], source: String) {
        self.scalars = scalars
        self.source = source
    }

    private func refuse(_ why: String) -> SchemaError {
        SchemaError(.unsupportedPattern, "pattern \(JSONValue.quote(source)): \(why)")
    }

    mutating func parse() throws(SchemaError) -> PatternNode {
        let node = try alternation()
        guard position == scalars.count else { throw refuse("unbalanced ')' at character \(position + 1)") }
        return node
    }

    private var peek: Unicode.Scalar? { position < scalars.count ? scalars[position] : nil }

    private mutating func alternation() throws(SchemaError) -> PatternNode {
        var branches = [try sequence()]
        while peek == "|" {
            position += 1
            branches.append(try sequence())
        }
        return branches.count == 1 ? branches[0] : .alternation(branches)
    }

    private mutating func sequence() throws(SchemaError) -> PatternNode {
        var items: [PatternNode] = []
        while let next = peek, next != "|", next != ")" {
            var atom = try self.atom()
            atom = try quantified(atom)
            items.append(atom)
        }
        return items.count == 1 ? items[0] : .sequence(items)
    }

    private mutating func quantified(_ atom: PatternNode) throws(SchemaError) -> PatternNode {
        var node = atom
        while let next = peek {
            var bounds: (Int, Int?)
            switch next {
            case "*": bounds = (0, nil); position += 1
            case "+": bounds = (1, nil); position += 1
            case "?": bounds = (0, 1); position += 1
            case "{":
                guard let parsed = braces() else { return node }  // a literal '{', as ECMA allows
                bounds = parsed
            default: return node
            }
            if case .lineStart = node { throw refuse("a quantifier after '^'") }
            if let max = bounds.1, max < bounds.0 { throw refuse("{\(bounds.0),\(max)}: the maximum is below the minimum") }
            if peek == "?" { position += 1 }  // lazy: the same for a yes/no match
            node = .repeated(node, min: bounds.0, max: bounds.1)
            if let next = peek, "*+?".unicodeScalars.contains(next) { throw refuse("a quantifier after a quantifier") }
        }
        return node
    }

    /// `{n}`, `{n,}` or `{n,m}` at the current position, or nil (then '{' is literal).
    private mutating func braces() -> (Int, Int?)? {
        var at = position + 1
        func number() -> Int? {
            var value = 0
            var digits = 0
            while at < scalars.count, let digit = Int(String(scalars[at])), digits < 6 {
                value = value * 10 + digit
                digits += 1
                at += 1
            }
            return digits == 0 ? nil : value
        }
        guard let low = number() else { return nil }
        var high: Int? = low
        if at < scalars.count, scalars[at] == "," {
            at += 1
            high = number()
        }
        guard at < scalars.count, scalars[at] == "}" else { return nil }
        position = at + 1
        return (low, high)
    }

    private mutating func atom() throws(SchemaError) -> PatternNode {
        guard let next = peek else { return .empty }
        position += 1
        switch next {
        case ".": return .any
        case "^": return .lineStart
        case "$": return .lineEnd
        case "(":
            if peek == "?" {
                guard position + 1 < scalars.count, scalars[position + 1] == ":" else {
                    throw refuse("lookaround and named groups ('(?' other than '(?:') are not supported")
                }
                position += 2
            }
            let inner = try alternation()
            guard peek == ")" else { throw refuse("a '(' is not closed") }
            position += 1
            return inner
        case "[": return try characterClass()
        case "*", "+", "?": throw refuse("'\(next)' has nothing to repeat")
        case "\\": return try escape(inClass: false).node
        default: return .scalar(next.value)
        }
    }

    private mutating func characterClass() throws(SchemaError) -> PatternNode {
        var set = Pattern.ScalarClass()
        if peek == "^" {
            set.negated = true
            position += 1
        }
        var first = true
        while let next = peek, next != "]" || first {
            first = false
            position += 1
            var low: UInt32
            if next == "\\" {
                let escaped = try escape(inClass: true)
                if let ranges = escaped.ranges {
                    set.ranges += ranges
                    continue
                }
                guard case .scalar(let value) = escaped.node else { continue }
                low = value
            } else {
                low = next.value
            }
            if peek == "-", position + 1 < scalars.count, scalars[position + 1] != "]" {
                position += 1
                guard let end = peek else { break }
                position += 1
                var high = end.value
                if end == "\\" {
                    let escaped = try escape(inClass: true)
                    guard case .scalar(let value) = escaped.node, escaped.ranges == nil else { throw refuse("a class shorthand cannot end a range") }
                    high = value
                }
                guard low <= high else { throw refuse("range out of order in a character class") }
                set.ranges.append(low...high)
            } else {
                set.ranges.append(low...low)
            }
        }
        guard peek == "]" else { throw refuse("a '[' is not closed") }
        position += 1
        classes.append(set)
        return .inClass(classes.count - 1)
    }

    static let digits: [ClosedRange<UInt32>] = [0x30...0x39]
    static let word: [ClosedRange<UInt32>] = [0x30...0x39, 0x41...0x5A, 0x5F...0x5F, 0x61...0x7A]
    static let space: [ClosedRange<UInt32>] = [
        0x09...0x0D, 0x20...0x20, 0xA0...0xA0, 0x1680...0x1680, 0x2000...0x200A, 0x2028...0x2029, 0x202F...0x202F, 0x205F...0x205F,
        0x3000...0x3000, 0xFEFF...0xFEFF,
    ]

    /// After a backslash: a single scalar, a shorthand class (as ranges), or an assertion.
    private mutating func escape(inClass: Bool) throws(SchemaError) -> (node: PatternNode, ranges: [ClosedRange<UInt32>]?) {
        guard let next = peek else { throw refuse("the pattern ends with a '\\'") }
        position += 1
        func shorthand(_ ranges: [ClosedRange<UInt32>], negated: Bool) -> (PatternNode, [ClosedRange<UInt32>]?) {
            let set = Pattern.ScalarClass(ranges: ranges, negated: negated)
            if inClass {
                guard negated else { return (.empty, ranges) }
                // A negated shorthand inside a class: its complement as ranges.
                var complement: [ClosedRange<UInt32>] = []
                var start: UInt32 = 0
                for range in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) {
                    if range.lowerBound > start { complement.append(start...(range.lowerBound - 1)) }
                    start = range.upperBound + 1
                }
                complement.append(start...0x10FFFF)
                return (.empty, complement)
            }
            classes.append(set)
            return (.inClass(classes.count - 1), nil)
        }
        switch next {
        case "d": return shorthand(Self.digits, negated: false)
        case "D": return shorthand(Self.digits, negated: true)
        case "w": return shorthand(Self.word, negated: false)
        case "W": return shorthand(Self.word, negated: true)
        case "s": return shorthand(Self.space, negated: false)
        case "S": return shorthand(Self.space, negated: true)
        case "b" where inClass: return (.scalar(0x08), nil)
        case "b": return (.wordBoundary(true), nil)
        case "B" where !inClass: return (.wordBoundary(false), nil)
        case "t": return (.scalar(0x09), nil)
        case "n": return (.scalar(0x0A), nil)
        case "r": return (.scalar(0x0D), nil)
        case "f": return (.scalar(0x0C), nil)
        case "v": return (.scalar(0x0B), nil)
        case "0": return (.scalar(0), nil)
        case "u", "x":
            let count = next == "u" ? 4 : 2
            guard position + count <= scalars.count else { throw refuse("\\\(next) needs \(count) hex digits") }
            var value: UInt32 = 0
            for scalar in scalars[position..<position + count] {
                guard scalar.isASCII, let digit = JSONScanner.hexValue(UInt8(scalar.value)) else { throw refuse("\\\(next) needs \(count) hex digits") }
                value = value << 4 | digit
            }
            position += count
            return (.scalar(value), nil)
        case "1"..."9": throw refuse("back-references (\\\(next)) are not supported")
        case "p", "P", "k", "c": throw refuse("\\\(next) is not supported")
        default:
            guard !next.properties.isAlphabetic else { throw refuse("\\\(next) is not a known escape") }
            return (.scalar(next.value), nil)
        }
    }
}

struct PatternEmitter {
    let statesMax: Int
    let source: String
    var program: [Pattern.Instruction] = []

    private func tooLarge() -> SchemaError {
        SchemaError(.limitExceeded, "pattern \(JSONValue.quote(source)) compiles to more than \(statesMax) states (patternStatesMax); use smaller repetition counts")
    }

    mutating func emit(_ node: PatternNode) throws(SchemaError) {
        guard program.count < statesMax else { throw tooLarge() }
        switch node {
        case .empty: break
        case .scalar(let value): program.append(.scalar(value))
        case .any: program.append(.any)
        case .inClass(let index): program.append(.inClass(index))
        case .lineStart: program.append(.lineStart)
        case .lineEnd: program.append(.lineEnd)
        case .wordBoundary(let wanted): program.append(.wordBoundary(wanted))
        case .sequence(let items): for item in items { try emit(item) }
        case .alternation(let branches):
            var jumps: [Int] = []
            for (index, branch) in branches.enumerated() {
                if index < branches.count - 1 {
                    let split = program.count
                    program.append(.split(0, 0))
                    try emit(branch)
                    jumps.append(program.count)
                    program.append(.jump(0))
                    program[split] = .split(split + 1, program.count)
                } else {
                    try emit(branch)
                }
            }
            for jump in jumps { program[jump] = .jump(program.count) }
        case .repeated(let inner, let min, let max):
            for _ in 0..<min { try emit(inner) }
            if let max {
                // Each optional copy: split over it.
                var splits: [Int] = []
                for _ in min..<max {
                    splits.append(program.count)
                    program.append(.split(0, 0))
                    try emit(inner)
                    guard program.count < statesMax else { throw tooLarge() }
                }
                for split in splits { program[split] = .split(split + 1, program.count) }
            } else {
                let loop = program.count
                program.append(.split(0, 0))
                try emit(inner)
                program.append(.jump(loop))
                program[loop] = .split(loop + 1, program.count)
            }
        }
        guard program.count <= statesMax else { throw tooLarge() }
    }
}
