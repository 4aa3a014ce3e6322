extension Schema {
    /// Checks the value held by `tape` (already parsed: one parse per record). Returns the
    /// first `limit` violations; empty when the value is valid. A value whose check takes more
    /// than `stepsMax` steps is one violation (rule `budget`) at the root.
    public func validate(_ tape: JSONTape, limit: Int = 10, stepsMax: Int = Limits.validationStepsPerValueMax) -> [SchemaViolation] {
        var steps = stepsMax
        return tape.withView { view in validate(view, limit: limit, steps: &steps, of: stepsMax) }
    }

    /// Whether `tape`'s value is valid, without building any message (false when the check
    /// takes more than `stepsMax` steps).
    public func isValid(_ tape: JSONTape, stepsMax: Int = Limits.validationStepsPerValueMax) -> Bool {
        var steps = stepsMax
        return tape.withView { view in isValid(view, steps: &steps) }
    }

    /// As `validate(_:limit:)` for a tape `index`ed from `text` (checked in place).
    public func validate(_ tape: JSONTape, in text: UnsafeBufferPointer<UInt8>, limit: Int = 10, stepsMax: Int = Limits.validationStepsPerValueMax)
        -> [SchemaViolation]
    {
        var steps = stepsMax
        return tape.withView(over: text) { view in validate(view, limit: limit, steps: &steps, of: stepsMax) }
    }

    /// As `isValid(_:)` for a tape `index`ed from `text`.
    public func isValid(_ tape: JSONTape, in text: UnsafeBufferPointer<UInt8>, stepsMax: Int = Limits.validationStepsPerValueMax) -> Bool {
        var steps = stepsMax
        return isValid(tape, in: text, steps: &steps)
    }

    /// As `isValid(_:)` for a tape `index`ed from `text`, spending `steps`: on return they are
    /// what is left, negative when the check ran out (and the answer is then false).
    public func isValid(_ tape: JSONTape, in text: UnsafeBufferPointer<UInt8>, steps: inout Int) -> Bool {
        tape.withView(over: text) { view in isValid(view, steps: &steps) }
    }

    /// Parses and checks one JSON text; a text that is not JSON is one violation at the root.
    public func validate(json: [UInt8], limit: Int = 10, stepsMax: Int = Limits.validationStepsPerValueMax) -> [SchemaViolation] {
        var tape = JSONTape()
        do {
            try tape.parse(json, depthMax: Limits.jsonDepthMax)
        } catch {
            return [SchemaViolation(path: "", rule: "json", message: error.description)]
        }
        return validate(tape, limit: limit, stepsMax: stepsMax)
    }

    private func isValid(_ view: TapeView, steps: inout Int) -> Bool {
        var run = ValidationRun(tables: tables, tape: view, limit: 0, steps: steps)
        let valid = run.check(0, 0)
        steps = run.steps
        return valid && !run.exhausted
    }

    private func validate(_ view: TapeView, limit: Int, steps: inout Int, of stepsMax: Int) -> [SchemaViolation] {
        var run = ValidationRun(tables: tables, tape: view, limit: limit, steps: steps)
        _ = run.check(0, 0)
        steps = run.steps
        guard !run.exhausted else { return [.overBudget(stepsMax: stepsMax)] }
        return run.violations
    }
}

import MillraceFormat

/// One validation: walks schema nodes and tape entries together. Messages (and the path of
/// the value) are built only when a violation is reported; `limit` 0 means only yes or no.
///
/// Work is bounded twice over. Whether a value passes a subschema is remembered per
/// (subschema, value) for the branches of `anyOf` and `oneOf`, so a schema that recurses
/// through several branches costs what its distinct pairs cost, not 2^depth. And every node
/// visited, enum or property compared and pattern state stepped spends one of `steps`: a
/// check that runs out is over, invalid, and says so (rule `budget`).
struct ValidationRun {
    let tables: Schema.Tables
    let tape: TapeView
    private var limit: Int
    var violations: [SchemaViolation] = []
    /// Where in the record the walk is: tape indices of member names, or item positions.
    private var trail: [Step] = []
    /// Steps left; below zero the run is `exhausted` and every check answers false at once.
    private(set) var steps: Int
    /// (subschema << 32 | tape entry) → whether the value there passes it (quiet checks only).
    private var passed: [UInt64: Bool] = [:]

    enum Step {
        case member(Int)
        case item(Int)
    }

    init(tables: Schema.Tables, tape: TapeView, limit: Int, steps: Int) {
        self.tables = tables
        self.tape = tape
        self.limit = limit
        self.steps = steps
    }

    var exhausted: Bool { steps < 0 }

