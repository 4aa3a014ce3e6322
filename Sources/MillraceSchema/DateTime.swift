/// RFC 3339 `date-time` (JSON Schema's `format: date-time`): `YYYY-MM-DDTHH:MM:SS[.frac]`
/// then `Z` or `±HH:MM`; `T` and `Z` in either case; days checked against the month (leap
/// years included); a leap second (`:60`) only at 23:59 UTC.
enum DateTime {
    static func isValid(_ text: ArraySlice<UInt8>) -> Bool {
        text.withUnsafeBufferPointer { isValid($0) }
    }

    static func isValid(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        guard bytes.count >= 20 else { return false }
        @inline(__always) func digits(_ at: Int, _ count: Int) -> Int? {
            guard at + count <= bytes.count else { return nil }
            var value = 0
            for offset in at..<at + count {
                let digit = bytes[offset] &- UInt8(ascii: "0")
                guard digit < 10 else { return nil }
                value = value * 10 + Int(digit)
            }
            return value
        }
        guard let year = digits(0, 4), bytes[4] == UInt8(ascii: "-"), let month = digits(5, 2), bytes[7] == UInt8(ascii: "-"),
            let day = digits(8, 2), bytes[10] == UInt8(ascii: "T") || bytes[10] == UInt8(ascii: "t"),
            let hour = digits(11, 2), bytes[13] == UInt8(ascii: ":"), let minute = digits(14, 2), bytes[16] == UInt8(ascii: ":"),
            let second = digits(17, 2)
        else { return false }
        guard (1...12).contains(month), day >= 1, day <= daysIn(month, year), hour <= 23, minute <= 59, second <= 60 else { return false }
        var at = 19
        if at < bytes.count && bytes[at] == UInt8(ascii: ".") {
            at += 1
            let start = at
            while at < bytes.count, bytes[at] >= UInt8(ascii: "0") && bytes[at] <= UInt8(ascii: "9") { at += 1 }
            guard at > start else { return false }
        }
        guard at < bytes.count else { return false }
        var offsetMinutes = 0
        switch bytes[at] {
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            at += 1
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            guard let offsetHour = digits(at + 1, 2), at + 3 < bytes.count, bytes[at + 3] == UInt8(ascii: ":"), let offsetMinute = digits(at + 4, 2),
                offsetHour <= 23, offsetMinute <= 59
            else { return false }
            offsetMinutes = (offsetHour * 60 + offsetMinute) * (bytes[at] == UInt8(ascii: "+") ? 1 : -1)
            at += 6
        default:
            return false
        }
        guard at == bytes.count else { return false }
        if second == 60 {
            // A leap second is 23:59:60 in UTC.
            let utcMinutes = ((hour * 60 + minute - offsetMinutes) % 1_440 + 1_440) % 1_440
            return utcMinutes == 23 * 60 + 59
        }
        return true
    }

    static func daysIn(_ month: Int, _ year: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }
}
