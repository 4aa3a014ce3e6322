/// Every API of the native protocol, with its key as sent on the wire. docs/PROTOCOL.md
/// mirrors this list.
public enum ApiKey: Int16, CaseIterable, Sendable {
    /// Which APIs and versions the server speaks.
    case apiVersions = 0
    /// The broker's address and each topic's partition count.
    case metadata = 1
    case createTopic = 2
    case deleteTopic = 3
    /// A topic's configuration and each partition's offsets and size.
    case describeTopic = 4
    case listTopics = 5
    /// Append record batches; answered once they are durable.
    case produce = 6
    /// Read record batches, optionally waiting for data (long poll).
    case fetch = 7
    /// Earliest, latest, or first-at-or-after-a-time offsets.
    case listOffsets = 8

    /// Versions this build speaks.
    public var versions: ClosedRange<Int16> { 0...0 }
}
