import Foundation
import Logging
import MillraceServer

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
        Key(file: "kafka_listen", flag: "kafka-listen", help: "the Kafka protocol's address, HOST:PORT, or none (docs/KAFKA.md)"),
        Key(file: "kafka_advertise", flag: "kafka-advertise", help: "the address Kafka clients are told to connect to, HOST:PORT (default: kafka_listen's)"),
        Key(file: "auth", flag: "auth", help: "whether clients log in: off, optional or required (docs/SECURITY.md)"),
        Key(file: "tls_cert", flag: "tls-cert", help: "the broker's certificate (PEM, with intermediates): TLS on every listener"),
        Key(file: "tls_key", flag: "tls-key", help: "the certificate's private key (PEM)"),
        Key(file: "tls_client_ca", flag: "tls-client-ca", help: "CAs of the client certificates asked for (mutual TLS; the subject is the principal)"),
        Key(file: "metrics_token_file", flag: "metrics-token-file", help: "a file whose first line is the token that reads /metrics from other machines"),
        Key(file: "producer_idle", flag: "producer-idle", help: "forget an idempotent producer that has not written for this long (1h...365d)"),
        Key(file: "dedup_filter_mib", flag: "dedup-filter-mib", help: "per topic with duplicate detection, its filter's memory (MiB, 1...1024)"),
        Key(file: "index_memory_mib", flag: "index-memory-mib", help: "memory for the key index's newest entries (MiB, 1...4096)"),
        Key(file: "log_level", flag: "log-level", help: "trace, debug, info, notice, warning, error or critical"),
        Key(file: "log_format", flag: "log-format", help: "text or json (one object per line)"),
    ]

    var values: [String: String] = [
        "data_dir": "./millrace-data", "listen": "127.0.0.1:7450", "http_listen": "127.0.0.1:7451", "kafka_listen": "none", "kafka_advertise": "", "auth": "off", "tls_cert": "", "tls_key": "", "tls_client_ca": "", "metrics_token_file": "",
        "producer_idle": "7d",
        "dedup_filter_mib": "16", "index_memory_mib": "64", "log_level": "info", "log_format": "text",
    ]
    var sources: [String: String] = [:]

    /// Settings renamed when they came to take durations: the old name (in a file, as
    /// MILLRACE_<OLD>, as --old-flag) is still read, a bare number in `unit`.
    static let renamed: [(old: String, key: String, unit: String, range: ClosedRange<Int>)] = [
        (old: "producer_idle_hours", key: "producer_idle", unit: "h", range: 1...8_760)
    ]

    /// `value` of the old setting `old`, as the new one takes it.
    static func converted(_ old: String, _ value: String, source: String) throws -> (key: Key, value: String) {
        guard let rename = renamed.first(where: { $0.old == old }), let key = keys.first(where: { $0.file == rename.key }) else {
            throw SettingsError("\(source): unknown setting \(old)")
        }
        guard let number = Int(value), rename.range.contains(number) else {
            throw SettingsError("\(source): \(old) takes \(rename.range.lowerBound)...\(rename.range.upperBound) (got \(value)); \(key.file) takes a duration such as 7d")
        }
        return (key, "\(number)\(rename.unit)")
    }

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
                if renamed.contains(where: { $0.old == name }) {
                    let (key, value) = try converted(name, value, source: place)
                    try settings.set(key, value, source: place)
                    continue
                }
                guard let key = keys.first(where: { $0.file == name }) else {
                    throw SettingsError("\(place): unknown setting \(name); the settings are \(keys.map(\.file).joined(separator: ", "))")
                }
                try settings.set(key, value, source: place)
            }
        }
        // Within each place, an old name first, so the new one wins when both are there.
        try settings.setRenamed(environment, name: { "MILLRACE_" + $0.uppercased() })
        for key in keys {
            if let value = environment[key.env] { try settings.set(key, value, source: key.env) }
        }
        try settings.setRenamed(flags, name: { $0 }, source: { "--" + $0.replacingOccurrences(of: "_", with: "-") })
        for key in keys {
            if let value = flags[key.file] { try settings.set(key, value, source: "--" + key.flag) }
        }
        return settings
    }

    /// The renamed settings `values` holds under their old names (as `name` spells them),
    /// each set as its new one, from `source` (default: the name).
    mutating func setRenamed(_ values: [String: String], name: (String) -> String, source: ((String) -> String)? = nil) throws {
        for rename in Self.renamed {
            guard let value = values[name(rename.old)] else { continue }
            let from = source?(rename.old) ?? name(rename.old)
            let (key, converted) = try Self.converted(rename.old, value, source: from)
            try set(key, converted, source: from)
        }
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
        case "kafka_listen":
            guard value == "none" || hostPort(value) != nil else {
                throw SettingsError("\(source): kafka_listen takes HOST:PORT, for example 0.0.0.0:9092, or none (got \(value))")
            }
        case "kafka_advertise":
            guard value.isEmpty || hostPort(value).map({ $0.port > 0 }) == true else {
                throw SettingsError("\(source): kafka_advertise takes HOST:PORT, for example plant-broker.example:9092 (got \(value))")
            }
        case "tls_cert", "tls_key", "tls_client_ca", "metrics_token_file":
            guard value.isEmpty || FileManager.default.isReadableFile(atPath: value) else {
                throw SettingsError("\(source): \(key.file) names \(value), which cannot be read")
            }
        case "auth":
            guard AuthMode(rawValue: value) != nil else { throw SettingsError("\(source): auth takes off, optional or required (got \(value))") }
        case "producer_idle":
            guard let milliseconds = Durations.parse(value), (3_600_000...365 * 86_400_000).contains(milliseconds) else {
                throw SettingsError("\(source): producer_idle takes a duration from 1h to 365d, such as 7d or 36h (got \(value))")
            }
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
    var kafkaListen: (host: String, port: Int)? { Self.hostPort(values["kafka_listen"] ?? "") }
    var kafkaAdvertise: (host: String, port: Int)? { Self.hostPort(values["kafka_advertise"] ?? "") }
    /// TLS files, when both a certificate and a key are given.
    var tls: TLSFiles? {
        let certificate = values["tls_cert"] ?? "", key = values["tls_key"] ?? "", clientCA = values["tls_client_ca"] ?? ""
        guard !certificate.isEmpty, !key.isEmpty else { return nil }
        return TLSFiles(certificate: certificate, key: key, clientCA: clientCA.isEmpty ? nil : clientCA)
    }

    /// A setting given without its partner, said as the error a person reads.
    var tlsProblem: String? {
        let certificate = values["tls_cert"] ?? "", key = values["tls_key"] ?? "", clientCA = values["tls_client_ca"] ?? ""
        if certificate.isEmpty != key.isEmpty { return "tls_cert and tls_key go together: give both (--tls-cert FILE --tls-key FILE) or neither" }
        if certificate.isEmpty && !clientCA.isEmpty { return "tls_client_ca needs TLS: give --tls-cert and --tls-key too" }
        return nil
    }

    var metricsTokenFile: String? { (values["metrics_token_file"] ?? "").isEmpty ? nil : values["metrics_token_file"] }

    var auth: AuthMode { AuthMode(rawValue: values["auth"] ?? "") ?? .off }
    var producerIdleMs: Int64 { Durations.parse(values["producer_idle"] ?? "") ?? 7 * 86_400_000 }
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
