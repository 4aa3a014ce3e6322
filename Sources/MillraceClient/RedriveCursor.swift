import MillraceFormat
import MillraceWire

/// Where `millrace quarantine redrive` stands on a quarantine, kept as the committed offset of group
/// `millrace.redrive` on it: every record before `next` has been looked at, and the metadata
/// names those of them that were still invalid then (`stillInvalid`: they stay parked, and
/// every run looks at them again). Every other record before `next` was re-driven or found
/// already in the topic. So the cursor only moves forward, and nothing is parked twice.
package struct RedriveCursor: Equatable, Sendable {
    package var next: Int64
    /// Sorted, disjoint, each below `next`.
    package var stillInvalid: [ClosedRange<Int64>]

    package static let metadataPrefix = "redrive"
    package static let stillInvalidPrefix = "redrive; still invalid: "

    package init(next: Int64, stillInvalid: [ClosedRange<Int64>] = []) {
        self.next = next
        self.stillInvalid = stillInvalid
    }

    /// From a committed offset (-1 or none: nothing looked at yet, so the log start). The
    /// metadata comes from the broker: what does not parse is read as no still-invalid records.
    package init(committed: OffsetEntry?, logStart: Int64) {
        guard let committed, committed.offset >= 0 else {
            self.init(next: logStart)
            return
        }
        var ranges: [ClosedRange<Int64>] = []
        if committed.metadata.hasPrefix(Self.stillInvalidPrefix) {
            for item in committed.metadata.dropFirst(Self.stillInvalidPrefix.count).split(separator: ",") {
                let ends = item.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false).map { Int64($0) }
                guard let lower = ends.first ?? nil, let upper = ends.last ?? nil, lower <= upper, upper < committed.offset else { continue }
                ranges.append(lower...upper)
            }
        }
        self.init(next: max(committed.offset, logStart), stillInvalid: Self.normalized(ranges, from: logStart))
    }

    /// The records still parked: the still-invalid ones, then everything from `next`.
    package func parked(end: Int64) -> [ClosedRange<Int64>] {
        next < end ? stillInvalid + [next...(end - 1)] : stillInvalid
    }

    /// After a run looked at every parked record in `lower...through` (`lower` is where it
    /// started: the cursor's records, or `--from`): those it found still invalid stay, the
    /// others before `through` are done.
    package mutating func looked(at lower: Int64, through: Int64, stillInvalid found: [Int64]) {
        var kept: [ClosedRange<Int64>] = []
        for range in stillInvalid {
            if range.lowerBound < lower { kept.append(range.lowerBound...min(range.upperBound, lower - 1)) }
            if range.upperBound > through { kept.append(max(range.lowerBound, through + 1)...range.upperBound) }
        }
        kept += found.map { $0...$0 }
        stillInvalid = Self.normalized(kept, from: 0)
        next = max(next, through + 1)
    }

    /// The metadata to commit, within `Limits.offsetMetadataBytesMax`; past it the oldest
    /// still-invalid ranges are let go (returned, to be named), never the cursor.
    package func metadata() -> (text: String, released: [ClosedRange<Int64>]) {
        var ranges = stillInvalid[...]
        var released: [ClosedRange<Int64>] = []
        while true {
            let text = ranges.isEmpty ? Self.metadataPrefix : Self.stillInvalidPrefix + ranges.map(Self.text).joined(separator: ",")
            if text.utf8.count <= Limits.offsetMetadataBytesMax { return (text, released) }
            released.append(ranges.removeFirst())
        }
    }

    package static func text(_ range: ClosedRange<Int64>) -> String {
        range.lowerBound == range.upperBound ? "\(range.lowerBound)" : "\(range.lowerBound)-\(range.upperBound)"
    }

    /// Sorted, merged where they touch, nothing below `from`.
    package static func normalized(_ ranges: [ClosedRange<Int64>], from: Int64) -> [ClosedRange<Int64>] {
        var merged: [ClosedRange<Int64>] = []
        for range in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) where range.upperBound >= from {
            let range = max(range.lowerBound, from)...range.upperBound
            if let last = merged.last, range.lowerBound <= last.upperBound + 1 {
                merged[merged.count - 1] = last.lowerBound...max(last.upperBound, range.upperBound)
            } else {
                merged.append(range)
            }
        }
        return merged
    }
}
