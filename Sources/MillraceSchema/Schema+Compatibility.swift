import MillraceFormat

/// Schema evolution checks, with Confluent Schema Registry's meanings: `backward` — the new
/// version accepts every record an earlier one accepted (consumers on the new version read old
/// data); `forward` — every record the new version accepts, the earlier one accepts too
/// (consumers still on the old version read new data); `full` — both. Plain modes compare with
/// the latest version, `-transitive` modes with every earlier version.
///
/// Both reduce to one question, "is every value valid under A also valid under B?", answered
/// structurally and conservatively: where it cannot be shown (two different patterns, say),
/// the answer is no, with the reason. A registration is refused with every reason found.
extension Schema {
    /// Every reason found why the new schema breaks `mode` against `earlier` (oldest first).
    /// Spends at most `steps` (one per pair of subschemas compared); a check that needs more
    /// is refused (`limitExceeded`), since a registration must not hold anything for long.
    public static func compatibilityProblems(
        new: Schema, earlier: [(version: Int32, schema: Schema)], mode: SchemaCompatibility, steps: inout Int
    ) throws(SchemaError) -> [String] {
        guard mode != .noChecks, let latest = earlier.last else { return [] }
        let compared = mode.isTransitive ? earlier : [latest]
        var problems: [String] = []
        let stepsMax = steps
        for (version, old) in compared {
            if mode.checksBackward {
                var subset = SubsetCheck(narrow: old, narrowName: "version \(version)", wide: new, wideName: "the new version", steps: steps)
                let reasons = subset.run()
                steps = subset.work.steps
                problems += reasons.map { "backward (records written with version \(version) must still be accepted): \($0)" }
            }
            if mode.checksForward {
                var subset = SubsetCheck(narrow: new, narrowName: "the new version", wide: old, wideName: "version \(version)", steps: steps)
                let reasons = subset.run()
                steps = subset.work.steps
                problems += reasons.map { "forward (readers of version \(version) must accept new records): \($0)" }
            }
            if steps < 0 { throw Self.compatibilityTooCostly(stepsMax, mode) }
        }
        return problems
    }

    public static func compatibilityProblems(new: Schema, earlier: [(version: Int32, schema: Schema)], mode: SchemaCompatibility) throws(SchemaError)
        -> [String]
    {
        var steps = Limits.schemaCompatibilityStepsMax
        return try compatibilityProblems(new: new, earlier: earlier, mode: mode, steps: &steps)
    }

    public static func compatibilityTooCostly(_ stepsMax: Int, _ mode: SchemaCompatibility) -> SchemaError {
        SchemaError(
            .limitExceeded,
            "checking \(mode) compatibility took more than \(stepsMax) steps (schemaCompatibilityStepsMax) and was stopped: the schemas' $ref, anyOf and oneOf nest too deeply to compare\(mode.isTransitive ? ", or there are too many earlier versions to compare with (a non-transitive mode compares with the latest only)" : ""); simplify the schema, or set the topic's compatibility to none for this change"
        )
    }

    /// Whether every value valid under `self` is valid under `other`, as far as can be shown.
    public func accepts(everythingAcceptedBy other: Schema) throws(SchemaError) -> [String] {
        var subset = SubsetCheck(narrow: other, narrowName: "the first", wide: self, wideName: "the second", steps: Limits.schemaCompatibilityStepsMax)
        let reasons = subset.run()
        if subset.work.steps < 0 { throw Self.compatibilityTooCostly(Limits.schemaCompatibilityStepsMax, .backward) }
        return reasons
    }
}

/// "Every value valid under `narrow` is valid under `wide`", checked node by node.
///
/// Answers are remembered per pair of nodes (in `work`, shared by every probe copied from
/// this check), so nested `$ref`/`anyOf`/`oneOf` cost what their distinct pairs cost rather
/// than every path through them. A pair under comparison further up is assumed to hold
/// (coinduction); an answer is remembered only if it leaned on no such assumption but its
/// own, and a "no" always (assumptions only ever turn answers into yes).
struct SubsetCheck {
    let narrow: Schema
    let narrowName: String
    let wide: Schema
    let wideName: String
    private var reasons: [String] = []
    /// Pairs being compared further up, with their depth.
    private var inProgress: [Pair: Int] = [:]
    let work: Work

    struct Pair: Hashable {
        let narrow: Int
        let wide: Int
    }

