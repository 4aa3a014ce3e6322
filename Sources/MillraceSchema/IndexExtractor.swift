import MillraceFormat

/// A topic's index policy, compiled: the values of one record it indexes, as `IndexKey`s.
/// The produce path calls it with the parse its schema check made (one parse per record);
/// storage calls it to index a partition's newest records again after a restart.
public struct IndexExtractor: Sendable {
    public let policy: IndexPolicy
    private let pointers: [(slot: UInt8, pointer: JSONPointer)]

    public init(_ policy: IndexPolicy) throws {
        self.policy = policy
        pointers = try policy.pointers.map { ($0.slot, try JSONPointer(stored: $0.pointer)) }
    }

    /// Appends the record's indexed values to `keys`: its key (if the policy indexes it and it
    /// is at most `Limits.dedupKeyBytesMax` bytes), then each pointer's values, at most
    /// `Limits.indexValuesPerRecordMax` in all. `parsed` says `tape` already holds the value
    /// (a schema check parsed it); otherwise it is parsed here when a pointer needs it, and a
    /// value that is not JSON gives no field values. Returns whether `tape` now holds it.
    @discardableResult
    public func append(_ view: RecordView, record: Int32, tape: inout JSONTape, parsed: Bool, to keys: inout [IndexKey]) -> Bool {
        let position = view.position >= 0 ? UInt32(clamping: view.position) : IndexKey.unknownPosition
        if policy.recordKey, let key = view.key, key.count <= Limits.dedupKeyBytesMax {
            keys.append(IndexKey(record: record, slot: IndexPolicy.recordKeySlot, hash: DedupHash(key), position: position))
        }
        guard !pointers.isEmpty, let value = view.value else { return parsed }
        let text = value.assumingMemoryBound(to: UInt8.self)
        var indexed = parsed
        if !indexed { indexed = (try? tape.index(text, depthMax: Limits.jsonDepthMax)) != nil }
        guard indexed else { return false }
        var room = Limits.indexValuesPerRecordMax
        for (slot, pointer) in pointers where room > 0 {
            room -= pointer.appendIndexKeys(in: tape, text: text, limit: room, record: record, slot: slot, position: position, to: &keys)
        }
        return true
    }
}
