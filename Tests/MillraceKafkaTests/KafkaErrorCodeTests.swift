import MillraceFormat
import MillraceKafka
import Testing

@Suite struct KafkaErrorCodeTests {
    /// A Millrace error the native client retries is one a Kafka client retries too (else a
    /// record a native producer would deliver is given up by a Kafka one), and one it gives up
    /// on is not retried by a Kafka client either — but where Kafka's own broker answers a
    /// retriable code for the same failure, which its clients expect: an unknown topic or
    /// partition (metadata may lag) and a corrupt batch (a resend may arrive whole).
    @Test func retriableStaysRetriable() {
        let kafkaRetriesWhereWeDoNot: Set<ErrorCode> = [.unknownTopic, .unknownPartition, .corruptBatch, .invalidRecordCount]
        for code in ErrorCode.allCases where code != .none {
            let kafka = KafkaErrorCode(code)
            #expect(kafka != .none, "\(code) would read as success")
            if code.isRetriable {
                #expect(kafka.isRetriable, "\(code) → \(kafka) (\(kafka.rawValue)): a Kafka client would give up")
            } else {
                #expect(kafka.isRetriable == kafkaRetriesWhereWeDoNot.contains(code), "\(code) → \(kafka) (\(kafka.rawValue))")
            }
        }
        #expect(KafkaErrorCode(.none) == .none)
    }

    /// The numbers are Kafka's own (the protocol guide's error table).
    @Test func theNumbersAreKafkas() {
        let expected: [KafkaErrorCode: Int16] = [
            .unknownServerError: -1, .offsetOutOfRange: 1, .corruptMessage: 2, .unknownTopicOrPartition: 3, .notLeaderOrFollower: 6,
            .requestTimedOut: 7, .messageTooLarge: 10, .unknownMemberID: 25, .illegalGeneration: 22, .unsupportedVersion: 35,
            .topicAlreadyExists: 36, .invalidRequest: 42, .outOfOrderSequenceNumber: 45, .invalidProducerEpoch: 47, .kafkaStorageError: 56,
            .unknownProducerID: 59, .nonEmptyGroup: 68, .groupIDNotFound: 69, .unsupportedCompressionType: 76, .invalidRecord: 87,
            .throttlingQuotaExceeded: 89,
        ]
        for (code, number) in expected { #expect(code.rawValue == number, "\(code)") }
        #expect(KafkaErrorCode(.invalidRecord) == .invalidRecord)
        #expect(KafkaErrorCode(.unknownTopic) == .unknownTopicOrPartition)
    }
}
