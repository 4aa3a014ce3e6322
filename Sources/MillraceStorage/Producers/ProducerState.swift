import MillraceFormat

/// The producer sequence range of one batch as the producer sent it: the idempotent
/// producer numbers its records per partition, and a batch carries the first number.
public struct SequenceSpan: Sendable, Equatable {
    public var producerId: Int64
    public var epoch: Int16
    public var firstSequence: Int32
    /// Records the producer sent in the batch (the broker may store fewer, e.g. when some
    /// went to quarantine; the numbers are the producer's).
    public var count: Int32

    public init(producerId: Int64, epoch: Int16, firstSequence: Int32, count: Int32) {
        self.producerId = producerId
        self.epoch = epoch
        self.firstSequence = firstSequence
        self.count = count
    }

    /// The span of a batch from an idempotent producer; nil for a batch without a producer id.
    public init?(_ header: RecordBatchHeader) {
        guard header.producerId >= 0 else { return nil }
        self.init(producerId: header.producerId, epoch: header.producerEpoch, firstSequence: header.baseSequence, count: header.recordCount)
    }

    /// Sequences wrap from Int32.max to 0, as Kafka's do.
    public var lastSequence: Int32 { ProducerSequence.advance(firstSequence, by: Int64(count) - 1) }
}

enum ProducerSequence {
    static func advance(_ sequence: Int32, by steps: Int64) -> Int32 {
        let period = Int64(Int32.max) + 1
        return Int32(((Int64(sequence) + steps) % period + period) % period)
    }
}

/// What the broker keeps per producer id: its current epoch, when it last wrote (or was
/// given out, while it has not written), and whether it has written. An id that never wrote
/// is kept a short time (`ProducerPolicy.unusedIdleMs`), one that did the idle time.
struct ProducerRecord: Equatable {
    var epoch: Int16
    var lastActiveMs: Int64
    var wrote: Bool

    func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 11)
        writer.writeInteger(epoch)
        writer.writeInteger(lastActiveMs)
        writer.writeInteger(UInt8(wrote ? 1 : 0))
        return writer.bytes
    }

    init(epoch: Int16, lastActiveMs: Int64, wrote: Bool) {
        self.epoch = epoch
        self.lastActiveMs = lastActiveMs
        self.wrote = wrote
    }

    init(decoding bytes: UnsafeRawBufferPointer) throws {
        var reader = ByteReader(bytes)
        epoch = try reader.readInteger("producer epoch")
        lastActiveMs = try reader.readInteger("producer last active")
        // Records stored before issue 22 have no flag: they are kept the full idle time.
        wrote = reader.remaining == 0 ? true : try reader.readInteger(as: UInt8.self, "producer wrote") != 0
    }
}

/// Per (producer, partition): the epoch and the last batches' sequence ranges with the
/// offsets they were stored at, newest last, so a retried batch gets its original offsets.
struct ProducerPartitionState: Equatable {
    static let batchesKept = 5

    struct Batch: Equatable {
        var firstSequence: Int32
        var lastSequence: Int32
        /// -1 when nothing of the batch was stored (all of it refused as invalid).
        var baseOffset: Int64
        var lastOffset: Int64
    }

    var epoch: Int16
    var batches: [Batch] = []

