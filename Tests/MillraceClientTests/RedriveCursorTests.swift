import MillraceFormat
import MillraceWire
import Testing

@testable import MillraceClient

/// Re-drive's cursor: what it commits, what it reads back (from the broker, so anything), and
/// that it only ever moves forward.
@Suite struct RedriveCursorTests {
    func committed(_ offset: Int64, _ metadata: String) -> RedriveCursor {
        RedriveCursor(committed: OffsetEntry(partition: 0, offset: offset, metadata: metadata), logStart: 0)
    }

    @Test func aRunKeepsWhatIsStillInvalidAndMovesPastTheRest() {
        var cursor = RedriveCursor(committed: nil, logStart: 2)
        #expect(cursor == RedriveCursor(next: 2) && cursor.parked(end: 10) == [2...9])
        cursor.looked(at: 0, through: 9, stillInvalid: [3, 4, 5, 8])
        #expect(cursor == RedriveCursor(next: 10, stillInvalid: [3...5, 8...8]))
        #expect(cursor.metadata().text == "redrive; still invalid: 3-5,8" && cursor.metadata().released.isEmpty)
        #expect(committed(10, cursor.metadata().text) == cursor)
        // The next run fixes 4 and finds 12 still invalid; nothing before 10 moves the cursor back.
        #expect(cursor.parked(end: 14) == [3...5, 8...8, 10...13])
        cursor.looked(at: 0, through: 13, stillInvalid: [3, 5, 8, 12])
        #expect(cursor == RedriveCursor(next: 14, stillInvalid: [3...3, 5...5, 8...8, 12...12]))
        // --from 5 looks at 5... only: 3 stays as it was.
        cursor.looked(at: 5, through: 13, stillInvalid: [])
        #expect(cursor == RedriveCursor(next: 14, stillInvalid: [3...3]))
        // A run stopped early (through before the cursor) never moves it back.
        cursor.looked(at: 0, through: 1, stillInvalid: [])
        #expect(cursor.next == 14 && cursor.stillInvalid == [3...3])
        // An older build's cursor names nothing still invalid; retention drops what it took.
        #expect(committed(7, "redrive") == RedriveCursor(next: 7))
        #expect(RedriveCursor(committed: OffsetEntry(partition: 0, offset: 9, metadata: "redrive; still invalid: 1-4,6"), logStart: 3) == RedriveCursor(next: 9, stillInvalid: [3...4, 6...6]))
    }

    /// Metadata is the broker's answer: whatever it says, no trap, and only ranges that can
    /// be true (below the cursor, lower ≤ upper) are believed.
    @Test func metadataThatDoesNotParseIsReadAsNothingStillInvalid() {
        #expect(committed(-1, "redrive; still invalid: 1") == RedriveCursor(next: 0))
        let hostile = "redrive; still invalid: 9-3,abc,-,--,5-99999999999999999999,-7,2-,,4-4-4,8-20,1-1,0-0"
        #expect(committed(10, hostile) == RedriveCursor(next: 10, stillInvalid: [0...1]))
        #expect(committed(Int64.max, "redrive; still invalid: \(Int64.max - 1)") == RedriveCursor(next: Int64.max, stillInvalid: [(Int64.max - 1)...(Int64.max - 1)]))
    }

    /// Past `offsetMetadataBytesMax` the oldest still-invalid ranges are let go (and named),
    /// never the cursor.
    @Test func tooManyScatteredRecordsLetTheOldestGo() {
        var cursor = RedriveCursor(next: 0)
        let scattered = (0..<2_000).map { Int64($0) * 1_000_000 }
        cursor.looked(at: 0, through: scattered.last! + 1, stillInvalid: scattered)
        let (text, released) = cursor.metadata()
        #expect(text.utf8.count <= Limits.offsetMetadataBytesMax && !released.isEmpty)
        #expect(released.first == 0...0 && released.count < scattered.count)
        let kept = committed(cursor.next, text)
        #expect(kept.next == cursor.next && kept.stillInvalid == Array(cursor.stillInvalid.dropFirst(released.count)))
    }
}