    private var reporting: Bool { !exhausted && violations.count < limit }


    private var path: String {
        var out = ""
        for step in trail {
            switch step {
            case .member(let key): out += "/" + tape.string(at: key).replacing("~", with: "~0").replacing("/", with: "~1")
            case .item(let position): out += "/\(position)"
            }
        }
        return out
    }

    /// Call only when `reporting` (messages cost; a yes/no run builds none).
    private mutating func report(_ rule: String, _ message: String, member: Int? = nil, name: String? = nil) {
        var where_ = path
        if let member { where_ += "/" + tape.string(at: member).replacing("~", with: "~0").replacing("/", with: "~1") }
        if let name { where_ += "/" + name.replacing("~", with: "~0").replacing("/", with: "~1") }
        violations.append(SchemaViolation(path: where_, rule: rule, message: message))
    }

    private func shown(_ index: Int) -> String {
        let text = tape.text(at: index)
        return text.count > 80 ? String(text.prefix(77)) + "..." : text
    }

    private func kindName(_ index: Int) -> String {
        switch tape[index].kind {
        case .object: "an object"
        case .array: "an array"
        case .string: "a string"
        case .number:
            !tape[index].number.isFinite
                ? "a number beyond the range of a 64-bit float (±1.8e308); send it as a string"
                : tape.isInteger(index) ? "an integer" : "a number"
        case .true, .false: "a boolean"
        case .null: "null"
        }
    }

    private static func typeNames(_ types: Schema.TypeSet) -> String {
        let names = Schema.TypeSet.names.filter { types.contains($0.1) }.map(\.0)
        return names.count == 1 ? "\(names[0] == "integer" || names[0] == "object" || names[0] == "array" ? "an" : "a") \(names[0])" : names.joined(separator: " or ")
    }

    /// Checks the value at tape `index` against node `nodeIndex`; true when valid. Reads the
    /// flat tables (`Schema.Tables`); the node's class only when something is reported or
    /// needs a JSON value (an enum or const that is not a string, a pattern without a table).
    mutating func check(_ nodeIndex: Int, _ index: Int) -> Bool {
        steps &-= 1
        if steps < 0 { return false }
        let node = tables.hot.baseAddress.unsafelyUnwrapped + nodeIndex
        let checks = node.pointee.checks
        if checks.contains(.never) {
            if reporting { report("false", "no value is allowed here (the schema is false)") }
            return false
        }
        let entry = tape[index]
        if checks.contains(.types), !Self.matches(node.pointee.types, entry, isInteger: integerIfAsked(node.pointee.types, entry, index)) {
            if reporting { report("type", "\(shown(index)) is \(kindName(index)), not \(Self.typeNames(node.pointee.types))") }
            return false
        }
        var valid = true
        switch entry.kind {
        case .object: if checks.contains(.object) { valid = checkObject(node, index) }
        case .array: if checks.contains(.items) { valid = checkArray(Int(node.pointee.items), index) }
        case .string: if !checks.isDisjoint(with: .string) { valid = checkString(node, nodeIndex, index) }
        case .number: if !checks.isDisjoint(with: .number) { valid = checkNumber(node, index) }
        case .true, .false, .null: break
        }
        if checks.contains(.enum), !matchesEnum(node, nodeIndex, index) {
            if reporting {
                report("enum", "\(shown(index)) is not one of \(JSONValue.array(tables.nodes[nodeIndex].enumValues ?? []).description.clipped)")
            }
            valid = false
        }
        if checks.contains(.const), !matchesConst(node, nodeIndex, index) {
            if reporting { report("const", "\(shown(index)) is not \((tables.nodes[nodeIndex].constValue ?? .null).description.clipped)") }
            valid = false
        }
        if checks.contains(.refs) {
            for link in node.pointee.refs.range where !check(Int(tables.links[link]), index) { valid = false }
        }
        if checks.contains(.anyOf) { valid = checkAnyOf(node.pointee.anyOf, index) && valid }
        if checks.contains(.oneOf) { valid = checkOneOf(node.pointee.oneOf, index) && valid }
        return valid
    }

    /// Whether a number is an integer, read only when the types ask (it reads the digits).
    @inline(__always) private mutating func integerIfAsked(_ types: Schema.TypeSet, _ entry: JSONTape.Entry, _ index: Int) -> Bool {
        guard entry.kind == .number, types.contains(.integer), !types.contains(.number) else { return false }
        steps &-= Int(entry.end &- entry.start) >> 4
        return tape.isInteger(index)
    }

