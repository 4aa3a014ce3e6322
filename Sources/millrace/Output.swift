import Foundation
import MillraceFormat

/// Plain tables for people; JSON (one object) for scripts.
enum Output {
    /// Cells are shown as text: control characters (a newline that would start a forged row,
    /// a terminal escape), C1 controls and bidirectional overrides become `?`.
    static func table(_ headers: [String], _ rows: [[String]], rightAligned: Set<Int> = []) -> String {
        let rows = rows.map { $0.map { $0.printable() } }
        var widths = headers.map(\.count)
        for row in rows {
            for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) }
        }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { index, cell in
                let pad = String(repeating: " ", count: widths[index] - cell.count)
                return rightAligned.contains(index) ? pad + cell : cell + pad
            }.joined(separator: "  ").replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression)
        }
        return ([line(headers)] + rows.map(line)).joined(separator: "\n")
    }

    static func json(_ value: Any) -> String {
        let data = try! JSONSerialization.data(withJSONObject: value, options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }

    static func bytes(_ count: Int64) -> String { ByteCount.describe(count) }

    /// `2026-12-07T23:40:11Z`, for a time in ms since the epoch.
    static func time(milliseconds: Int64) -> String {
        ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(milliseconds) / 1_000))
    }

    static func count(_ value: Int64) -> String {
        let digits = String(value.magnitude)
        var grouped = ""
        for (index, character) in digits.enumerated() {
            if index > 0 && (digits.count - index) % 3 == 0 { grouped.append(",") }
            grouped.append(character)
        }
        return (value < 0 ? "-" : "") + grouped
    }

    static func standardError(_ text: String) {
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }

    static var standardErrorIsTerminal: Bool { isatty(2) != 0 }
    static var standardOutputIsTerminal: Bool { isatty(1) != 0 }

    /// "3 d 4 h", "2 h 5 min", "4 min 10 s", "12 s": an uptime as people read it.
    static func duration(milliseconds: Int64) -> String {
        let seconds = max(0, milliseconds / 1_000)
        let (days, hours, minutes) = (seconds / 86_400, seconds % 86_400 / 3_600, seconds % 3_600 / 60)
        if days > 0 { return "\(days) d \(hours) h" }
        if hours > 0 { return "\(hours) h \(minutes) min" }
        if minutes > 0 { return "\(minutes) min \(seconds % 60) s" }
        return "\(seconds) s"
    }
}

/// Prints one line saying what went wrong and what to do, and exits non-zero.
struct CommandFailure: Error, CustomStringConvertible {
    var message: String
    var exitCode: Int32 = 2
    var description: String { message }
}

extension MillraceError {
    var commandFailure: CommandFailure { CommandFailure(message: "error: \(message)") }
}

/// `--help` text pieces shared by every command.
enum Help {
    /// "Examples:" and one indented command per line, after a blank line.
    static func examples(_ commands: String...) -> String { "\n\n" + lines(commands) }

    /// The same, as the whole discussion (no blank line before it).
    static func exampleLines(_ commands: String...) -> String { lines(commands) }

    private static func lines(_ commands: [String]) -> String {
        "Examples:\n" + commands.map { "  " + $0 }.joined(separator: "\n")
    }
}
