import MillraceFormat
import MillraceWire
import NIOCore

/// Produce (key 0), versions 3...8: the first with RecordBatch v2 to the last before flexible
/// versions. v5 adds the log start offset to the answer, v8 the per-record errors and the
/// partition's error message (KIP-467), which carry a schema's verdict to a Kafka producer.
public enum KafkaProduce {
    public static let versions: ClosedRange<Int16> = 3...8

    public struct PartitionData: Equatable, Sendable {
        public var index: Int32
        /// RecordBatch v2 batches back to back, as sent (a slice of the request frame).
        public var records: ByteBuffer

        public init(index: Int32, records: ByteBuffer) {
            self.index = index
            self.records = records
        }
    }

    public struct Request: Equatable, Sendable {
        public var transactionalID: String?
        /// 0: no answer; 1 or -1: answered once appended. Millrace answers only once the
        /// records are durable, whichever is asked (docs/KAFKA.md).
        public var acks: Int16
        public var timeoutMs: Int32
        public var topics: [KafkaTopic<PartitionData>]

        public init(transactionalID: String? = nil, acks: Int16 = -1, timeoutMs: Int32 = 30_000, topics: [KafkaTopic<PartitionData>]) {
            self.transactionalID = transactionalID
            self.acks = acks
            self.timeoutMs = timeoutMs
            self.topics = topics
        }

        public init(from buffer: inout ByteBuffer, version: Int16) throws {
            transactionalID = try buffer.readKafkaNullableString("transactional id", maxBytes: Limits.groupNameBytesMax)
            acks = try buffer.readMillraceInteger("acks")
            timeoutMs = try buffer.readMillraceInteger("timeout")
            topics = try buffer.readKafkaArray("topics", flexible: false, minimumElementBytes: 6, countMax: Limits.topicsPerRequestMax) { buffer in
                let name = try buffer.readKafkaString("topic name", flexible: false, maxBytes: Limits.topicNameBytesMax)
                let partitions = try buffer.readKafkaArray("partitions", flexible: false, minimumElementBytes: 8, countMax: Limits.partitionsPerRequestMax) {
                    buffer in
                    PartitionData(index: try buffer.readMillraceInteger("partition index"), records: try buffer.readMillraceByteSlice("records"))
                }
                return KafkaTopic(name: name, partitions)
            }
        }

        public func write(to buffer: inout ByteBuffer, version: Int16) {
            buffer.writeKafkaNullableString(transactionalID)
            buffer.writeInteger(acks)
            buffer.writeInteger(timeoutMs)
            buffer.writeKafkaArray(topics, flexible: false) { buffer, topic in
                buffer.writeKafkaString(topic.name, flexible: false)
                buffer.writeKafkaArray(topic.entries, flexible: false) { buffer, partition in
                    buffer.writeInteger(partition.index)
                    buffer.writeMillraceBytes(partition.records)
                }
            }
        }
    }

    /// A record of the batch that was refused, and why (v8).
    public struct RecordError: Equatable, Sendable {
        /// The record's position in the partition's records, from 0.
        public var batchIndex: Int32
        public var message: String?

        public init(batchIndex: Int32, message: String?) {
            self.batchIndex = batchIndex
            self.message = message
        }
    }

    public struct PartitionAnswer: Equatable, Sendable {
        public var index: Int32
        public var errorCode: Int16
        public var baseOffset: Int64
        public var logAppendTimeMs: Int64
        public var logStartOffset: Int64
        public var recordErrors: [RecordError]
        public var errorMessage: String?

        public init(
            index: Int32, errorCode: Int16 = 0, baseOffset: Int64, logAppendTimeMs: Int64 = -1, logStartOffset: Int64 = -1, recordErrors: [RecordError] = [],
            errorMessage: String? = nil
        ) {
            self.index = index
            self.errorCode = errorCode
            self.baseOffset = baseOffset
            self.logAppendTimeMs = logAppendTimeMs
            self.logStartOffset = logStartOffset
            self.recordErrors = recordErrors
            self.errorMessage = errorMessage
        }
    }

    public struct Response: Equatable, Sendable {
        public var topics: [KafkaTopic<PartitionAnswer>]
        public var throttleTimeMs: Int32

        public init(topics: [KafkaTopic<PartitionAnswer>], throttleTimeMs: Int32 = 0) {
            self.topics = topics
            self.throttleTimeMs = throttleTimeMs
        }

        public func write(to buffer: inout ByteBuffer, version: Int16) {
            buffer.writeKafkaArray(topics, flexible: false) { buffer, topic in
                buffer.writeKafkaString(topic.name, flexible: false)
                buffer.writeKafkaArray(topic.entries, flexible: false) { buffer, answer in
                    buffer.writeInteger(answer.index)
                    buffer.writeInteger(answer.errorCode)
                    buffer.writeInteger(answer.baseOffset)
                    buffer.writeInteger(answer.logAppendTimeMs)
                    if version >= 5 { buffer.writeInteger(answer.logStartOffset) }
                    if version >= 8 {
                        buffer.writeKafkaArray(answer.recordErrors, flexible: false) { buffer, error in
                            buffer.writeInteger(error.batchIndex)
                            buffer.writeKafkaNullableString(error.message)
                        }
                        buffer.writeKafkaNullableString(answer.errorMessage)
                    }
                }
            }
            buffer.writeInteger(throttleTimeMs)
        }

        public init(from buffer: inout ByteBuffer, version: Int16) throws {
            topics = try buffer.readKafkaArray("topics", flexible: false, minimumElementBytes: 6) { buffer in
                let name = try buffer.readKafkaString("topic name", flexible: false)
                let answers = try buffer.readKafkaArray("partitions", flexible: false, minimumElementBytes: 22) { buffer in
                    var answer = PartitionAnswer(
                        index: try buffer.readMillraceInteger("partition index"), errorCode: try buffer.readMillraceInteger("error code"),
                        baseOffset: try buffer.readMillraceInteger("base offset"), logAppendTimeMs: try buffer.readMillraceInteger("log append time"))
                    if version >= 5 { answer.logStartOffset = try buffer.readMillraceInteger("log start offset") }
                    if version >= 8 {
                        answer.recordErrors = try buffer.readKafkaArray("record errors", flexible: false, minimumElementBytes: 6) { buffer in
                            RecordError(batchIndex: try buffer.readMillraceInteger("batch index"), message: try buffer.readKafkaNullableString("record error message"))
                        }
                        answer.errorMessage = try buffer.readKafkaNullableString("error message")
                    }
                    return answer
                }
                return KafkaTopic(name: name, answers)
            }
            throttleTimeMs = try buffer.readMillraceInteger("throttle time")
        }
    }
}
