import Foundation
import MillraceFormat
import MillraceKafka
import MillraceWire
import Testing

/// Tables in the docs that mirror code, parsed and compared with the code, so a doc cannot
/// drift: a row missing, a row extra or a value wrong fails here. The code is the truth; when
/// one of these fails, correct the doc (or, for a limit kept off the wire, `internalLimits`).
@Suite struct DocTableTests {
    /// PROTOCOL.md, "APIs": every `ApiKey` in order, its name, and every version it speaks.
    @Test func protocolApiTableMatchesApiKey() throws {
        let rows = try Markdown.table(in: "docs/PROTOCOL.md", under: "## APIs")
        let expected = ApiKey.allCases.map { api -> [String] in
            let name = String(describing: api)
            return ["\(api.rawValue)", name.prefix(1).uppercased() + name.dropFirst(), api.versions.map { "\($0)" }.joined(separator: ", ")]
        }
        #expect(rows == expected)
    }

    /// KAFKA.md, "What is served": every Kafka API the listener serves, by key, at exactly the
    /// versions ApiVersions advertises.
    @Test func kafkaApiTableMatchesWhatIsServed() throws {
        let rows = try Markdown.table(in: "docs/KAFKA.md", under: "## What is served")
        let expected = KafkaApiVersions.advertised.map { range -> [String] in
            let name = KafkaApiKey(rawValue: range.apiKey).map { String(describing: $0) } ?? "?"
            let title = name.prefix(1).uppercased() + name.dropFirst()
            return ["\(range.apiKey)", title, "\(range.minVersion)–\(range.maxVersion)"]
        }
        #expect(rows == expected)
    }

    /// OPERATIONS.md lists codes 0–21 and points to PROTOCOL.md for a range, which lists the
    /// rest: together, every `ErrorCode` once, with its name and whether a retry can help
    /// (a cell starting "yes", or "sometimes", says it can).
    @Test func errorCodeTablesMatchErrorCode() throws {
        let operations = try Markdown.table(in: "docs/OPERATIONS.md", under: "## Error codes")
        let protocolRows = try Markdown.table(in: "docs/PROTOCOL.md", under: "## Error codes")
        let retriable = { (cell: String) in cell.hasPrefix("yes") || cell == "sometimes" }
        let rows = (operations + protocolRows).compactMap { cells -> ErrorRow? in
            guard cells.count == 4, let code = Int16(cells[0]) else { return nil }
            return ErrorRow(code: code, name: Markdown.unquoted(cells[1]), retriable: retriable(cells[3]))
        }
        let expected = ErrorCode.allCases.map { ErrorRow(code: $0.rawValue, name: $0.description, retriable: $0.isRetriable) }
        #expect(rows == expected)

        // OPERATIONS.md's pointer rows ("22–42") cover exactly the codes PROTOCOL.md lists.
        let pointed = operations.flatMap { cells -> [Int16] in
            let bounds = cells[0].split(separator: "–").compactMap { Int16($0) }
            return bounds.count == 2 ? Array(bounds[0]...bounds[1]) : []
        }
        #expect(pointed == protocolRows.compactMap { Int16($0[0]) })
    }

    /// The DocC article "Errors and retries" lists every `ErrorCode` but `none`.
    @Test func errorsArticleTableMatchesErrorCode() throws {
        let rows = try Markdown.table(in: "Sources/MillraceClient/MillraceClient.docc/ErrorsAndRetries.md", under: "Retriable: **yes** when `isRetriable` is true.")
            .map { ErrorRow(code: Int16($0[0]) ?? -1, name: $0[1], retriable: $0[2] == "yes") }
        let expected = ErrorCode.allCases.filter { $0 != .none }.map { ErrorRow(code: $0.rawValue, name: $0.description, retriable: $0.isRetriable) }
        #expect(rows == expected)
    }

