import MillraceFormat

/// Key layouts. Every integer is big-endian so LMDB's byte order is numeric order.
enum Keys {
    /// A partition log key: the batch's base offset.
    @inline(__always)
    static func withOffsetKey<T>(_ offset: Int64, _ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        try withUnsafeBytes(of: UInt64(bitPattern: offset).bigEndian, body)
    }

    static func offset(from key: UnsafeRawBufferPointer) -> Int64 {
        precondition(key.count == 8, "log keys are 8 bytes")
        return Int64(bitPattern: UInt64(bigEndian: key.loadUnaligned(as: UInt64.self)))
    }

    /// (topic id, partition): the key of a partition's state, and the prefix of its time index.
    static func partition(_ topicID: UInt32, _ partition: Int32) -> [UInt8] {
        var writer = ByteWriter(capacity: 16)
        writer.writeInteger(topicID)
        writer.writeInteger(partition)
        return writer.bytes
    }

    /// (owner, tag, id): the keys of the dedup and index databases, where an owner (a topic id,
    /// or 0) keeps run headers and counters beside one another, told apart by the tag.
    static func tagged(_ owner: UInt32, _ tag: UInt8, _ id: some FixedWidthInteger) -> [UInt8] {
        var writer = ByteWriter(capacity: 5 + id.bitWidth / 8)
        writer.writeInteger(owner)
        writer.writeInteger(tag)
        writer.writeInteger(id)
        return writer.bytes
    }

    static func topicPrefix(_ topicID: UInt32) -> [UInt8] {
        var writer = ByteWriter(capacity: 4)
        writer.writeInteger(topicID)
        return writer.bytes
    }

    /// A timestamp mapped so that byte order is signed numeric order.
    static func orderedTimestamp(_ timestamp: Int64) -> UInt64 {
        UInt64(bitPattern: timestamp) ^ (1 << 63)
    }

    static func timestamp(fromOrdered ordered: UInt64) -> Int64 {
        Int64(bitPattern: ordered ^ (1 << 63))
    }

    /// Time index: (topic id, partition, timestamp) → base offset of the batch where the
    /// partition's highest timestamp first reached that value.
    static func timeIndex(_ topicID: UInt32, _ partition: Int32, _ timestamp: Int64) -> [UInt8] {
        var writer = ByteWriter(capacity: 16)
        writer.writeInteger(topicID)
        writer.writeInteger(partition)
        writer.writeInteger(orderedTimestamp(timestamp))
        return writer.bytes
    }

    /// Consumer offsets: (group, topic, partition), strings length-prefixed.
    static func groupPrefix(_ group: String) -> [UInt8] {
        var writer = ByteWriter(capacity: group.utf8.count + 2)
        writer.writeInteger(UInt16(group.utf8.count))
        writer.writeBytes(group.utf8)
        return writer.bytes
    }

    static func committedOffset(group: String, topic: String, partition: Int32) -> [UInt8] {
        var writer = ByteWriter(capacity: group.utf8.count + topic.utf8.count + 8)
        writer.writeBytes(groupPrefix(group))
        writer.writeInteger(UInt16(topic.utf8.count))
        writer.writeBytes(topic.utf8)
        writer.writeInteger(partition)
        return writer.bytes
    }

    static func parseCommittedOffset(_ key: UnsafeRawBufferPointer) throws -> (group: String, topic: String, partition: Int32) {
        var reader = ByteReader(key)
        let groupLength: UInt16 = try reader.readInteger("group length")
        let group = String(decoding: try reader.readBytes(Int(groupLength), "group"), as: UTF8.self)
        let topicLength: UInt16 = try reader.readInteger("topic length")
        let topic = String(decoding: try reader.readBytes(Int(topicLength), "topic"), as: UTF8.self)
        let partition: Int32 = try reader.readInteger("partition")
        return (group, topic, partition)
    }

    static func hasPrefix(_ key: UnsafeRawBufferPointer, _ prefix: [UInt8]) -> Bool {
        key.count >= prefix.count && prefix.withUnsafeBytes { memcmpEqual(key.baseAddress!, $0.baseAddress!, prefix.count) }
    }

    private static func memcmpEqual(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ count: Int) -> Bool {
        for index in 0..<count where a.load(fromByteOffset: index, as: UInt8.self) != b.load(fromByteOffset: index, as: UInt8.self) {
            return false
        }
        return true
    }

    /// An idempotent producer's record: its id. Its partitions' states follow it in key
    /// order (`producerPartition`), so expiry deletes one run of keys.
    static func producer(_ producerId: Int64) -> [UInt8] {
        var writer = ByteWriter(capacity: 8)
        writer.writeInteger(producerId)
        return writer.bytes
    }

    static func producerPartition(_ producerId: Int64, _ topicID: UInt32, _ partition: Int32) -> [UInt8] {
        var writer = ByteWriter(capacity: 16)
        writer.writeInteger(producerId)
        writer.writeInteger(topicID)
        writer.writeInteger(partition)
        return writer.bytes
    }

    /// The named database holding one partition's log.
    static func logDatabaseName(_ topicID: UInt32, _ partition: Int32) -> String { "log/\(topicID)/\(partition)" }
}