    /// What every copy of one check shares: the steps left, and the answers known.
    final class Work {
        var steps: Int
        var answers: [Pair: Bool] = [:]
        /// Pairs already compared with reasons reported (reported once, where first met).
        var reported: [Pair: Bool] = [:]
        /// The shallowest assumption the current comparison leaned on.
        var shallowestAssumption = Int.max
        /// Each node's `oneOf` document digest, per side (0 narrow, 1 wide).
        private var oneOfDigests: [Int: UInt64] = [:]

        init(steps: Int) { self.steps = steps }

        func oneOfDigest(_ schema: Schema, _ node: Int, side: Int) -> UInt64 {
            let key = node << 1 | side
            if let known = oneOfDigests[key] { return known }
            let digest = schema.document(at: node)?["oneOf"]?.canonicalDigest ?? 0
            oneOfDigests[key] = digest
            return digest
        }
    }

    init(narrow: Schema, narrowName: String, wide: Schema, wideName: String, steps: Int) {
        self.narrow = narrow
        self.narrowName = narrowName
        self.wide = wide
        self.wideName = wideName
        self.work = Work(steps: steps)
    }

    mutating func run() -> [String] {
        _ = check(0, 0, path: "", report: true)
        return reasons
    }

    private mutating func fail(_ report: Bool, _ path: String, _ why: String) -> Bool {
        if report { reasons.append("\(path.isEmpty ? "/" : path): \(why)") }
        return false
    }

    /// True when shown; with `report`, every reason it fails is recorded.
    mutating func check(_ a: Int, _ b: Int, path: String, report: Bool) -> Bool {
        let pair = Pair(narrow: a, wide: b)
        if let depth = inProgress[pair] {
            work.shallowestAssumption = min(work.shallowestAssumption, depth)
            return true
        }
        if let known = (report ? work.reported : work.answers)[pair] { return known }
        work.steps -= 1
        guard work.steps >= 0 else { return false }
        let depth = inProgress.count
        inProgress[pair] = depth
        let outer = work.shallowestAssumption
        work.shallowestAssumption = Int.max
        let result = compare(a, b, path: path, report: report)
        inProgress[pair] = nil
        if work.steps >= 0 && (!result || work.shallowestAssumption >= depth) {
            if report { work.reported[pair] = result } else { work.answers[pair] = result }
        }
        work.shallowestAssumption = min(outer, work.shallowestAssumption)
        return result
    }

    private mutating func compare(_ a: Int, _ b: Int, path: String, report: Bool) -> Bool {
        let left = narrow.nodes[a]
        let right = wide.nodes[b]
        if left.never { return true }
        if right.never { return fail(report, path, "\(wideName) accepts nothing here (false), \(narrowName) does") }
        // What `left` adds through $ref, anyOf or oneOf narrows it: showing any one part inside
        // `right` is enough; for anyOf/oneOf on the left, every branch must be inside.
        if !left.refs.isEmpty || !left.anyOf.isEmpty || !left.oneOf.isEmpty {
            var quiet = self
            if quiet.checkOwn(left, right, a, b, path: path, report: false) && quiet.reasons.isEmpty { return true }
            for target in left.refs {
                var probe = self
                if probe.check(target, b, path: path, report: false) { return true }
            }
            for branches in [left.anyOf, left.oneOf] where !branches.isEmpty {
                var probe = self
                if branches.allSatisfy({ probe.check($0, b, path: path, report: false) }) { return true }
            }
            // A node that is only a `$ref` (a document's root, often) or only branches: the
            // reasons are in what it refers to, not in its own (empty) constraints.
            if report && narrow.constrainsOnlyThrough(applicatorsOf: a) {
                if left.refs.count == 1 && left.anyOf.isEmpty && left.oneOf.isEmpty { return check(left.refs[0], b, path: path, report: true) }
                if left.refs.isEmpty && (left.anyOf.isEmpty != left.oneOf.isEmpty) {
                    for branch in left.anyOf + left.oneOf {
                        var probe = self
                        if !probe.check(branch, b, path: path, report: false) { _ = check(branch, b, path: path, report: true) }
                    }
                    return false
                }
            }
        }
        return checkOwn(left, right, a, b, path: path, report: report)
    }

