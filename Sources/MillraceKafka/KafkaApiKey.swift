/// The Kafka APIs the Kafka listener will serve (issue 25), with the first version of each
/// that is "flexible" (compact strings, bytes and arrays, and tagged fields; KIP-482). A
/// flexible request has request header v2; its response has response header v1, except
/// ApiVersions, whose response header is always v0 so that a client can read the answer
/// before it knows what the broker speaks.
public enum KafkaApiKey: Int16, CaseIterable, Sendable {
    case produce = 0
    case fetch = 1
    case listOffsets = 2
    case metadata = 3
    case offsetCommit = 8
    case offsetFetch = 9
    case findCoordinator = 10
    case joinGroup = 11
    case heartbeat = 12
    case leaveGroup = 13
    case syncGroup = 14
    case describeGroups = 15
    case listGroups = 16
    case saslHandshake = 17
    case apiVersions = 18
    case createTopics = 19
    case deleteTopics = 20
    case initProducerId = 22
    case offsetForLeaderEpoch = 23
    case saslAuthenticate = 36
    case describeConfigs = 32

    /// The first flexible version (Kafka's message definitions, "flexibleVersions").
    public var firstFlexibleVersion: Int16 {
        switch self {
        case .produce: 9
        case .fetch: 12
        case .listOffsets: 6
        case .metadata: 9
        case .offsetCommit: 8
        case .offsetFetch: 6
        case .findCoordinator: 3
        case .joinGroup: 6
        case .heartbeat: 4
        case .leaveGroup: 4
        case .syncGroup: 4
        case .describeGroups: 5
        case .listGroups: 3
        case .saslHandshake: Int16.max  // never flexible
        case .apiVersions: 3
        case .createTopics: 5
        case .deleteTopics: 4
        case .initProducerId: 2
        case .offsetForLeaderEpoch: 4
        case .saslAuthenticate: 2
        case .describeConfigs: 4
        }
    }

    public func isFlexible(_ version: Int16) -> Bool { version >= firstFlexibleVersion }

    /// Whether the response to `version` carries response header v1 (tagged fields after the
    /// correlation id).
    public func responseHeaderHasTags(_ version: Int16) -> Bool { self != .apiVersions && isFlexible(version) }
}