    /// PROTOCOL.md, "Limits": each row a name from Limits.swift and its exact value; every
    /// limit in Limits.swift is either there or named in `internalLimits`, never both.
    @Test func protocolLimitsTableMatchesLimits() throws {
        let rows = try Markdown.table(in: "docs/PROTOCOL.md", under: "## Limits")
        var documented: [String: Int64] = [:]
        for cells in rows {
            let name = Markdown.unquoted(cells[0])
            let value = Int64(cells[1].replacingOccurrences(of: ",", with: ""))
            #expect(value != nil, "\(name): the value cell \"\(cells[1])\" is not a number")
            #expect(documented[name] == nil, "\(name) is listed twice")
            documented[name] = value ?? -1
        }
        for (name, value) in documented {
            #expect(Self.wireLimits[name] == value, "PROTOCOL.md says \(name) is \(value); Limits says \(Self.wireLimits[name].map { "\($0)" } ?? "nothing")")
        }
        #expect(Set(documented.keys) == Set(Self.wireLimits.keys))
        let declared = try Markdown.declaredLimits()
        #expect(Set(Self.wireLimits.keys).isDisjoint(with: Self.internalLimits.keys))
        #expect(Set(Self.wireLimits.keys).union(Self.internalLimits.keys) == declared, "a limit in Limits.swift is neither in PROTOCOL.md nor internal")
    }

    /// OPERATIONS.md, "Limits": a row names the limits its value shows (" / " between
    /// several), and each value is that limit's, in its unit (the upper end of a range).
    @Test func operationsLimitsTableMatchesLimits() throws {
        let rows = try Markdown.table(in: "docs/OPERATIONS.md", under: "## Limits")
        let limits = Self.wireLimits.merging(Self.internalLimits) { first, _ in first }
        var named = 0
        for cells in rows where cells[3] != "—" {
            let names = cells[3].components(separatedBy: " / ").map(Markdown.unquoted)
            let values = cells[1].components(separatedBy: " / ").map(Markdown.quantity)
            #expect(names.count == values.count, "\(cells[0]): \(names.count) names, \(values.count) values")
            for (name, value) in zip(names, values) {
                #expect(limits[name] != nil && value == limits[name], "OPERATIONS.md says \(name) is \(value.map { "\($0)" } ?? cells[1])")
                named += 1
            }
        }
        // A named row dropped (or a name added) changes this count: update it with the table.
        #expect(named == 30)
    }

    /// ARCHITECTURE.md, "Modules": each target's imports are the dependencies Package.swift
    /// gives it (short names like "Storage" stand for the Millrace module).
    @Test func architectureModuleTableMatchesPackage() throws {
        let rows = try Markdown.table(in: "docs/ARCHITECTURE.md", under: "## Modules")
        let package = try Markdown.read("Package.swift")
        #expect(rows.count == 10)  // the Swift targets that ship (not C shims, test support or the crash writer)
        for cells in rows {
            let target = Markdown.unquoted(String(cells[0].split(separator: " ")[0]))
            let documented = Set(
                cells[2].split(separator: ",").map { entry -> String in
                    let name = Markdown.unquoted(String(entry.trimmingCharacters(in: .whitespaces).split(separator: " ")[0]))
                    return ["Storage", "Format", "Server", "Wire", "Client", "Schema", "Security"].contains(name) ? "Millrace" + name : name
                })
            #expect(try documented == Markdown.dependencies(of: target, in: package), "\(target)")
        }
    }

    struct ErrorRow: Equatable, CustomStringConvertible {
        var code: Int16
        var name: String
        var retriable: Bool
        var description: String { "\(code) \(name) \(retriable ? "retriable" : "not retriable")" }
    }