    /// A string is compared with the enum's strings as bytes; anything else as JSON.
    private mutating func matchesEnum(_ node: UnsafePointer<Schema.Hot>, _ nodeIndex: Int, _ index: Int) -> Bool {
        if tape[index].kind == .string {
            steps &-= node.pointee.enumStrings.range.count
            for string in node.pointee.enumStrings.range where tape.stringEquals(index, tables.strings[string], pool: tables.pool) { return true }
            return false
        }
        let values = tables.nodes[nodeIndex].enumValues ?? []
        // Each comparison walks the value: a large object against a long enum costs both.
        steps &-= values.count * Int(Swift.max(1, tape[index].next &- UInt32(index)))
        if steps < 0 { return false }
        return values.contains { Self.equal(tape, index, $0) }
    }

    private mutating func matchesConst(_ node: UnsafePointer<Schema.Hot>, _ nodeIndex: Int, _ index: Int) -> Bool {
        steps &-= Int(Swift.max(1, tape[index].next &- UInt32(index)))
        if node.pointee.checks.contains(.constString) {
            return tape[index].kind == .string && tape.stringEquals(index, node.pointee.constString, pool: tables.pool)
        }
        return tables.nodes[nodeIndex].constValue.map { Self.equal(tape, index, $0) } ?? true
    }

    @inline(__always) private static func matches(_ types: Schema.TypeSet, _ entry: JSONTape.Entry, isInteger: Bool) -> Bool {
        switch entry.kind {
        case .object: return types.contains(.object)
        case .array: return types.contains(.array)
        case .string: return types.contains(.string)
        case .number:
            // A number past a double's range is neither: it cannot be held or compared.
            guard entry.number.isFinite else { return false }
            return types.contains(.number) || (types.contains(.integer) && isInteger)
        case .true, .false: return types.contains(.boolean)
        case .null: return types.contains(.null)
        }
    }

    private mutating func checkObject(_ node: UnsafePointer<Schema.Hot>, _ index: Int) -> Bool {
        var valid = true
        var present: UInt64 = 0
        var key = index + 1
        let end = Int(tape[index].next)
        let slots = UnsafeBufferPointer(rebasing: tables.slots[node.pointee.properties.range])
        let pool = tables.pool
        let additional = node.pointee.additional
        // Records usually list members in the schema's order: try the property after the last
        // one found before searching them all.
        var expected = 0
        while key < end {
            let valueIndex = key + 1
            var found = -1
            if expected < slots.count, tape.isName(key, slots[expected], pool: pool) {
                found = expected
            } else {
                steps &-= slots.count
                if steps < 0 { return false }
                for candidate in slots.indices where tape.isName(key, slots[candidate], pool: pool) {
                    found = candidate
                    break
                }
            }
            var known = false
            if found >= 0 {
                expected = found + 1
                let slot = slots[found]
                // A name only in `required` is not listed: additionalProperties still applies.
                known = slot.child >= 0
                if slot.bit >= 0 { present |= 1 << UInt64(slot.bit) }
                if slot.child >= 0 {
                    if limit > 0 { trail.append(.member(key)) }
                    if !check(Int(slot.child), valueIndex) { valid = false }
                    if limit > 0 { trail.removeLast() }
                }
            }
            if !known {
                if additional == Schema.Hot.allowsNone {
                    if reporting { report("additionalProperties", "is not allowed (no other properties than those listed)", member: key) }
                    valid = false
                } else if additional >= 0 {
                    if limit > 0 { trail.append(.member(key)) }
                    if !check(Int(additional), valueIndex) { valid = false }
                    if limit > 0 { trail.removeLast() }
                }
            }
            key = tape.after(valueIndex)
            if !valid && !reporting { return false }
        }
        let requiredCount = Int(node.pointee.requiredCount)
        if requiredCount > 0, present.nonzeroBitCount != requiredCount {
            valid = false
            // Which are missing is only worth finding out for a message.
            guard reporting else { return false }
            for slot in slots where reporting && slot.bit >= 0 && present & (1 << UInt64(slot.bit)) == 0 {
                report("required", "is required but missing", name: String(decoding: UnsafeBufferPointer(start: pool + Int(slot.start), count: Int(slot.length)), as: UTF8.self))
            }
        }
        return valid
    }

    private mutating func checkArray(_ items: Int, _ index: Int) -> Bool {
        var valid = true
        var item = index + 1
        var position = 0
        let end = Int(tape[index].next)
        while item < end {
            if limit > 0 { trail.append(.item(position)) }
            if !check(items, item) { valid = false }
            if limit > 0 { trail.removeLast() }
            if !valid && !reporting { return false }
            item = tape.after(item)
            position += 1
        }
        return valid
    }

