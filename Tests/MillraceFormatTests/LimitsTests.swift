import MillraceFormat
import Testing

@Suite struct LimitsTests {
    @Test func limitsFitEachOther() {
        #expect(Limits.keyBytesMax < Limits.batchBytesMax)
        #expect(Limits.batchBytesMax <= Limits.decompressedBatchBytesMax)
        // The smallest record is 7 bytes; a full batch of them must fit the byte limit.
        #expect(Limits.recordsPerBatchMax * 7 + RecordBatchLayout.headerBytes <= Limits.batchBytesMax)
        #expect(Limits.partitionsPerTopicMax <= Limits.partitionsMax)
    }

    @Test func errorCodesAreUniqueAndNamed() {
        let codes = ErrorCode.allCases.map(\.rawValue)
        #expect(Set(codes).count == codes.count)
        #expect(Set(ErrorCode.allCases.map(\.description)).count == codes.count)
        #expect(ErrorCode.storageFull.isRetriable)
        #expect(!ErrorCode.corruptBatch.isRetriable)
    }
}