    /// Limits a peer can meet on the wire: PROTOCOL.md lists exactly these.
    static let wireLimits: [String: Int64] = [
        "frameBytesMax": Int64(Limits.frameBytesMax), "frameBytesBeforeLogin": Int64(Limits.frameBytesBeforeLogin), "responseFrameBytesMax": Int64(Limits.responseFrameBytesMax),
        "fetchBytesMax": Int64(Limits.fetchBytesMax), "fetchWaitMsMax": Int64(Limits.fetchWaitMsMax), "inFlightRequestsMax": Int64(Limits.inFlightRequestsMax),
        "stringBytesMax": Int64(Limits.stringBytesMax), "pathBytesMax": Int64(Limits.pathBytesMax),
        "topicNameBytesMax": Int64(Limits.topicNameBytesMax), "partitionsPerTopicMax": Int64(Limits.partitionsPerTopicMax),
        "partitionsMax": Int64(Limits.partitionsMax), "batchBytesMax": Int64(Limits.batchBytesMax),
        "decompressedBatchBytesMax": Int64(Limits.decompressedBatchBytesMax), "recordsPerBatchMax": Int64(Limits.recordsPerBatchMax),
        "keyBytesMax": Int64(Limits.keyBytesMax), "headersPerRecordMax": Int64(Limits.headersPerRecordMax),
        "groupNameBytesMax": Int64(Limits.groupNameBytesMax), "memberIDBytesMax": Int64(Limits.memberIDBytesMax),
        "groupsMax": Int64(Limits.groupsMax), "groupMembersMax": Int64(Limits.groupMembersMax),
        "offsetMetadataBytesMax": Int64(Limits.offsetMetadataBytesMax), "errorMessageBytesMax": Int64(Limits.errorMessageBytesMax),
        "outcomePathBytesMax": Int64(Limits.outcomePathBytesMax), "outcomeRuleBytesMax": Int64(Limits.outcomeRuleBytesMax),
        "outcomeMessageBytesMax": Int64(Limits.outcomeMessageBytesMax), "topicsPerRequestMax": Int64(Limits.topicsPerRequestMax),
        "partitionsPerRequestMax": Int64(Limits.partitionsPerRequestMax), "schemaBytesMax": Int64(Limits.schemaBytesMax),
        "schemaDepthMax": Int64(Limits.schemaDepthMax), "schemaNodesMax": Int64(Limits.schemaNodesMax),
        "schemaRequiredMax": Int64(Limits.schemaRequiredMax), "patternLengthMax": Int64(Limits.patternLengthMax),
        "patternStatesMax": Int64(Limits.patternStatesMax), "schemaApplicatorFanOutMax": Int64(Limits.schemaApplicatorFanOutMax),
        "schemaVersionsPerTopicMax": Int64(Limits.schemaVersionsPerTopicMax), "jsonDepthMax": Int64(Limits.jsonDepthMax),
        "dedupKeySpecBytesMax": Int64(Limits.dedupKeySpecBytesMax), "dedupWindowMsMax": Limits.dedupWindowMsMax,
        "indexFieldsMax": Int64(Limits.indexFieldsMax), "indexLinksMax": Int64(Limits.indexLinksMax),
        "traceHitsPerPageMax": Int64(Limits.traceHitsPerPageMax), "producerIdsUnusedMax": Int64(Limits.producerIdsUnusedMax),
        "producerUnusedIdleMs": Limits.producerUnusedIdleMs,
    ]

    /// Limits inside the broker (memory budgets, transaction sizes, work bounds): a peer does
    /// not meet them as a refusal, so PROTOCOL.md leaves them to OPERATIONS.md and DECISIONS.md.
    static let internalLimits: [String: Int64] = [
        "pendingWritesMax": Int64(Limits.pendingWritesMax), "timeIndexIntervalOffsets": Limits.timeIndexIntervalOffsets,
        "groupCommitBytesMax": Int64(Limits.groupCommitBytesMax), "connectionRequestBytesMax": Int64(Limits.connectionRequestBytesMax),
        "connectionResponseBytesMax": Int64(Limits.connectionResponseBytesMax), "brokerRequestBytesMax": Int64(Limits.brokerRequestBytesMax),
        "brokerResponseBytesMax": Int64(Limits.brokerResponseBytesMax), "connectionsMax": Int64(Limits.connectionsMax),
        "retentionBatchesPerPassMax": Int64(Limits.retentionBatchesPerPassMax), "dedupTopicsMax": Int64(Limits.dedupTopicsMax),
        "dedupKeyBytesMax": Int64(Limits.dedupKeyBytesMax), "indexValuesPerRecordMax": Int64(Limits.indexValuesPerRecordMax),
        "httpConnectionsMax": Int64(Limits.httpConnectionsMax), "httpConnectionResponseBytesMax": Int64(Limits.httpConnectionResponseBytesMax),
        "traceEntriesPerPageMax": Int64(Limits.traceEntriesPerPageMax), "walkIndexEntriesMax": Int64(Limits.walkIndexEntriesMax),
        "producerActivityStepMs": Limits.producerActivityStepMs, "producerExpiryPerPassMax": Int64(Limits.producerExpiryPerPassMax),
        "producerEvictionsPerInitMax": Int64(Limits.producerEvictionsPerInitMax),
        "validationStepsPerValueMax": Int64(Limits.validationStepsPerValueMax),
        "validationStepsPerRequestMax": Int64(Limits.validationStepsPerRequestMax),
        "schemaCompatibilityStepsMax": Int64(Limits.schemaCompatibilityStepsMax),
        "schemaCompiledCacheBytesMax": Int64(Limits.schemaCompiledCacheBytesMax),
        "quarantineHeadersBytesMax": Int64(Limits.quarantineHeadersBytesMax),
    ]
}

