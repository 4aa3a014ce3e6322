import MillraceFormat
import Foundation
import Logging

/// The broker's log lines on standard error, as text a person reads
/// (`2026-11-28T17:00:34.123Z info millrace: started ... key=value`) or as one JSON object per
/// line for a log shipper (`{"time":…,"level":"info","logger":"millrace","message":…}`).
struct BrokerLogHandler: LogHandler {
    enum Format { case text, json }

    let label: String
    let format: Format
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]
    private static let lock = Locked(())

    init(label: String, format: Format, level: Logger.Level) {
        self.label = label
        self.format = format
        logLevel = level
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        let time = JSONText.isoTime(milliseconds: Int64(Date().timeIntervalSince1970 * 1_000))
        let line = Self.line(format: format, time: time, level: event.level, label: label, message: "\(event.message)", metadata: merged)
        Self.lock.withLock { _ in FileHandle.standardError.write(Data(line.utf8)) }
    }

    static func line(format: Format, time: String, level: Logger.Level, label: String, message: String, metadata: Logger.Metadata) -> String {
        let keys = metadata.keys.sorted()
        switch format {
        case .text:
            let fields = keys.map { " \($0)=\(metadata[$0].map { "\($0)" } ?? "")" }.joined()
            return "\(time) \(level) \(label): \(message)\(fields)\n"
        case .json:
            var out: [UInt8] = Array("{\"time\":".utf8)
            JSONText.appendString(Array(time.utf8), to: &out)
            out += Array(",\"level\":".utf8)
            JSONText.appendString(Array("\(level)".utf8), to: &out)
            out += Array(",\"logger\":".utf8)
            JSONText.appendString(Array(label.utf8), to: &out)
            out += Array(",\"message\":".utf8)
            JSONText.appendString(Array(message.utf8), to: &out)
            for key in keys where !["time", "level", "logger", "message"].contains(key) {
                out.append(UInt8(ascii: ","))
                JSONText.appendString(Array(key.utf8), to: &out)
                out.append(UInt8(ascii: ":"))
                JSONText.appendString(Array("\(metadata[key].map { "\($0)" } ?? "")".utf8), to: &out)
            }
            out += Array("}\n".utf8)
            return String(decoding: out, as: UTF8.self)
        }
    }
}