    private mutating func checkString(_ node: UnsafePointer<Schema.Hot>, _ nodeIndex: Int, _ index: Int) -> Bool {
        let checks = node.pointee.checks
        let entry = tape[index]
        var valid = true
        if checks.contains(.length) {
            if entry.nonASCII || entry.escaped { steps &-= Int(entry.end &- entry.start) >> 4 }
            let length = entry.nonASCII || entry.escaped ? tape.scalarCount(at: index) : Int(entry.end &- entry.start)
            let minimum = node.pointee.minLength
            let maximum = node.pointee.maxLength
            if length < minimum {
                if reporting { report("minLength", "\(shown(index)) is shorter than minLength \(minimum) (\(length) characters)") }
                valid = false
            }
            if length > maximum {
                if reporting { report("maxLength", "\(shown(index)) is longer than maxLength \(maximum) (\(length) characters)") }
                valid = false
            }
        }
        if checks.contains(.pattern) {
            let matched: Bool
            if checks.contains(.fixedPattern) && !entry.nonASCII && !entry.escaped {
                matched = Self.matchesPositions(tape.raw(index), UnsafeBufferPointer(rebasing: tables.positions[node.pointee.pattern.range]))
            } else if let pattern = tables.nodes[nodeIndex].pattern {
                matched =
                    entry.escaped ? pattern.matches(tape.string(at: index).unicodeScalars, steps: &steps) : pattern.matches(utf8: tape.raw(index), steps: &steps)
                if steps < 0 { return false }
            } else {
                matched = true
            }
            if !matched {
                if reporting { report("pattern", "\(shown(index)) does not match pattern \(JSONValue.quote(tables.nodes[nodeIndex].pattern?.source ?? ""))") }
                valid = false
            }
        }
        if checks.contains(.dateTime) {
            if entry.escaped { steps &-= Int(entry.end &- entry.start) >> 4 }
            let ok = entry.escaped ? DateTime.isValid(Array(tape.string(at: index).utf8)[...]) : DateTime.isValid(tape.raw(index))
            if !ok {
                if reporting { report("format", "\(shown(index)) is not a date-time (RFC 3339, e.g. 2026-11-28T06:00:00Z)") }
                valid = false
            }
        }
        return valid
    }

    /// An ASCII string against an identifier-shaped pattern: one byte per position, each in
    /// its position's set.
    @inline(__always) private static func matchesPositions(_ bytes: UnsafeBufferPointer<UInt8>, _ positions: UnsafeBufferPointer<(UInt64, UInt64)>) -> Bool {
        guard bytes.count == positions.count else { return false }
        for (byte, allowed) in zip(bytes, positions) {
            let bit = UInt64(1) << UInt64(byte & 63)
            guard (byte < 64 ? allowed.0 : allowed.1) & bit != 0 else { return false }
        }
        return true
    }

    private mutating func checkNumber(_ node: UnsafePointer<Schema.Hot>, _ index: Int) -> Bool {
        let checks = node.pointee.checks
        let value = tape[index].number
        var valid = true
        if checks.contains(.minimum), !(value >= node.pointee.minimum) {
            if reporting { report("minimum", "\(shown(index)) is less than minimum \(JSONValue.format(node.pointee.minimum))") }
            valid = false
        }
        if checks.contains(.maximum), !(value <= node.pointee.maximum) {
            if reporting { report("maximum", "\(shown(index)) is greater than maximum \(JSONValue.format(node.pointee.maximum))") }
            valid = false
        }
        if checks.contains(.exclusiveMinimum), !(value > node.pointee.exclusiveMinimum) {
            if reporting { report("exclusiveMinimum", "\(shown(index)) is not greater than exclusiveMinimum \(JSONValue.format(node.pointee.exclusiveMinimum))") }
            valid = false
        }
        if checks.contains(.exclusiveMaximum), !(value < node.pointee.exclusiveMaximum) {
            if reporting { report("exclusiveMaximum", "\(shown(index)) is not less than exclusiveMaximum \(JSONValue.format(node.pointee.exclusiveMaximum))") }
            valid = false
        }
        return valid
    }

    /// Tries a branch without messages, once per (branch, value): the answer is remembered.
    /// Branches report once if none (or, for oneOf, not exactly one) matched, with the first
    /// branch's first violation as a hint.
    private mutating func passes(_ nodeIndex: Int, _ index: Int) -> Bool {
        let key = UInt64(nodeIndex) << 32 | UInt64(UInt32(truncatingIfNeeded: index))
        if let known = passed[key] { return known }
        let saved = limit
        limit = 0
        let result = check(nodeIndex, index)
        limit = saved
        if !exhausted { passed[key] = result }
        return result
    }