/// Reads the package's own files and the pipe tables in its markdown.
enum Markdown {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func read(_ path: String) throws -> String {
        try String(contentsOf: root.appendingPathComponent(path), encoding: .utf8)
    }

    /// The body rows (header and separator dropped) of the first table after the line
    /// `heading`, each as its trimmed cells. Throws if there is no such line or table.
    static func table(in path: String, under heading: String) throws -> [[String]] {
        let lines = try read(path).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard let start = lines.firstIndex(of: heading) else { throw DocError("\(path) has no line \"\(heading)\"") }
        guard let first = lines[start...].firstIndex(where: { $0.hasPrefix("|") }) else { throw DocError("\(path) has no table after \"\(heading)\"") }
        let table = lines[first...].prefix { $0.hasPrefix("|") }
        return table.dropFirst(2).map { line in
            line.split(separator: "|", omittingEmptySubsequences: false).dropFirst().dropLast().map { $0.trimmingCharacters(in: .whitespaces) }
        }
    }

    /// The number a value cell starts with (after "…" when it gives a range), in its unit:
    /// "1 MiB", "1…65,536", "4,096 B", "1 s…30 days" (in ms). nil when there is none.
    static func quantity(_ cell: String) -> Int64? {
        let text = cell.split(separator: "…", maxSplits: 1).last.map(String.init) ?? cell
        let digits = text.prefix { $0.isNumber || $0 == "," }
        guard let number = Int64(digits.replacingOccurrences(of: ",", with: "")) else { return nil }
        let unit = text.dropFirst(digits.count).trimmingCharacters(in: .whitespaces).prefix { $0.isLetter }
        let scale: [Substring: Int64] = ["KiB": 1 << 10, "MiB": 1 << 20, "days": 86_400_000]
        return number * (scale[unit] ?? 1)
    }

    /// `name` without its backticks.
    static func unquoted(_ cell: String) -> String {
        cell.trimmingCharacters(in: CharacterSet(charactersIn: "`"))
    }

    /// Every `public static let` in Limits.swift.
    static func declaredLimits() throws -> Set<String> {
        let source = try read("Sources/MillraceFormat/Limits.swift")
        let pattern = try NSRegularExpression(pattern: #"public static let (\w+)"#)
        return Set(
            pattern.matches(in: source, range: NSRange(source.startIndex..., in: source)).compactMap { match in
                Range(match.range(at: 1), in: source).map { String(source[$0]) }
            })
    }

    /// The targets and products a target in Package.swift depends on: every string in its
    /// `dependencies: [...]` but the packages products come from.
    static func dependencies(of target: String, in package: String) throws -> Set<String> {
        let declaration = try NSRegularExpression(pattern: #"\.(target|executableTarget)\(\s*name: ""# + NSRegularExpression.escapedPattern(for: target) + "\"")
        guard let match = declaration.firstMatch(in: package, range: NSRange(package.startIndex..., in: package)),
            let name = Range(match.range, in: package),
            let list = package.range(of: "dependencies: [", range: name.upperBound..<package.endIndex)
        else { return [] }
        var depth = 1
        var end = list.upperBound
        while depth > 0, end < package.endIndex {
            if package[end] == "[" { depth += 1 }
            if package[end] == "]" { depth -= 1 }
            end = package.index(after: end)
        }
        let text = String(package[list.upperBound..<end])
        let pattern = try NSRegularExpression(pattern: #"(package: )?"([^"]+)""#)
        return Set(
            pattern.matches(in: text, range: NSRange(text.startIndex..., in: text)).compactMap { match in
                guard match.range(at: 1).location == NSNotFound, let range = Range(match.range(at: 2), in: text) else { return nil }
                return String(text[range])
            })
    }

    struct DocError: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }
}
