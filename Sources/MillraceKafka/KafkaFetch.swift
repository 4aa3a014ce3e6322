import MillraceFormat
import MillraceWire
import NIOCore

/// Fetch (key 1), versions 4...11: RecordBatch v2 with the last stable offset (v4) to the last
/// before flexible versions. v5 adds log start offsets, v7 fetch sessions (KIP-227; Millrace
/// answers session id 0, "no session", so clients send full fetches), v9 leader epochs, v11 the
/// rack id and preferred read replica.
public enum KafkaFetch {
    public static let versions: ClosedRange<Int16> = 4...11

    public struct PartitionQuery: Equatable, Sendable {
        public var index: Int32
        public var currentLeaderEpoch: Int32
        public var fetchOffset: Int64
        public var logStartOffset: Int64
        public var maxBytes: Int32

        public init(index: Int32, currentLeaderEpoch: Int32 = -1, fetchOffset: Int64, logStartOffset: Int64 = -1, maxBytes: Int32) {
            self.index = index
            self.currentLeaderEpoch = currentLeaderEpoch
            self.fetchOffset = fetchOffset
            self.logStartOffset = logStartOffset
            self.maxBytes = maxBytes
        }
    }

    public struct Request: Equatable, Sendable {
        public var replicaID: Int32
        public var maxWaitMs: Int32
        public var minBytes: Int32
        public var maxBytes: Int32
        public var isolationLevel: Int8
        public var sessionID: Int32
        public var sessionEpoch: Int32
        public var topics: [KafkaTopic<PartitionQuery>]
        public var forgottenTopics: [KafkaTopic<Int32>]
        public var rackID: String

        public init(
            replicaID: Int32 = -1, maxWaitMs: Int32, minBytes: Int32, maxBytes: Int32, isolationLevel: Int8 = 0, sessionID: Int32 = 0, sessionEpoch: Int32 = -1,
            topics: [KafkaTopic<PartitionQuery>], forgottenTopics: [KafkaTopic<Int32>] = [], rackID: String = ""
        ) {
            self.replicaID = replicaID
            self.maxWaitMs = maxWaitMs
            self.minBytes = minBytes
            self.maxBytes = maxBytes
            self.isolationLevel = isolationLevel
            self.sessionID = sessionID
            self.sessionEpoch = sessionEpoch
            self.topics = topics
            self.forgottenTopics = forgottenTopics
            self.rackID = rackID
        }

        public init(from buffer: inout ByteBuffer, version: Int16) throws {
            replicaID = try buffer.readMillraceInteger("replica id")
            maxWaitMs = try buffer.readMillraceInteger("max wait")
            minBytes = try buffer.readMillraceInteger("min bytes")
            maxBytes = try buffer.readMillraceInteger("max bytes")
            isolationLevel = try buffer.readMillraceInteger("isolation level")
            sessionID = version >= 7 ? try buffer.readMillraceInteger("session id") : 0
            sessionEpoch = version >= 7 ? try buffer.readMillraceInteger("session epoch") : -1
            let queryBytes = version >= 9 ? 20 : 16
            topics = try buffer.readKafkaArray("topics", flexible: false, minimumElementBytes: 6, countMax: Limits.topicsPerRequestMax) { buffer in
                let name = try buffer.readKafkaString("topic name", flexible: false, maxBytes: Limits.topicNameBytesMax)
                let partitions = try buffer.readKafkaArray(
                    "partitions", flexible: false, minimumElementBytes: version >= 5 ? queryBytes + 8 : queryBytes, countMax: Limits.partitionsPerRequestMax
                ) { buffer in
                    let index: Int32 = try buffer.readMillraceInteger("partition index")
                    let epoch: Int32 = version >= 9 ? try buffer.readMillraceInteger("current leader epoch") : -1
                    let offset: Int64 = try buffer.readMillraceInteger("fetch offset")
                    let start: Int64 = version >= 5 ? try buffer.readMillraceInteger("log start offset") : -1
                    return PartitionQuery(index: index, currentLeaderEpoch: epoch, fetchOffset: offset, logStartOffset: start, maxBytes: try buffer.readMillraceInteger("partition max bytes"))
                }
                return KafkaTopic(name: name, partitions)
            }
            forgottenTopics =
                version >= 7
                ? try buffer.readKafkaArray("forgotten topics", flexible: false, minimumElementBytes: 6, countMax: Limits.topicsPerRequestMax) { buffer in
                    let name = try buffer.readKafkaString("topic name", flexible: false, maxBytes: Limits.topicNameBytesMax)
                    let partitions = try buffer.readKafkaArray("partitions", flexible: false, minimumElementBytes: 4, countMax: Limits.partitionsPerRequestMax) {
                        try $0.readMillraceInteger("partition index", as: Int32.self)
                    }
                    return KafkaTopic(name: name, partitions)
                } : []
            rackID = version >= 11 ? try buffer.readKafkaString("rack id", flexible: false) : ""
        }

