import MillraceFormat
import Testing

@Suite struct LimitsTests {
    @Test func limitsFitEachOther() {
        #expect(Limits.keyBytesMax < Limits.batchBytesMax)
        #expect(Limits.batchBytesMax <= Limits.decompressedBatchBytesMax)
        // The smallest record is 7 bytes; a full batch of them must fit the byte limit.
        #expect(Limits.recordsPerBatchMax * 7 + RecordBatchLayout.headerBytes <= Limits.batchBytesMax)
        #expect(Limits.partitionsPerTopicMax <= Limits.partitionsMax)
        #expect(Limits.partitionsPerTopicMax <= Limits.partitionsPerRequestMax)
        // One whole frame, and one whole batch with its response around it, always fit.
        #expect(Limits.frameBytesMax <= Limits.connectionRequestBytesMax)
        #expect(Limits.connectionRequestBytesMax <= Limits.brokerRequestBytesMax)
        #expect(Limits.batchBytesMax + (64 << 10) <= Limits.connectionResponseBytesMax)
        #expect(Limits.connectionResponseBytesMax <= Limits.brokerResponseBytesMax)
    }

    /// Every string a request carries, and every message a response echoes, fits the
    /// protocol's string; so no encoder ever meets a string it cannot write.
    @Test func stringLimitsFitTheProtocol() {
        for limit in [
            Limits.topicNameBytesMax, Limits.groupNameBytesMax, Limits.memberIDBytesMax, Limits.offsetMetadataBytesMax,
            Limits.errorMessageBytesMax,
        ] {
            #expect(limit <= Limits.stringBytesMax)
        }
        // Broker-made member ids: GROUP-N-RANDOM, N up to 20 digits, RANDOM 16 hex digits.
        #expect(Limits.groupNameBytesMax + 1 + 20 + 1 + 16 <= Limits.memberIDBytesMax)
        // A committed offset's key: u16 + group + u16 + topic + i32, within LMDB's 511 bytes.
        #expect(2 + Limits.groupNameBytesMax + 2 + Limits.topicNameBytesMax + 4 <= 511)
    }

    /// Producer ids (issue 22): every connection can hold a fresh id before one pushes out
    /// another's; an unused id lives many activity steps and far less than the 7-day idle
    /// time; expiry and eviction keep their transactions as short as retention's.
    @Test func producerLimitsFitEachOther() {
        #expect(Limits.producerIdsUnusedMax >= 16 * Limits.connectionsMax)
        #expect(Limits.producerActivityStepMs * 10 <= Limits.producerUnusedIdleMs)
        #expect(Limits.producerUnusedIdleMs * 100 <= 7 * 24 * 3_600_000)
        #expect(Limits.producerExpiryPerPassMax <= Limits.retentionBatchesPerPassMax)
        // Each new id may push out more than one, so a lowered limit is reached again.
        #expect(Limits.producerEvictionsPerInitMax > 1 && Limits.producerEvictionsPerInitMax <= Limits.producerExpiryPerPassMax)
    }

    @Test func errorCodesAreUniqueAndNamed() {
        let codes = ErrorCode.allCases.map(\.rawValue)
        #expect(Set(codes).count == codes.count)
        #expect(Set(ErrorCode.allCases.map(\.description)).count == codes.count)
        #expect(ErrorCode.storageFull.isRetriable)
        #expect(!ErrorCode.corruptBatch.isRetriable)
    }
}