    private mutating func checkOwn(_ left: Schema.Node, _ right: Schema.Node, _ a: Int, _ b: Int, path: String, report: Bool) -> Bool {
        var ok = true
        // Constraints the wide side adds through $ref, anyOf, oneOf.
        for target in right.refs where !check(a, target, path: path, report: report) { ok = false }
        if !right.anyOf.isEmpty {
            var probe = self
            let inside = right.anyOf.contains { probe.check(a, $0, path: path, report: false) }
            let branchwise = !left.anyOf.isEmpty && left.anyOf.allSatisfy { branch in right.anyOf.contains { probe.check(branch, $0, path: path, report: false) } }
            if !inside && !branchwise { ok = fail(report, path + "/anyOf", "\(narrowName) accepts values that match none of the anyOf branches of \(wideName)") }
        }
        if !right.oneOf.isEmpty {
            // Compared by digest, each side's worked out once per node: a pair costs one step.
            let same = work.oneOfDigest(narrow, a, side: 0) == work.oneOfDigest(wide, b, side: 1)
            if !same { ok = fail(report, path + "/oneOf", "oneOf differs between \(narrowName) and \(wideName) (oneOf can only be shown unchanged)") }
        }
        ok = checkTypes(left, right, path, report) && ok
        ok = checkValues(left, right, path, report) && ok
        ok = checkNumbers(left, right, path, report) && ok
        ok = checkStrings(left, right, path, report) && ok
        ok = checkObjects(left, right, path, report) && ok
        if let wideItems = right.items {
            if let narrowItems = left.items {
                ok = check(narrowItems, wideItems, path: path + "/items", report: report) && ok
            } else if !wide.isTrivial(wideItems) && mayBe(left, .array) {
                ok = fail(report, path + "/items", "\(wideName) constrains array items, \(narrowName) allows any items")
            }
        }
        return ok
    }

    private func mayBe(_ node: Schema.Node, _ type: Schema.TypeSet) -> Bool {
        guard let types = node.types else { return true }
        if type == .number { return types.contains(.number) || types.contains(.integer) }
        return types.contains(type)
    }

    private mutating func checkTypes(_ left: Schema.Node, _ right: Schema.Node, _ path: String, _ report: Bool) -> Bool {
        guard let wideTypes = right.types else { return true }
        // enum/const on the left narrow the types to those of their values.
        if let values = left.enumValues ?? left.constValue.map({ [$0] }) {
            let outside = values.filter { !Self.typeAccepts(wideTypes, $0) }
            if outside.isEmpty { return true }
            return fail(report, path + "/type", "\(narrowName) allows \(outside.map(\.description).joined(separator: ", ")), whose type \(wideName) does not allow")
        }
        let narrowTypes = left.types ?? Schema.TypeSet(rawValue: 0x7F)
        var missing: [String] = []
        for (name, type) in Schema.TypeSet.names where narrowTypes.contains(type) {
            if wideTypes.contains(type) || (type == .integer && wideTypes.contains(.number)) { continue }
            missing.append(name)
        }
        guard !missing.isEmpty else { return true }
        return fail(report, path + "/type", "type \(missing.joined(separator: ", ")) is allowed by \(narrowName) but not by \(wideName)")
    }

    private static func typeAccepts(_ types: Schema.TypeSet, _ value: JSONValue) -> Bool {
        switch value {
        case .null: types.contains(.null)
        case .bool: types.contains(.boolean)
        case .number(let number): types.contains(.number) || (types.contains(.integer) && number == number.rounded())
        case .string: types.contains(.string)
        case .array: types.contains(.array)
        case .object: types.contains(.object)
        }
    }

    private mutating func checkValues(_ left: Schema.Node, _ right: Schema.Node, _ path: String, _ report: Bool) -> Bool {
        var ok = true
        let narrowValues = left.enumValues ?? left.constValue.map { [$0] }
        if let wideValues = right.enumValues {
            if let narrowValues {
                // By digest first: n + m, not n x m comparisons of whole values.
                work.steps -= narrowValues.count + wideValues.count
                var wideByDigest: [UInt64: [JSONValue]] = [:]
                for value in wideValues { wideByDigest[value.canonicalDigest, default: []].append(value) }
                let removed = narrowValues.filter { value in !(wideByDigest[value.canonicalDigest] ?? []).contains(value) }
                if !removed.isEmpty {
                    ok = fail(report, path + "/enum", "\(removed.map(\.description).joined(separator: ", ")) allowed by \(narrowName) but not by \(wideName)")
                }
            } else {
                ok = fail(report, path + "/enum", "\(wideName) limits values to \(JSONValue.array(wideValues)), \(narrowName) does not")
            }
        }
        if let constant = right.constValue {
            if let narrowValues, narrowValues.allSatisfy({ $0 == constant }) { return ok }
            ok = fail(report, path + "/const", "\(wideName) requires the value \(constant), \(narrowName) allows others")
        }
        return ok
    }

