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

    /// Trace (issue 22): a page's read bound takes a full page of one-entry hits even when
    /// each is seen twice (in memory and in a run, as a commit moves them), and one record's
    /// entries whole; a walk's bound takes full pages.
    @Test func traceReadBoundsFitEachOther() {
        #expect(Limits.traceEntriesPerPageMax >= 2 * (Limits.traceHitsPerPageMax + 1))
        #expect(Limits.traceEntriesPerPageMax >= 2 * Limits.indexValuesPerRecordMax)
        #expect(Limits.walkIndexEntriesMax >= 3 * Limits.traceEntriesPerPageMax)
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

    /// The HTTP listener's unwritten bytes, every connection full, stay well inside what the
    /// broker allows its own clients; the names of every group the broker may know stay small.
    @Test func httpAndGroupLimitsFitTheBudgets() {
        #expect(Limits.httpConnectionsMax * Limits.httpConnectionResponseBytesMax <= Limits.brokerResponseBytesMax / 4)
        #expect(Limits.httpConnectionsMax <= Limits.connectionsMax)
        // The group census holds every known group's name in memory.
        #expect(Limits.groupsMax * Limits.groupNameBytesMax <= 4 << 20)
        #expect(Limits.groupMembersMax <= Limits.groupsMax)
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

    /// Schema work (issue 22): what an ordinary schema and record need fits the budgets, and
    /// the budgets nest.
    @Test func schemaWorkFitsItsBudgets() {
        #expect(Limits.validationStepsPerValueMax <= Limits.validationStepsPerRequestMax)
        // One value checked against every subschema its applicators reach, many times over.
        #expect(Limits.schemaApplicatorFanOutMax * 64 <= Limits.validationStepsPerValueMax)
        // The largest pattern over an identifier-length string (64 characters).
        #expect(Limits.patternStatesMax * 64 <= Limits.validationStepsPerValueMax)
        // A compatibility check can visit every pair along the largest schema's structure.
        #expect(Limits.schemaNodesMax * 16 <= Limits.schemaCompatibilityStepsMax)
        // The cache holds at least a few of the largest compiled versions (~40 x the document).
        #expect(Limits.schemaBytesMax * 40 * 8 <= Limits.schemaCompiledCacheBytesMax)
        #expect(Limits.schemaVersionsPerTopicMax > 1 && Limits.schemaVersionsPerTopicMax <= Int(Int32.max))
    }
}
