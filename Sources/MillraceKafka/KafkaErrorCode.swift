import MillraceFormat

/// The Kafka error codes the Kafka listener answers with (Kafka's `Errors`; the numbers are
/// the protocol's and never change), and what each of Millrace's errors becomes. A Kafka
/// client retries what Kafka calls retriable and gives up on the rest, so a Millrace error
/// that is retriable becomes a code Kafka clients retry (`KafkaErrorCodeTests`).
public enum KafkaErrorCode: Int16, CaseIterable, Sendable {
    case unknownServerError = -1
    case none = 0
    case offsetOutOfRange = 1
    case corruptMessage = 2
    case unknownTopicOrPartition = 3
    case notLeaderOrFollower = 6
    case requestTimedOut = 7
    case messageTooLarge = 10
    case offsetMetadataTooLarge = 12
    case networkException = 13
    case coordinatorNotAvailable = 15
    case notCoordinator = 16
    case invalidTopic = 17
    case invalidRequiredAcks = 21
    case illegalGeneration = 22
    case inconsistentGroupProtocol = 23
    case unknownMemberID = 25
    case invalidSessionTimeout = 26
    case rebalanceInProgress = 27
    case topicAuthorizationFailed = 29
    case groupAuthorizationFailed = 30
    case clusterAuthorizationFailed = 31
    case unsupportedSASLMechanism = 33
    case illegalSASLState = 34
    case unsupportedVersion = 35
    case topicAlreadyExists = 36
    case invalidPartitions = 37
    case invalidReplicationFactor = 38
    case invalidConfig = 40
    case invalidRequest = 42
    case policyViolation = 44
    case outOfOrderSequenceNumber = 45
    case invalidProducerEpoch = 47
    case transactionalIDAuthorizationFailed = 53
    case kafkaStorageError = 56
    case saslAuthenticationFailed = 58
    case unknownProducerID = 59
    case memberIDRequired = 79
    case groupMaxSizeReached = 81
    case nonEmptyGroup = 68
    case groupIDNotFound = 69
    case unsupportedCompressionType = 76
    case invalidRecord = 87
    case throttlingQuotaExceeded = 89

    /// Whether Kafka's clients retry a request answered with this code.
    public var isRetriable: Bool {
        switch self {
        case .corruptMessage, .unknownTopicOrPartition, .notLeaderOrFollower, .requestTimedOut, .networkException, .kafkaStorageError,
            .throttlingQuotaExceeded, .coordinatorNotAvailable, .notCoordinator, .rebalanceInProgress:
            true
        case .unknownServerError, .none, .offsetOutOfRange, .messageTooLarge, .invalidTopic, .illegalGeneration, .unknownMemberID,
            .unsupportedVersion, .topicAlreadyExists, .invalidPartitions, .invalidConfig, .invalidRequest, .policyViolation,
            .outOfOrderSequenceNumber, .invalidProducerEpoch, .unknownProducerID, .nonEmptyGroup, .groupIDNotFound,
            .unsupportedCompressionType, .invalidRecord, .inconsistentGroupProtocol, .invalidSessionTimeout, .invalidReplicationFactor, .transactionalIDAuthorizationFailed,
            .memberIDRequired, .offsetMetadataTooLarge, .invalidRequiredAcks, .groupMaxSizeReached, .topicAuthorizationFailed, .groupAuthorizationFailed,
            .clusterAuthorizationFailed, .unsupportedSASLMechanism, .illegalSASLState, .saslAuthenticationFailed:
            false
        }
    }

    /// What a Millrace error is called by a handler whose resource is a group or the cluster:
    /// a refusal becomes that resource's authorization error.
    public init(_ code: ErrorCode, on resource: AuthorizationScope) {
        guard code == .notAuthorized else {
            self.init(code)
            return
        }
        switch resource {
        case .topic: self = .topicAuthorizationFailed
        case .group: self = .groupAuthorizationFailed
        case .cluster: self = .clusterAuthorizationFailed
        }
    }

    /// Which of Kafka's authorization errors a refusal becomes.
    public enum AuthorizationScope: Sendable {
        case topic, group, cluster
    }

    /// What a Millrace error is called on the Kafka listener. Exhaustive: a new Millrace error
    /// does not compile until it is given a Kafka name.
    public init(_ code: ErrorCode) {
        self =
            switch code {
            case .none: .none
            case .unexpected, .notDataDirectory, .newerFormatVersion, .notABroker, .unknownDictionary: .unknownServerError
            case .corruptBatch, .invalidRecordCount: .corruptMessage
            case .unsupportedCodec: .unsupportedCompressionType
            case .batchTooLarge: .messageTooLarge
            case .keyTooLarge, .invalidRecord, .unknownSchemaVersion: .invalidRecord
            case .unknownTopic, .unknownPartition: .unknownTopicOrPartition
            case .topicAlreadyExists: .topicAlreadyExists
            case .invalidTopicName: .invalidTopic
            case .invalidPartitionCount: .invalidPartitions
            case .invalidConfig: .invalidConfig
            case .offsetOutOfRange: .offsetOutOfRange
            // The disk, and a data directory another process holds: Kafka's storage error,
            // which its clients retry.
            case .storageFull, .storageError, .dataDirectoryLocked: .kafkaStorageError
            // Back-pressure: retried after the client's back-off.
            case .writerBusy, .tooManyInFlight, .requestTimedOut: .requestTimedOut
            // The broker is stopping: what a Kafka broker going down answers, so the client
            // looks the leader up again and retries.
            case .storageClosed: .notLeaderOrFollower
            case .invalidRequest, .malformedRequest, .frameTooLarge, .invalidSchema: .invalidRequest
            case .unknownApi, .unsupportedVersion: .unsupportedVersion
            case .unknownMember: .unknownMemberID
            case .staleGeneration: .illegalGeneration
            case .unknownGroup: .groupIDNotFound
            case .groupNotEmpty: .nonEmptyGroup
            case .networkError: .networkException
            case .limitReached: .throttlingQuotaExceeded
            case .incompatibleSchema: .policyViolation
            case .outOfOrderSequence: .outOfOrderSequenceNumber
            case .producerFenced: .invalidProducerEpoch
            case .unknownProducerId: .unknownProducerID
            // A refusal on a topic; group and cluster handlers say `groupAuthorizationFailed`
            // and `clusterAuthorizationFailed` themselves (`KafkaErrorCode(_:on:)`).
            case .notAuthorized, .notOwner: .topicAuthorizationFailed
            case .authenticationFailed: .saslAuthenticationFailed
            case .authenticationRequired: .illegalSASLState
            }
    }
}