    /// A lower bound on the left (inclusive or not) at least as tight as the right's.
    private mutating func checkNumbers(_ left: Schema.Node, _ right: Schema.Node, _ path: String, _ report: Bool) -> Bool {
        guard mayBe(left, .number) else { return true }
        var ok = true
        let narrowLow = Self.bound(left.minimum, left.exclusiveMinimum, lower: true)
        let narrowHigh = Self.bound(left.maximum, left.exclusiveMaximum, lower: false)
        if let wideMinimum = right.minimum, !Self.atLeast(narrowLow, wideMinimum, exclusive: false) {
            ok = fail(report, path + "/minimum", "\(wideName) has minimum \(JSONValue.format(wideMinimum)); \(narrowName) allows lower values (\(Self.describe(narrowLow, "minimum")))")
        }
        if let wideBound = right.exclusiveMinimum, !Self.atLeast(narrowLow, wideBound, exclusive: true) {
            ok = fail(report, path + "/exclusiveMinimum", "\(wideName) has exclusiveMinimum \(JSONValue.format(wideBound)); \(narrowName) allows values at or below it (\(Self.describe(narrowLow, "minimum")))")
        }
        if let wideMaximum = right.maximum, !Self.atMost(narrowHigh, wideMaximum, exclusive: false) {
            ok = fail(report, path + "/maximum", "\(wideName) has maximum \(JSONValue.format(wideMaximum)); \(narrowName) allows higher values (\(Self.describe(narrowHigh, "maximum")))")
        }
        if let wideBound = right.exclusiveMaximum, !Self.atMost(narrowHigh, wideBound, exclusive: true) {
            ok = fail(report, path + "/exclusiveMaximum", "\(wideName) has exclusiveMaximum \(JSONValue.format(wideBound)); \(narrowName) allows values at or above it (\(Self.describe(narrowHigh, "maximum")))")
        }
        return ok
    }

    private static func bound(_ inclusive: Double?, _ exclusive: Double?, lower: Bool) -> (value: Double, exclusive: Bool)? {
        switch (inclusive, exclusive) {
        case (nil, nil): return nil
        case (let value?, nil): return (value, false)
        case (nil, let value?): return (value, true)
        case (let a?, let b?):
            if lower { return b >= a ? (b, true) : (a, false) }
            return b <= a ? (b, true) : (a, false)
        }
    }

    private static func atLeast(_ bound: (value: Double, exclusive: Bool)?, _ wanted: Double, exclusive: Bool) -> Bool {
        guard let bound else { return false }
        if exclusive { return bound.value > wanted || (bound.value == wanted && bound.exclusive) }
        return bound.value >= wanted
    }

    private static func atMost(_ bound: (value: Double, exclusive: Bool)?, _ wanted: Double, exclusive: Bool) -> Bool {
        guard let bound else { return false }
        if exclusive { return bound.value < wanted || (bound.value == wanted && bound.exclusive) }
        return bound.value <= wanted
    }

    private static func describe(_ bound: (value: Double, exclusive: Bool)?, _ name: String) -> String {
        guard let bound else { return "no \(name)" }
        return "\(bound.exclusive ? "exclusive" + name.prefix(1).uppercased() + name.dropFirst() : name) \(JSONValue.format(bound.value))"
    }

    private mutating func checkStrings(_ left: Schema.Node, _ right: Schema.Node, _ path: String, _ report: Bool) -> Bool {
        guard mayBe(left, .string) else { return true }
        var ok = true
        if let wideMinimum = right.minLength, (left.minLength ?? 0) < wideMinimum {
            ok = fail(report, path + "/minLength", "\(wideName) has minLength \(wideMinimum); \(narrowName) allows shorter strings (\(left.minLength.map { "minLength \($0)" } ?? "no minLength"))")
        }
        if let wideMaximum = right.maxLength, (left.maxLength ?? Int.max) > wideMaximum {
            ok = fail(report, path + "/maxLength", "\(wideName) has maxLength \(wideMaximum); \(narrowName) allows longer strings (\(left.maxLength.map { "maxLength \($0)" } ?? "no maxLength"))")
        }
        if let widePattern = right.pattern, left.pattern?.source != widePattern.source {
            ok = fail(report, path + "/pattern", "\(wideName) requires pattern \(JSONValue.quote(widePattern.source)); \(narrowName) \(left.pattern.map { "has pattern \(JSONValue.quote($0.source))" } ?? "has none")")
        }
        if right.dateTime && !left.dateTime {
            ok = fail(report, path + "/format", "\(wideName) requires format date-time, \(narrowName) does not")
        }
        return ok
    }

