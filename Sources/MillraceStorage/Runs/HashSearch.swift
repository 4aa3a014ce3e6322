import MillraceFormat

/// Searching sorted 128-bit hashes. Hashes are spread evenly, so a position interpolated
/// from the high word is within a few places of the answer; a gallop from there keeps a
/// look-up logarithmic in the miss even for keys crafted to collide.
enum HashSearch {
    /// Where `value` would sit among `count` sorted values spread evenly over `from...to`.
    @inline(__always)
    static func interpolate(_ value: UInt64, from: UInt64, to: UInt64, count: Int) -> Int {
        guard count > 1, to > from, value > from else { return 0 }
        let offset = min(value, to) - from
        let (high, low) = UInt64(count).multipliedFullWidth(by: offset)
        let (quotient, _) = (to - from).dividingFullWidth((high, low))
        return min(count - 1, Int(quotient))
    }

    /// The last index in `0..<count` whose hash is not above `target`, -1 when none is:
    /// galloping out from `guess`, then halving.
    @inline(__always)
    static func lastNotAbove(_ target: DedupHash, count: Int, guess: Int, hashAt: (Int) -> DedupHash) -> Int {
        guard count > 0 else { return -1 }
        let start = min(max(guess, 0), count - 1)
        // hashAt(low) <= target (or low == -1); hashAt(high) > target (or high == count).
        var low: Int
        var high: Int
        var step = 1
        if hashAt(start) <= target {
            low = start
            high = start + 1
            while high < count, hashAt(high) <= target {
                low = high
                step *= 2
                high = low + step
            }
            high = min(high, count)
        } else {
            high = start
            low = start - 1
            while low >= 0, hashAt(low) > target {
                high = low
                step *= 2
                low = high - step
            }
            low = max(low, -1)
        }
        while high - low > 1 {
            let middle = (low + high) / 2
            if hashAt(middle) <= target { low = middle } else { high = middle }
        }
        return low
    }
}