    private mutating func firstViolation(_ nodeIndex: Int, _ index: Int) -> String {
        let (savedLimit, savedViolations) = (limit, violations)
        (limit, violations) = (1, [])
        _ = check(nodeIndex, index)
        let first = violations.first
        (limit, violations) = (savedLimit, savedViolations)
        // Through nested branches, only the innermost reason: one line, not one per level.
        return first.map { violation in
            let text = violation.description
            let marker = "; the first: "
            guard let last = text.ranges(of: marker).last else { return marker + text }
            return marker + text[last.upperBound...]
        } ?? ""
    }

    private mutating func checkAnyOf(_ span: Schema.Span, _ index: Int) -> Bool {
        for link in span.range where passes(Int(tables.links[link]), index) { return true }
        if reporting {
            report(
                "anyOf", "\(shown(index)) matches none of the \(span.range.count) schemas in anyOf\(firstViolation(Int(tables.links[Int(span.start)]), index))")
        }
        return false
    }

    private mutating func checkOneOf(_ span: Schema.Span, _ index: Int) -> Bool {
        var matched: [Int] = []
        for (position, link) in span.range.enumerated() where passes(Int(tables.links[link]), index) { matched.append(position) }
        if matched.count == 1 { return true }
        if reporting {
            if matched.isEmpty {
                report(
                    "oneOf", "\(shown(index)) matches none of the \(span.range.count) schemas in oneOf\(firstViolation(Int(tables.links[Int(span.start)]), index))")
            } else {
                report("oneOf", "\(shown(index)) matches \(matched.count) schemas in oneOf (\(matched.map(String.init).joined(separator: ", "))); it must match exactly one")
            }
        }
        return false
    }

    /// JSON equality between a tape value and a tree value.
    static func equal(_ tape: TapeView, _ index: Int, _ value: JSONValue) -> Bool {
        let entry = tape[index]
        switch (entry.kind, value) {
        case (.null, .null): return true
        case (.true, .bool(let flag)): return flag
        case (.false, .bool(let flag)): return !flag
        case (.number, .number(let number)): return entry.number == number
        case (.string, .string(let text)): return tape.stringEquals(index, Array(text.utf8))
        case (.array, .array(let items)):
            guard Int(entry.count) == items.count else { return false }
            var member = index + 1
            for item in items {
                guard equal(tape, member, item) else { return false }
                member = tape.after(member)
            }
            return true
        case (.object, .object(let members)):
            guard Int(entry.count) == members.count else { return false }
            // Large objects by name, so a comparison is linear in its members.
            let byName = members.count > 8 ? Dictionary(members, uniquingKeysWith: { first, _ in first }) : nil
            var key = index + 1
            while key < Int(entry.next) {
                let name = tape.string(at: key)
                guard let wanted = byName?[name] ?? members.first(where: { $0.0 == name })?.1, equal(tape, key + 1, wanted) else { return false }
                key = tape.after(key + 1)
            }
            return true
        default: return false
        }
    }
}

extension String {
    fileprivate var clipped: String { count > 80 ? String(prefix(77)) + "..." : self }
}

/// Unicode scalars decoded from well-formed UTF-8 (the scanner checked it).
struct UTF8Scalars: Sequence {
    let bytes: UnsafeBufferPointer<UInt8>

    init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    struct Iterator: IteratorProtocol {
        let bytes: UnsafeBufferPointer<UInt8>
        var position = 0

        mutating func next() -> Unicode.Scalar? {
            guard position < bytes.count else { return nil }
            let lead = UInt32(bytes[position])
            let length = lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4
            var value = length == 1 ? lead : length == 2 ? lead & 0x1F : length == 3 ? lead & 0x0F : lead & 0x07
            for offset in 1..<length where position + offset < bytes.count {
                value = value << 6 | UInt32(bytes[position + offset] & 0x3F)
            }
            position += length
            return Unicode.Scalar(value) ?? "\u{FFFD}"
        }
    }

    func makeIterator() -> Iterator { Iterator(bytes: bytes) }
}

extension SchemaViolation {
    /// A value whose check ran out of steps: invalid, and the message says why.
    public static func overBudget(stepsMax: Int) -> SchemaViolation {
        SchemaViolation(
            path: "", rule: "budget",
            message:
                "checking this value against the schema took more than \(stepsMax) steps (validationStepsPerValueMax) and was stopped: its anyOf, oneOf or $ref branches, enums or patterns cost too much for a value this size; send a smaller value or simplify the schema"
        )
    }
}
