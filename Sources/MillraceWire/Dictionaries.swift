import MillraceFormat
import NIOCore

/// TrainDictionary: train a zstd dictionary on a topic's newest records and make it the one
/// producers are given.
public struct TrainDictionaryRequest: Equatable, Sendable {
    public var topic: String
    /// Records to train on (their values, spread over the partitions).
    public var samples: Int32
    /// The dictionary's size at most, in bytes.
    public var bytes: Int32

    public init(topic: String, samples: Int32, bytes: Int32) {
        self.topic = topic
        self.samples = samples
        self.bytes = bytes
    }
}

/// A topic's dictionary: its id (the one zstd frames carry), version, training, and bytes.
public struct DictionaryResponse: Equatable, Sendable {
    public var id: UInt32
    public var version: Int32
    public var trainedAtMs: Int64
    public var samples: Int32
    public var bytes: [UInt8]

    public init(id: UInt32, version: Int32, trainedAtMs: Int64, samples: Int32, bytes: [UInt8]) {
        self.id = id
        self.version = version
        self.trainedAtMs = trainedAtMs
        self.samples = samples
        self.bytes = bytes
    }

    func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(id)
        buffer.writeInteger(version)
        buffer.writeInteger(trainedAtMs)
        buffer.writeInteger(samples)
        buffer.writeMillraceBytes(bytes)
    }

    init(from buffer: inout ByteBuffer) throws {
        id = try buffer.readMillraceInteger("dictionary id")
        version = try buffer.readMillraceInteger("dictionary version")
        trainedAtMs = try buffer.readMillraceInteger("training time")
        samples = try buffer.readMillraceInteger("samples")
        bytes = try buffer.readMillraceBytes("dictionary") ?? []
    }
}

/// What training made, with the records section of a one-record batch on the samples: plain,
/// zstd alone, and zstd with the new dictionary, in hundredths of a byte per record.
public struct DictionaryTrainingResponse: Equatable, Sendable {
    public var dictionary: DictionaryResponse
    public var plainCentibytes: Int32
    public var zstdCentibytes: Int32
    public var dictionaryCentibytes: Int32

    public init(dictionary: DictionaryResponse, plainCentibytes: Int32, zstdCentibytes: Int32, dictionaryCentibytes: Int32) {
        self.dictionary = dictionary
        self.plainCentibytes = plainCentibytes
        self.zstdCentibytes = zstdCentibytes
        self.dictionaryCentibytes = dictionaryCentibytes
    }

    func write(to buffer: inout ByteBuffer) {
        dictionary.write(to: &buffer)
        buffer.writeInteger(plainCentibytes)
        buffer.writeInteger(zstdCentibytes)
        buffer.writeInteger(dictionaryCentibytes)
    }

    init(from buffer: inout ByteBuffer) throws {
        dictionary = try DictionaryResponse(from: &buffer)
        plainCentibytes = try buffer.readMillraceInteger("plain bytes")
        zstdCentibytes = try buffer.readMillraceInteger("zstd bytes")
        dictionaryCentibytes = try buffer.readMillraceInteger("dictionary bytes")
    }
}
