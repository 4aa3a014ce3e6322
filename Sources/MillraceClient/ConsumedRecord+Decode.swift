import Foundation

extension ConsumedRecord {
    /// The record's value decoded from JSON: the reading side of `Producer.send(topic:key:json:)`
    /// and `ProducerRecord(topic:key:json:)`.
    ///
    /// ```swift
    /// let order = try record.decode(Order.self)
    /// ```
    ///
    /// Throws `RecordDecodingError`, naming the record's topic, partition and offset, the type,
    /// and the field that did not decode — enough to find the record again with
    /// `millrace consume --partition P --offset O`.
    public func decode<Value: Decodable>(_ type: Value.Type, decoder: JSONDecoder = JSONDecoder()) throws(RecordDecodingError) -> Value {
        guard let value else {
            throw RecordDecodingError(record: self, type: type, path: "", reason: "the record has no value (a tombstone)")
        }
        do {
            return try decoder.decode(type, from: Data(value))
        } catch let error as DecodingError {
            let (path, reason) = Self.describe(error)
            throw RecordDecodingError(record: self, type: type, path: path, reason: reason)
        } catch {
            throw RecordDecodingError(record: self, type: type, path: "", reason: "\(error)")
        }
    }

    /// Where a `DecodingError` happened, as a JSON pointer, and what was wrong.
    static func describe(_ error: DecodingError) -> (path: String, reason: String) {
        func pointer(_ path: [any CodingKey]) -> String {
            path.map { key in "/" + (key.intValue.map(String.init) ?? key.stringValue) }.joined()
        }
        switch error {
        case .keyNotFound(let key, let context):
            return (pointer(context.codingPath + [key]), "required, missing")
        case .valueNotFound(let type, let context):
            return (pointer(context.codingPath), "expected \(type), found null")
        case .typeMismatch(let type, let context):
            return (pointer(context.codingPath), "expected \(type): \(context.debugDescription)")
        case .dataCorrupted(let context):
            return (pointer(context.codingPath), context.debugDescription)
        @unknown default:
            return ("", "\(error)")
        }
    }
}

/// A consumed record whose value did not decode as the type asked for
/// (`ConsumedRecord.decode(_:decoder:)`).
public struct RecordDecodingError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Where the record is.
    public let topic: String
    public let partition: Int32
    public let offset: Int64
    /// The type it was decoded as.
    public let type: String
    /// The field that did not decode, as a JSON pointer ("" for the value as a whole).
    public let path: String
    /// What was wrong there.
    public let reason: String

    init<Value>(record: ConsumedRecord, type: Value.Type, path: String, reason: String) {
        topic = record.topic
        partition = record.partition
        offset = record.offset
        self.type = String(describing: type)
        self.path = path
        self.reason = reason
    }

    public var description: String {
        "\(topic)/\(partition) offset \(offset) does not decode as \(type): \(path.isEmpty ? "/" : path): \(reason)"
    }
}