    private mutating func checkObjects(_ left: Schema.Node, _ right: Schema.Node, _ path: String, _ report: Bool) -> Bool {
        guard mayBe(left, .object) else { return true }
        var ok = true
        let narrowRequired = Set(left.properties.filter { $0.requiredBit != nil }.map(\.name))
        let narrowChildren = Dictionary(left.properties.compactMap { property in property.node.map { (property.name, $0) } }, uniquingKeysWith: { first, _ in first })
        work.steps -= left.properties.count + right.properties.count
        for property in right.properties where property.requiredBit != nil && !narrowRequired.contains(property.name) {
            ok = fail(report, path + "/required", "\(wideName) requires \(JSONValue.quote(property.name)), \(narrowName) does not")
        }
        for property in right.properties {
            guard let wideChild = property.node else { continue }
            let here = path + "/properties/" + Self.escape(property.name)
            if let narrowChild = narrowChildren[property.name] {
                ok = check(narrowChild, wideChild, path: here, report: report) && ok
                continue
            }
            switch left.additional {
            case .forbidden: continue  // the narrow side never has this member
            case .allowed:
                if !wide.isTrivial(wideChild) {
                    ok = fail(report, here, "\(wideName) constrains \(JSONValue.quote(property.name)), which \(narrowName) allows with any value (it does not list it and allows additional properties)")
                }
            case .schema(let narrowAdditional):
                ok = check(narrowAdditional, wideChild, path: here, report: report) && ok
            }
        }
        // Members the narrow side allows that the wide side does not list.
        let wideNames = Set(right.properties.filter { $0.node != nil }.map(\.name))
        for property in left.properties where property.node != nil && !wideNames.contains(property.name) {
            let here = path + "/properties/" + Self.escape(property.name)
            switch right.additional {
            case .allowed: continue
            case .forbidden:
                ok = fail(report, here, "\(narrowName) allows \(JSONValue.quote(property.name)), \(wideName) does not (additionalProperties is false)")
            case .schema(let wideAdditional):
                if let narrowChild = property.node { ok = check(narrowChild, wideAdditional, path: here, report: report) && ok }
            }
        }
        switch (left.additional, right.additional) {
        case (_, .allowed), (.forbidden, _): break
        case (.allowed, .forbidden):
            ok = fail(report, path + "/additionalProperties", "\(wideName) allows no other properties, \(narrowName) allows any")
        case (.allowed, .schema(let wideAdditional)):
            if !wide.isTrivial(wideAdditional) {
                ok = fail(report, path + "/additionalProperties", "\(wideName) constrains other properties, \(narrowName) allows any")
            }
        case (.schema, .forbidden):
            ok = fail(report, path + "/additionalProperties", "\(wideName) allows no other properties, \(narrowName) allows some")
        case (.schema(let narrowAdditional), .schema(let wideAdditional)):
            ok = check(narrowAdditional, wideAdditional, path: path + "/additionalProperties", report: report) && ok
        }
        return ok
    }

    private static func escape(_ name: String) -> String { name.replacing("~", with: "~0").replacing("/", with: "~1") }
}

extension Schema {
    /// A node that accepts everything (`{}` or `true`, with annotations only).
    func isTrivial(_ index: Int) -> Bool {
        let node = nodes[index]
        return constrainsOnlyThrough(applicatorsOf: index) && node.refs.isEmpty && node.anyOf.isEmpty && node.oneOf.isEmpty
    }

    /// A node whose only constraints are its `$ref`, `anyOf` and `oneOf`.
    func constrainsOnlyThrough(applicatorsOf index: Int) -> Bool {
        let node = nodes[index]
        return !node.never && node.types == nil && node.properties.isEmpty && Self.isAllowed(node.additional) && node.items == nil
            && node.enumValues == nil && node.constValue == nil && node.minimum == nil && node.maximum == nil && node.exclusiveMinimum == nil
            && node.exclusiveMaximum == nil && node.minLength == nil && node.maxLength == nil && node.pattern == nil && !node.dateTime
    }

    private static func isAllowed(_ additional: Additional) -> Bool {
        if case .allowed = additional { return true }
        return false
    }

    /// The document of the node at `index` (for comparing keywords verbatim).
    func document(at index: Int) -> JSONValue? {
        var value = document
        for token in locations[index].split(separator: "/", omittingEmptySubsequences: true) {
            let name = String(token.replacing("~1", with: "/").replacing("~0", with: "~"))
            switch value {
            case .object: guard let next = value[name] else { return nil }; value = next
            case .array(let items): guard let position = Int(name), items.indices.contains(position) else { return nil }; value = items[position]
            default: return nil
            }
        }
        return value
    }
}
