import Foundation
import Logging

/// Everything `millrace serve` can be told, from four places, each over the one before:
/// built-in defaults, the config file (`--config FILE` or `MILLRACE_CONFIG`), environment
/// variables `MILLRACE_*`, and flags. `sources` says where each value came from
/// (`serve --print-config` shows it).
struct ServeSettings: Equatable {
    struct Key {
        /// In the config file: `data_dir = "/var/lib/millrace"`.
        var file: String
        /// As a flag, without the dashes: `data-dir`.
        var flag: String
        var env: String { "MILLRACE_" + file.uppercased() }
        var help: String
    }

    static let keys: [Key] = [
        Key(file: "data_dir", flag: "data-dir", help: "the data directory (created when missing)"),
        Key(file: "listen", flag: "listen", help: "the broker's address, HOST:PORT (port 0 picks a free one)"),
        Key(file: "http_listen", flag: "http-listen", help: "the metrics and health address, HOST:PORT, or none"),
        Key(file: "producer_idle_hours", flag: "producer-idle-hours", help: "forget an idle idempotent producer after this many hours (1...8760)"),
        Key(file: "dedup_filter_mib", flag: "dedup-filter-mib", help: "per topic with duplicate detection, its filter's memory (MiB, 1...1024)"),
        Key(file: "index_memory_mib", flag: "index-memory-mib", help: "memory for the key index's newest entries (MiB, 1...4096)"),
        Key(file: "log_level", flag: "log-level", help: "trace, debug, info, notice, warning, error or critical"),
        Key(file: "log_format", flag: "log-format", help: "text or json (one object per line)"),
    ]

    var values: [String: String] = [
        "data_dir": "./millrace-data", "listen": "127.0.0.1:7450", "http_listen": "127.0.0.1:7451", "producer_idle_hours": "168",
        "dedup_filter_mib": "16", "index_memory_mib": "64", "log_level": "info", "log_format": "text",
    ]
    var sources: [String: String] = [:]

    /// Reads the file (if any), then the environment, then the flags given.
    static func resolve(configFile: String?, environment: [String: String], flags: [String: String]) throws -> ServeSettings {
        var settings = ServeSettings()
        for key in keys { settings.sources[key.file] = "default" }
        if let configFile {
            let text: String
            do {
                text = try String(contentsOfFile: configFile, encoding: .utf8)
            } catch {
                throw SettingsError("cannot read the config file \(configFile): \(error.localizedDescription)")
            }
            for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let place = "\(configFile) line \(number + 1)"
                let content = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
                let trimmed = content.trimmingCharacters(in: .whitespaces)
                guard !trimmed.isEmpty else { continue }
                guard let equals = trimmed.firstIndex(of: "=") else {
                    throw SettingsError("\(place): expected `key = value`, got \(trimmed.prefix(80))")
                }
                let name = trimmed[..<equals].trimmingCharacters(in: .whitespaces)
                var value = trimmed[trimmed.index(after: equals)...].trimmingCharacters(in: .whitespaces)
                if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") { value = String(value.dropFirst().dropLast()) }
                guard let key = keys.first(where: { $0.file == name }) else {
                    throw SettingsError("\(place): unknown setting \(name); the settings are \(keys.map(\.file).joined(separator: ", "))")
                }
                try settings.set(key, value, source: place)
            }
        }
        for key in keys {
            if let value = environment[key.env] { try settings.set(key, value, source: key.env) }
        }
        for key in keys {
            if let value = flags[key.file] { try settings.set(key, value, source: "--" + key.flag) }
        }
        return settings
    }

    mutating func set(_ key: Key, _ value: String, source: String) throws {
        try Self.check(key, value, source: source)
        values[key.file] = value
        sources[key.file] = source
    }

    /// Each value's form, so a bad one is named with where it came from before anything starts.
    static func check(_ key: Key, _ value: String, source: String) throws {
        func integer(_ range: ClosedRange<Int>) throws {
            guard let number = Int(value), range.contains(number) else {
                throw SettingsError("\(source): \(key.file) takes \(range.lowerBound)...\(range.upperBound) (got \(value))")
            }
        }
        switch key.file {
        case "listen":
            guard hostPort(value) != nil else { throw SettingsError("\(source): listen takes HOST:PORT, for example 127.0.0.1:7450 (got \(value))") }
        case "http_listen":
            guard value == "none" || hostPort(value) != nil else {
                throw SettingsError("\(source): http_listen takes HOST:PORT, for example 127.0.0.1:7451, or none (got \(value))")
            }
        case "producer_idle_hours": try integer(1...8_760)
        case "dedup_filter_mib": try integer(1...1_024)
        case "index_memory_mib": try integer(1...4_096)
        case "log_level":
            guard Logger.Level(rawValue: value) != nil else {
                throw SettingsError("\(source): log_level takes trace, debug, info, notice, warning, error or critical (got \(value))")
            }
        case "log_format":
            guard value == "text" || value == "json" else { throw SettingsError("\(source): log_format takes text or json (got \(value))") }
        case "data_dir":
            guard !value.isEmpty else { throw SettingsError("\(source): data_dir is empty") }
        default: break
        }
    }

    static func hostPort(_ text: String) -> (host: String, port: Int)? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65_535).contains(port) else { return nil }
        let host = String(text[..<colon])
        return host.isEmpty ? nil : (host, port)
    }

    var dataDir: String { values["data_dir"] ?? "" }
    var listen: (host: String, port: Int) { Self.hostPort(values["listen"] ?? "") ?? ("127.0.0.1", 7450) }
    var httpListen: (host: String, port: Int)? { Self.hostPort(values["http_listen"] ?? "") }
    var producerIdleHours: Int { Int(values["producer_idle_hours"] ?? "") ?? 168 }
    var dedupFilterMib: Int { Int(values["dedup_filter_mib"] ?? "") ?? 16 }
    var indexMemoryMib: Int { Int(values["index_memory_mib"] ?? "") ?? 64 }
    var logLevel: Logger.Level { Logger.Level(rawValue: values["log_level"] ?? "") ?? .info }
    var logFormat: String { values["log_format"] ?? "text" }

    /// `key = value   # from SOURCE` lines: a config file that says what it is.
    var described: String {
        Self.keys.map { key in
            let value = values[key.file] ?? ""
            let shown = Int(value) != nil ? value : "\"\(value)\""
            return "\(key.file) = \(shown)".padding(toLength: 42, withPad: " ", startingAt: 0) + "# " + (sources[key.file] ?? "default")
        }.joined(separator: "\n")
    }
}

struct SettingsError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