        public func write(to buffer: inout ByteBuffer, version: Int16) {
            buffer.writeInteger(replicaID)
            buffer.writeInteger(maxWaitMs)
            buffer.writeInteger(minBytes)
            buffer.writeInteger(maxBytes)
            buffer.writeInteger(isolationLevel)
            if version >= 7 {
                buffer.writeInteger(sessionID)
                buffer.writeInteger(sessionEpoch)
            }
            buffer.writeKafkaArray(topics, flexible: false) { buffer, topic in
                buffer.writeKafkaString(topic.name, flexible: false)
                buffer.writeKafkaArray(topic.entries, flexible: false) { buffer, query in
                    buffer.writeInteger(query.index)
                    if version >= 9 { buffer.writeInteger(query.currentLeaderEpoch) }
                    buffer.writeInteger(query.fetchOffset)
                    if version >= 5 { buffer.writeInteger(query.logStartOffset) }
                    buffer.writeInteger(query.maxBytes)
                }
            }
            if version >= 7 {
                buffer.writeKafkaArray(forgottenTopics, flexible: false) { buffer, topic in
                    buffer.writeKafkaString(topic.name, flexible: false)
                    buffer.writeKafkaArray(topic.entries, flexible: false) { $0.writeInteger($1) }
                }
            }
            if version >= 11 { buffer.writeKafkaString(rackID, flexible: false) }
        }
    }

    public struct PartitionAnswer: Equatable, Sendable {
        public var index: Int32
        public var errorCode: Int16
        public var highWatermark: Int64
        public var lastStableOffset: Int64
        public var logStartOffset: Int64
        public var preferredReadReplica: Int32
        /// RecordBatch v2 batches back to back.
        public var records: ByteBuffer

        public init(
            index: Int32, errorCode: Int16 = 0, highWatermark: Int64, lastStableOffset: Int64? = nil, logStartOffset: Int64 = -1, preferredReadReplica: Int32 = -1,
            records: ByteBuffer = ByteBuffer()
        ) {
            self.index = index
            self.errorCode = errorCode
            self.highWatermark = highWatermark
            self.lastStableOffset = lastStableOffset ?? highWatermark
            self.logStartOffset = logStartOffset
            self.preferredReadReplica = preferredReadReplica
            self.records = records
        }
    }

    public struct Response: Equatable, Sendable {
        public var throttleTimeMs: Int32
        public var errorCode: Int16
        public var sessionID: Int32
        public var topics: [KafkaTopic<PartitionAnswer>]

        public init(throttleTimeMs: Int32 = 0, errorCode: Int16 = 0, sessionID: Int32 = 0, topics: [KafkaTopic<PartitionAnswer>]) {
            self.throttleTimeMs = throttleTimeMs
            self.errorCode = errorCode
            self.sessionID = sessionID
            self.topics = topics
        }

        /// Bytes of the answer, records aside.
        public var recordBytes: Int { topics.reduce(0) { $0 + $1.entries.reduce(0) { $0 + $1.records.readableBytes } } }

        public func write(to buffer: inout ByteBuffer, version: Int16) {
            buffer.writeInteger(throttleTimeMs)
            if version >= 7 {
                buffer.writeInteger(errorCode)
                buffer.writeInteger(sessionID)
            }
            buffer.writeKafkaArray(topics, flexible: false) { buffer, topic in
                buffer.writeKafkaString(topic.name, flexible: false)
                buffer.writeKafkaArray(topic.entries, flexible: false) { buffer, answer in
                    buffer.writeInteger(answer.index)
                    buffer.writeInteger(answer.errorCode)
                    buffer.writeInteger(answer.highWatermark)
                    buffer.writeInteger(answer.lastStableOffset)
                    if version >= 5 { buffer.writeInteger(answer.logStartOffset) }
                    // No aborted transactions: there are no transactions.
                    buffer.writeInteger(Int32(-1))
                    if version >= 11 { buffer.writeInteger(answer.preferredReadReplica) }
                    buffer.writeMillraceBytes(answer.records)
                }
            }
        }

        public init(from buffer: inout ByteBuffer, version: Int16) throws {
            throttleTimeMs = try buffer.readMillraceInteger("throttle time")
            errorCode = version >= 7 ? try buffer.readMillraceInteger("error code") : 0
            sessionID = version >= 7 ? try buffer.readMillraceInteger("session id") : 0
            topics = try buffer.readKafkaArray("topics", flexible: false, minimumElementBytes: 6) { buffer in
                let name = try buffer.readKafkaString("topic name", flexible: false)
                let answers = try buffer.readKafkaArray("partitions", flexible: false, minimumElementBytes: 30) { buffer in
                    var answer = PartitionAnswer(
                        index: try buffer.readMillraceInteger("partition index"), errorCode: try buffer.readMillraceInteger("error code"),
                        highWatermark: try buffer.readMillraceInteger("high watermark"))
                    answer.lastStableOffset = try buffer.readMillraceInteger("last stable offset")
                    if version >= 5 { answer.logStartOffset = try buffer.readMillraceInteger("log start offset") }
                    _ = try buffer.readKafkaNullableArray("aborted transactions", flexible: false, minimumElementBytes: 16) { buffer in
                        (try buffer.readMillraceInteger("producer id", as: Int64.self), try buffer.readMillraceInteger("first offset", as: Int64.self))
                    }
                    if version >= 11 { answer.preferredReadReplica = try buffer.readMillraceInteger("preferred read replica") }
                    answer.records = try buffer.readMillraceByteSlice("records")
                    return answer
                }
                return KafkaTopic(name: name, answers)
            }
        }
    }
}
