/// A topic's key index: which values of each record are indexed so that a trace finds every
/// record holding a value (a lot, a serial, an order) across topics, and which pairs of
/// fields link a parent to a child for genealogy walks.
///
/// Each indexed value has a slot: 0 is the record key, 1...8 the JSON pointers in order, and
/// link `n` (from 0) indexes its parent side as slot 16 + 2n and its child side as 17 + 2n.
public struct IndexPolicy: Sendable, Equatable {
    public var recordKey: Bool
    /// JSON pointers; a `*` token stands for every element of an array (`/components/*/lot`).
    public var fields: [String]
    public var links: [IndexLink]

    public init(recordKey: Bool = false, fields: [String] = [], links: [IndexLink] = []) {
        self.recordKey = recordKey
        self.fields = fields
        self.links = links
    }

    public var isEmpty: Bool { !recordKey && fields.isEmpty && links.isEmpty }

    public static let recordKeySlot: UInt8 = 0
    public static func fieldSlot(_ field: Int) -> UInt8 { UInt8(1 + field) }
    public static func parentSlot(_ link: Int) -> UInt8 { UInt8(16 + 2 * link) }
    public static func childSlot(_ link: Int) -> UInt8 { UInt8(17 + 2 * link) }

    /// Every pointer indexed, with its slot (fields, then each link's parent and child).
    public var pointers: [(slot: UInt8, pointer: String)] {
        fields.enumerated().map { (Self.fieldSlot($0.offset), $0.element) }
            + links.enumerated().flatMap { [(Self.parentSlot($0.offset), $0.element.parent), (Self.childSlot($0.offset), $0.element.child)] }
    }

    /// What a slot holds, as shown to people: `key`, a pointer, or `/parent:/child` side.
    public func describe(slot: UInt8) -> String {
        if slot == Self.recordKeySlot { return "key" }
        if slot >= 1, Int(slot) - 1 < fields.count { return fields[Int(slot) - 1] }
        let link = (Int(slot) - 16) / 2
        guard slot >= 16, link < links.count else { return "slot \(slot)" }
        return slot % 2 == 0 ? links[link].parent : links[link].child
    }

    public func validate() throws {
        guard fields.count <= Limits.indexFieldsMax else {
            throw MillraceError(.invalidConfig, "\(fields.count) indexed fields; a topic indexes at most \(Limits.indexFieldsMax)")
        }
        guard links.count <= Limits.indexLinksMax else {
            throw MillraceError(.invalidConfig, "\(links.count) links; a topic declares at most \(Limits.indexLinksMax)")
        }
        for pointer in fields + links.flatMap({ [$0.parent, $0.child] }) { try Self.check(pointer) }
        guard Set(fields).count == fields.count else { throw MillraceError(.invalidConfig, "a field is indexed twice: \(fields)") }
    }

    /// A pointer must start with `/` and fit `Limits.dedupKeySpecBytesMax`.
    static func check(_ pointer: String) throws {
        guard pointer.hasPrefix("/") else {
            throw MillraceError(.invalidConfig, "index field \"\(pointer.prefix(40))\" must be a JSON pointer starting with \"/\" (e.g. /lot)")
        }
        guard pointer.utf8.count <= Limits.dedupKeySpecBytesMax else {
            throw MillraceError(.invalidConfig, "index field \"\(pointer.prefix(40))...\" is longer than \(Limits.dedupKeySpecBytesMax) bytes")
        }
    }
}

/// A genealogy link: a record whose `parent` field holds P and whose `child` field holds C
/// says C was consumed into P — P, a lot or serial, was built from C, a component or material
/// lot (`/parent_lot:/child_lot`). Where-used walks from C to P; where-from from P to C.
public struct IndexLink: Sendable, Equatable, CustomStringConvertible {
    public var parent: String
    public var child: String

    public init(parent: String, child: String) {
        self.parent = parent
        self.child = child
    }

    /// `/parentLot:/childLot` — safe unquoted in a shell, where `->` is a redirect — or the
    /// older `/parentLot->/childLot`. The colon form splits where the child pointer starts
    /// (`:/`), so it must occur once.
    public init(parsing text: String) throws {
        var sides = text.split(separator: "->", omittingEmptySubsequences: false).map(String.init)
        if sides.count == 1 {
            let starts = text.ranges(of: ":/")
            sides = starts.count == 1 ? [String(text[..<starts[0].lowerBound]), String(text[text.index(after: starts[0].lowerBound)...])] : []
        }
        guard sides.count == 2 else {
            throw MillraceError(
                .invalidConfig,
                "link \"\(text.prefix(60))\" must be PARENT:CHILD, two JSON pointers (e.g. /parent_lot:/child_lot; quote 'PARENT->CHILD' if a pointer holds \":/\")")
        }
        parent = sides[0].trimmingSpaces
        child = sides[1].trimmingSpaces
        try IndexPolicy.check(parent)
        try IndexPolicy.check(child)
    }

    public var description: String { "\(parent):\(child)" }
}

extension String {
    fileprivate var trimmingSpaces: String {
        String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}

/// An indexed value of one key, as the lane computes it: which record of its batch, which
/// slot of the topic's index policy, and the value's hash.
public struct IndexKey: Sendable, Equatable {
    public var record: Int32
    public var slot: UInt8
    public var hash: DedupHash
    /// Where the record starts in its batch (`RecordView.position`), so a trace reads it
    /// without walking the batch; `IndexKey.unknownPosition` when not known.
    public var position: UInt32

    public static let unknownPosition = UInt32.max

    public init(record: Int32, slot: UInt8, hash: DedupHash, position: UInt32 = IndexKey.unknownPosition) {
        self.record = record
        self.slot = slot
        self.hash = hash
        self.position = position
    }
}
