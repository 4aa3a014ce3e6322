import ArgumentParser
import Foundation
import MillraceClient
import MillraceFormat
import MillraceSchema
import MillraceWire

/// `millrace dedup`: a topic's business-key duplicate detection.
struct DedupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dedup", abstract: "Duplicate detection by business key: check a key, turn it on or off for a topic.",
        subcommands: [Check.self, Set.self])

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Whether a topic holds a key inside its window, and where its first record is.", discussion: Help.exampleLines("millrace dedup check confirmations MES-L3-4711", "millrace dedup check confirmations MES-L3-4711 --json"))
        @OptionGroup var broker: BrokerOptions
        @Argument(help: "Topic name.") var topic: String
        @Argument(help: "The business key, as the dedup key spec reads it (a string's characters, a number's digits).") var key: String
        @Flag(help: "Print JSON instead of a sentence.") var json = false

        func run() async throws {
            let (topic, key) = (self.topic, self.key)
            let (check, status) = try await withClient(broker) { client in
                (try await client.dedupCheck(topic: topic, key: Array(key.utf8)), try await client.dedupStatus(topic: topic))
            }
            if json {
                var object: [String: Any] = ["topic": topic, "key": key, "found": check.found, "window_ms": status.windowMs]
                if check.found {
                    object["partition"] = Int(check.partition)
                    object["offset"] = check.offset
                    object["first_seen"] = JSONText.isoTime(milliseconds: check.firstSeenMs)
                }
                print(Output.json(object))
            } else if check.found {
                print("\(key): held; first record at \(topic) partition \(check.partition) offset \(check.offset), first seen \(JSONText.isoTime(milliseconds: check.firstSeenMs)) (window \(Durations.describe(status.windowMs)))")
            } else {
                print("\(key): not held by \(topic) (not seen in the last \(Durations.describe(status.windowMs)), or its record had no key)")
            }
        }
    }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Turn duplicate detection on for a topic (or change its key or window), or off with --off (the keys held are forgotten).", discussion: Help.exampleLines("millrace dedup set confirmations --key json:/event_id --window 24h", "millrace dedup set confirmations --off"))
        @OptionGroup var broker: BrokerOptions
        @Argument(help: "Topic name.") var topic: String
        @Option(help: "The business key: key (the record key), header:NAME, or json:/pointer (e.g. json:/event_id).") var key: String?
        @Option(help: "How long a key is remembered: e.g. 90s, 30m, 24h, 7d (at most 30d).") var window = "24h"
        @Flag(help: "Turn duplicate detection off.") var off = false
        @Flag(help: "Print one JSON object instead of a sentence.") var json = false

        func run() async throws {
            guard off != (key != nil) else {
                Output.standardError("error: give --key SPEC to turn duplicate detection on, or --off")
                throw ExitCode(2)
            }
            let windowMs = try DedupCommand.parse(key: key, window: window)
            let (topic, key) = (self.topic, self.key)
            try await withClient(broker) { try await $0.setDedupPolicy(topic: topic, key: key, windowMs: windowMs) }
            if json { return print(Output.json(["topic": topic, "key": key.map { $0 as Any } ?? NSNull(), "window_ms": key == nil ? 0 : windowMs])) }
            print(key.map { "\(topic): duplicates by \($0) are caught for \(Durations.describe(windowMs))" } ?? "\(topic): duplicate detection is off")
        }
    }

    /// Checks a key spec and window as the broker will; exits 2 with the reason if either is wrong.
    static func parse(key: String?, window: String) throws -> Int64 {
        guard let windowMs = Durations.parse(window), windowMs >= 1_000, windowMs <= Limits.dedupWindowMsMax else {
            Output.standardError("error: --dedup-window takes a duration from 1s to 30d, e.g. 24h or 7d (got \(window))")
            throw ExitCode(2)
        }
        if let key {
            do {
                let spec = try DedupKeySpec(parsing: key)
                if case .json(let pointer) = spec { _ = try JSONPointer(pointer) }
            } catch let error as MillraceError {
                Output.standardError("error: \(error.message)")
                throw ExitCode(2)
            }
        }
        return windowMs
    }
}

/// Durations as people write them: `1500ms`, `90s`, `30m`, `24h`, `7d`.
enum Durations {
    static func parse(_ text: String) -> Int64? {
        let units: [(String, Int64)] = [("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
        for (suffix, scale) in units where text.hasSuffix(suffix) {
            guard let number = Int64(text.dropLast(suffix.count)), number >= 0, number <= Int64.max / scale else { continue }
            return number * scale
        }
        return nil
    }

    /// A duration option's value in milliseconds, within `range`; otherwise a usage error
    /// (exit 2) naming the option, its range and `examples`.
    static func option(_ text: String, _ flag: String, within range: ClosedRange<Int64>, examples: String) throws -> Int64 {
        guard let milliseconds = parse(text), range.contains(milliseconds) else {
            Output.standardError("error: \(flag) takes a duration from \(describe(range.lowerBound)) to \(describe(range.upperBound)), such as \(examples) (got \(text))")
            throw ExitCode(2)
        }
        return milliseconds
    }

    /// An age for people: `42s`, `17m`, `3h 5m`, `2d 4h`.
    static func age(_ ms: Int64) -> String {
        let seconds = max(0, ms / 1_000)
        switch seconds {
        case ..<60: return "\(seconds)s"
        case ..<3_600: return "\(seconds / 60)m"
        case ..<86_400: return "\(seconds / 3_600)h \(seconds % 3_600 / 60)m"
        default: return "\(seconds / 86_400)d \(seconds % 86_400 / 3_600)h"
        }
    }

    static func describe(_ ms: Int64) -> String {
        for (suffix, scale) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] as [(String, Int64)] where ms >= scale && ms % scale == 0 {
            return "\(ms / scale)\(suffix)"
        }
        return "\(ms)ms"
    }
}