    func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 3 + batches.count * 24)
        writer.writeInteger(epoch)
        writer.writeInteger(UInt8(batches.count))
        for batch in batches {
            writer.writeInteger(batch.firstSequence)
            writer.writeInteger(batch.lastSequence)
            writer.writeInteger(batch.baseOffset)
            writer.writeInteger(batch.lastOffset)
        }
        return writer.bytes
    }

    init(epoch: Int16, batches: [Batch] = []) {
        self.epoch = epoch
        self.batches = batches
    }

    init(decoding bytes: UnsafeRawBufferPointer) throws {
        var reader = ByteReader(bytes)
        epoch = try reader.readInteger("producer epoch")
        let count: UInt8 = try reader.readInteger("producer batch count")
        for _ in 0..<min(Int(count), Self.batchesKept) {
            batches.append(
                Batch(
                    firstSequence: try reader.readInteger("first sequence"), lastSequence: try reader.readInteger("last sequence"),
                    baseOffset: try reader.readInteger("base offset"), lastOffset: try reader.readInteger("last offset")))
        }
    }

    /// Where a batch with `span` goes, given this state (nil: the producer has never written
    /// to the partition) and the producer's current epoch. Pure: the writer carries it out.
    enum Placement: Equatable {
        /// Next in sequence: store it.
        case append
        /// Already stored (a retry): answer with where it went, store nothing.
        case duplicate(baseOffset: Int64, lastOffset: Int64)
        case refuse(MillraceError)
    }

    static func place(_ span: SequenceSpan, state: ProducerPartitionState?, producerEpoch: Int16) -> Placement {
        guard span.epoch >= 0 else {
            return .refuse(
                MillraceError(
                    .invalidRequest, "producer \(span.producerId): epoch \(span.epoch) is never given out (epochs are 0...32767); send the epoch InitProducer returned"))
        }
        // An idempotent producer whose batch failed for good bumps its own epoch by one and
        // starts its sequences again at 0 (Kafka's KIP-360; librdkafka does it without asking
        // the broker): that is stored, and fences the epoch before it. An epoch further ahead
        // was never given out and would fence the producer that holds the real one.
        let ownBump = Int32(span.epoch) == Int32(producerEpoch) + 1 && span.firstSequence == 0
        guard span.epoch <= producerEpoch || ownBump else {
            return .refuse(
                MillraceError(
                    .unknownProducerId,
                    "producer \(span.producerId) has no epoch \(span.epoch) here (the newest given out is \(producerEpoch)); nothing was stored. "
                        + "Ask InitProducer for a new id (the Millrace client does; a broker restored from an older backup also answers this)"))
        }
        guard span.epoch >= producerEpoch else {
            return .refuse(
                MillraceError(.producerFenced, "producer \(span.producerId) epoch \(span.epoch) was replaced by epoch \(producerEpoch); start a new producer"))
        }
        guard span.count > 0, span.firstSequence >= 0 else {
            return .refuse(MillraceError(.outOfOrderSequence, "producer \(span.producerId): a batch needs a first sequence >= 0 and at least one record"))
        }
        guard let state, state.epoch == span.epoch, let last = state.batches.last else {
            // A partition this epoch has not written to yet starts at 0.
            if let state, state.epoch > span.epoch {
                return .refuse(MillraceError(.producerFenced, "producer \(span.producerId) epoch \(span.epoch) was replaced by epoch \(state.epoch)"))
            }
            return span.firstSequence == 0
                ? .append
                : .refuse(
                    MillraceError(
                        .outOfOrderSequence,
                        "producer \(span.producerId) epoch \(span.epoch): expected sequence 0 on this partition, got \(span.firstSequence)"))
        }
        if let kept = state.batches.first(where: { $0.firstSequence == span.firstSequence && $0.lastSequence == span.lastSequence }) {
            return .duplicate(baseOffset: kept.baseOffset, lastOffset: kept.lastOffset)
        }
        let expected = ProducerSequence.advance(last.lastSequence, by: 1)
        guard span.firstSequence == expected else {
            return .refuse(
                MillraceError(
                    .outOfOrderSequence,
                    "producer \(span.producerId) epoch \(span.epoch): expected sequence \(expected), got \(span.firstSequence)...\(span.lastSequence)"
                        + (Self.isOlder(span.firstSequence, than: expected) ? " (older than the last \(batchesKept) batches kept)" : " (a gap)")))
        }
        return .append
    }

    /// Whether `sequence` lies in the half of the sequence space just before `reference`.
    static func isOlder(_ sequence: Int32, than reference: Int32) -> Bool {
        let distance = (Int64(reference) - Int64(sequence) + Int64(Int32.max) + 1) % (Int64(Int32.max) + 1)
        return distance > 0 && distance <= Int64(Int32.max) / 2
    }

    /// The state after storing `span` at `baseOffset...lastOffset`.
    func recording(_ span: SequenceSpan, baseOffset: Int64, lastOffset: Int64) -> ProducerPartitionState {
        var next = epoch == span.epoch ? self : ProducerPartitionState(epoch: span.epoch)
        next.batches.append(Batch(firstSequence: span.firstSequence, lastSequence: span.lastSequence, baseOffset: baseOffset, lastOffset: lastOffset))
        if next.batches.count > Self.batchesKept { next.batches.removeFirst(next.batches.count - Self.batchesKept) }
        return next
    }
}
