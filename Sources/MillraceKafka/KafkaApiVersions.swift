import MillraceFormat
import MillraceWire
import NIOCore

/// ApiVersions (key 18), versions 0...3: what a client asks first, to learn which versions of
/// each api the broker speaks. v3 is flexible (compact arrays and strings, tagged fields).
public enum KafkaApiVersions {
    public static let versions: ClosedRange<Int16> = 0...3

    /// The APIs the Kafka listener serves, each at the versions it serves (docs/KAFKA.md's
    /// table is checked against this): what ApiVersions advertises. Versions before flexible
    /// ones wherever the clients tried negotiate to them, so the answers stay simple.
    public static let served: [KafkaApiKey: ClosedRange<Int16>] = [
        .produce: KafkaProduce.versions,
        .fetch: KafkaFetch.versions,
        // v7 adds "the largest timestamp" (-3), which the storage does not look up.
        .listOffsets: 1...6,
        .metadata: KafkaMetadata.versions,
        .offsetCommit: KafkaGroups.offsetCommitVersions,
        .offsetFetch: KafkaGroups.offsetFetchVersions,
        .findCoordinator: KafkaFindCoordinator.versions,
        .joinGroup: KafkaGroups.joinVersions,
        .heartbeat: KafkaMembership.versions,
        .leaveGroup: KafkaMembership.versions,
        .syncGroup: KafkaGroups.syncVersions,
        .describeGroups: KafkaGroups.describeVersions,
        .listGroups: KafkaGroups.listVersions,
        .apiVersions: versions,
        .createTopics: KafkaAdmin.createTopicsVersions,
        .deleteTopics: KafkaAdmin.deleteTopicsVersions,
        .initProducerId: KafkaAdmin.initProducerIdVersions,
        .describeConfigs: KafkaAdmin.describeConfigsVersions,
        // v0 would be followed by raw SASL tokens outside Kafka's framing, which this broker
        // does not read: a v0 handshake is refused (`KafkaService.handshake`). It is listed
        // because librdkafka looks for v0 before it uses v1 and SaslAuthenticate.
        .saslHandshake: KafkaSASL.handshakeVersions,
        .saslAuthenticate: KafkaSASL.authenticateVersions,
    ]

    /// `served`, in ApiVersions' layout, by api key.
    public static let advertised: [Range] = served.sorted { $0.key.rawValue < $1.key.rawValue }.map {
        Range(apiKey: $0.key.rawValue, minVersion: $0.value.lowerBound, maxVersion: $0.value.upperBound)
    }

    /// The request: empty before v3; from v3 the client's software name and version.
    public struct Request: Equatable, Sendable {
        public var clientSoftwareName: String?
        public var clientSoftwareVersion: String?

        public init(clientSoftwareName: String? = nil, clientSoftwareVersion: String? = nil) {
            self.clientSoftwareName = clientSoftwareName
            self.clientSoftwareVersion = clientSoftwareVersion
        }

        public init(from buffer: inout ByteBuffer, version: Int16) throws {
            guard version >= 3 else { return }
            clientSoftwareName = try buffer.readKafkaCompactString("client software name", maxBytes: 255)
            clientSoftwareVersion = try buffer.readKafkaCompactString("client software version", maxBytes: 255)
            try buffer.skipKafkaTaggedFields("ApiVersions request")
        }

        public func write(to buffer: inout ByteBuffer, version: Int16) {
            guard version >= 3 else { return }
            buffer.writeKafkaCompactString(clientSoftwareName ?? "")
            buffer.writeKafkaCompactString(clientSoftwareVersion ?? "")
            buffer.writeKafkaEmptyTaggedFields()
        }
    }

    /// One api and the versions of it served: the same three fields as the native
    /// protocol's ApiVersions entry, written the same way (plus tagged fields from v3).
    public typealias Range = ApiVersionsResponse.Entry

    public struct Response: Equatable, Sendable {
        /// Kafka's error code (0 none, 35 UNSUPPORTED_VERSION).
        public var errorCode: Int16
        public var apis: [Range]
        public var throttleTimeMs: Int32

        public init(errorCode: Int16 = 0, apis: [Range], throttleTimeMs: Int32 = 0) {
            self.errorCode = errorCode
            self.apis = apis
            self.throttleTimeMs = throttleTimeMs
        }

        /// The body at `version`. An UNSUPPORTED_VERSION answer is written at v0 whatever the
        /// client asked, as Kafka's broker does, so that any client can read it.
        public func write(to buffer: inout ByteBuffer, version: Int16) {
            buffer.writeInteger(errorCode)
            let writeRange: (inout ByteBuffer, Range) -> Void = { buffer, range in
                range.write(to: &buffer)
                if version >= 3 { buffer.writeKafkaEmptyTaggedFields() }
            }
            if version >= 3 { buffer.writeKafkaCompactArray(apis, writeRange) } else { buffer.writeMillraceArray(apis, writeRange) }
            if version >= 1 { buffer.writeInteger(throttleTimeMs) }
            if version >= 3 { buffer.writeKafkaEmptyTaggedFields() }
        }

        public init(from buffer: inout ByteBuffer, version: Int16) throws {
            errorCode = try buffer.readMillraceInteger("error code")
            let readRange: (inout ByteBuffer) throws -> Range = { buffer in
                let range = try Range(from: &buffer)
                if version >= 3 { try buffer.skipKafkaTaggedFields("api version range") }
                return range
            }
            apis =
                version >= 3
                ? try buffer.readKafkaCompactArray("api versions", minimumElementBytes: Range.minimumBytes + 1, readRange)
                : try buffer.readMillraceArray("api versions", minimumElementBytes: Range.minimumBytes, readRange)
            throttleTimeMs = version >= 1 ? try buffer.readMillraceInteger("throttle time") : 0
            if version >= 3 { try buffer.skipKafkaTaggedFields("ApiVersions response") }
        }
    }
}
