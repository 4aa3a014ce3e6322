/// Splits a byte stream into input lines, the way `millrace produce` reads them: a line ends
/// at `\n`; a `\r` before it (Windows line endings) and a UTF-8 byte-order mark at the very
/// start are dropped; empty lines are skipped but still counted. A line longer than
/// `lineBytesMax` is reported by number and skipped without being held in memory. Pure: chunks
/// in, lines out.
struct LineSplitter {
    enum Line: Equatable {
        case text(number: Int, bytes: [UInt8])
        case tooLong(number: Int, bytes: Int)
    }

    let lineBytesMax: Int
    private var partial: [UInt8] = []
    /// Bytes of the current line seen so far, when it is already over the limit.
    private var skippedBytes: Int?
    private var lineNumber = 1
    private var atStart = true
    private static let byteOrderMark: [UInt8] = [0xEF, 0xBB, 0xBF]

    init(lineBytesMax: Int) { self.lineBytesMax = lineBytesMax }

    /// Lines completed so far, empty ones included.
    var linesSeen: Int { lineNumber - 1 }

    /// Lines completed by `chunk`.
    mutating func feed(_ chunk: some Collection<UInt8>) -> [Line] {
        var lines: [Line] = []
        var bytes = Array(chunk)[...]
        if atStart {
            // The mark may arrive split across chunks: hold back a prefix of it.
            let candidate = partial + bytes
            if candidate.count < Self.byteOrderMark.count && Self.byteOrderMark.starts(with: candidate) {
                partial = Array(candidate)
                return []
            }
            atStart = false
            if candidate.starts(with: Self.byteOrderMark) {
                bytes = candidate.dropFirst(Self.byteOrderMark.count)
                partial = []
            } else if !partial.isEmpty {
                bytes = candidate[...]
                partial = []
            }
        }
        while let newline = bytes.firstIndex(of: UInt8(ascii: "\n")) {
            let piece = bytes[..<newline]
            bytes = bytes[(newline + 1)...]
            if let line = finishLine(with: piece) { lines.append(line) }
        }
        append(bytes)
        return lines
    }

    /// The last line, when the input does not end with `\n`.
    mutating func finish() -> [Line] {
        if atStart && !partial.isEmpty {
            atStart = false
            if partial == Self.byteOrderMark { partial = [] }
        }
        guard !partial.isEmpty || skippedBytes != nil else { return [] }
        return finishLine(with: []).map { [$0] } ?? []
    }

    private mutating func append(_ piece: ArraySlice<UInt8>) {
        if let skipped = skippedBytes {
            skippedBytes = skipped + piece.count
        } else if partial.count + piece.count > lineBytesMax + 1 {
            // +1: a `\r` that will be dropped may still come.
            skippedBytes = partial.count + piece.count
            partial = []
        } else {
            partial.append(contentsOf: piece)
        }
    }

    private mutating func finishLine(with piece: ArraySlice<UInt8>) -> Line? {
        append(piece)
        defer {
            partial.removeAll(keepingCapacity: true)
            skippedBytes = nil
            lineNumber += 1
        }
        if let skipped = skippedBytes { return .tooLong(number: lineNumber, bytes: skipped) }
        if partial.last == UInt8(ascii: "\r") { partial.removeLast() }
        if partial.count > lineBytesMax { return .tooLong(number: lineNumber, bytes: partial.count) }
        // A copy of exactly the line's size: the line outlives this call (until the broker
        // acknowledges it), and `partial` keeps its capacity for the next one.
        return partial.isEmpty ? nil : .text(number: lineNumber, bytes: Array(partial))
    }
}

/// Sets of line numbers, kept as merged ranges: which input lines were acknowledged.
struct LineRanges {
    private(set) var ranges: [ClosedRange<Int>] = []

    var count: Int { ranges.reduce(0) { $0 + $1.count } }

    mutating func insert(_ line: Int) {
        // The first range starting after `line`.
        var low = 0
        var high = ranges.count
        while low < high {
            let middle = (low + high) / 2
            if ranges[middle].lowerBound <= line { low = middle + 1 } else { high = middle }
        }
        if low > 0 && ranges[low - 1].contains(line) { return }
        let joinsBefore = low > 0 && ranges[low - 1].upperBound == line - 1
        let joinsAfter = low < ranges.count && ranges[low].lowerBound == line + 1
        switch (joinsBefore, joinsAfter) {
        case (true, true):
            ranges[low - 1] = ranges[low - 1].lowerBound...ranges[low].upperBound
            ranges.remove(at: low)
        case (true, false): ranges[low - 1] = ranges[low - 1].lowerBound...line
        case (false, true): ranges[low] = line...ranges[low].upperBound
        case (false, false): ranges.insert(line...line, at: low)
        }
    }

    /// "1-16,18,20-1000", or "none".
    var description: String {
        ranges.isEmpty ? "none" : ranges.map { $0.count == 1 ? "\($0.lowerBound)" : "\($0.lowerBound)-\($0.upperBound)" }.joined(separator: ",")
    }
}
