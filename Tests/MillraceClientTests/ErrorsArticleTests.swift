import Foundation
import MillraceFormat
import Testing

/// The error table in the DocC article "Errors and retries" lists every `ErrorCode` but
/// `none`, with its number, name and `isRetriable`, so the article cannot drift from the code.
@Suite struct ErrorsArticleTests {
    @Test func theArticlesTableMatchesErrorCode() throws {
        let article = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Sources/MillraceClient/MillraceClient.docc/ErrorsAndRetries.md")
        let rows = try String(contentsOf: article, encoding: .utf8).split(separator: "\n").compactMap { line -> (Int16, String, Bool)? in
            let cells = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            guard cells.count >= 3, let number = Int16(cells[0]) else { return nil }
            return (number, cells[1], cells[2] == "yes")
        }
        let expected = ErrorCode.allCases.filter { $0 != .none }.map { ($0.rawValue, $0.description, $0.isRetriable) }
        #expect(rows.map(\.0) == expected.map(\.0))
        #expect(rows.map(\.1) == expected.map(\.1))
        #expect(rows.map(\.2) == expected.map(\.2))
    }
}
