import Foundation
import MillraceFormat
@testable import MillraceStorage

/// A clock the test moves by hand.
final class TestClock: MillraceClock, @unchecked Sendable {
    private let now: Locked<Int64>
    init(_ start: Int64 = 1_700_000_000_000) { now = Locked(start) }
    func nowMilliseconds() -> Int64 { now.withLock { $0 } }
    func advance(by milliseconds: Int64) { now.withLock { $0 += milliseconds } }
}

/// A fresh directory under the system temp dir, removed by `remove()`.
struct TemporaryDirectory {
    let path: String

    init() {
        var template = Array((NSTemporaryDirectory() + "millrace-test-XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed")
        path = String(cString: made!)
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

func testOptions(clock: TestClock = TestClock()) -> Storage.Options {
    var options = Storage.Options()
    options.clock = clock
    options.retentionCheckIntervalMs = nil
    options.initialMapSizeBytes = 64 << 20
    options.reserveBytes = 1 << 20
    return options
}

/// Opens storage on a fresh directory, runs `body`, closes and removes it.
func withStorage(
    clock: TestClock = TestClock(), options: Storage.Options? = nil, _ body: (Storage, TemporaryDirectory) async throws -> Void
) async throws {
    let directory = TemporaryDirectory()
    defer { directory.remove() }
    let storage = try Storage.open(directory: directory.path, options: options ?? testOptions(clock: clock))
    defer { storage.close() }
    try await body(storage, directory)
}

func batch(_ values: [String], timestamp: Int64 = 1_700_000_000_000, keys: [String]? = nil) -> [UInt8] {
    try! RecordBatch(timestamp: timestamp, values: values.map { Array($0.utf8) }, keys: keys?.map { Array($0.utf8) }).encoded()
}

func values(in result: ReadResult, from offset: Int64 = 0) throws -> [String] {
    var values: [String] = []
    var index = 0
    try result.bytes.withUnsafeBytes { raw in
        while index < raw.count {
            let header = try RecordBatchHeader(parsing: UnsafeRawBufferPointer(rebasing: raw[index...]))
            let one = UnsafeRawBufferPointer(rebasing: raw[index..<(index + header.totalBytes)])
            let decoded = try RecordBatch.decode(one)
            for record in decoded.records where header.baseOffset + Int64(record.offsetDelta) >= offset {
                values.append(String(decoding: record.value ?? [], as: UTF8.self))
            }
            index += header.totalBytes
        }
    }
    return values
}

func errorCode(_ body: () async throws -> Void) async -> ErrorCode? {
    do {
        try await body()
        return nil
    } catch let error as MillraceError {
        return error.code
    } catch {
        return .unexpected
    }
}
