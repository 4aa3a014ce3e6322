import ArgumentParser
import Foundation
import MillraceFormat

@main
struct MillraceBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "millrace-bench",
        abstract: "Millrace workload generators and benchmarks (run a release build: swift build -c release).",
        subcommands: [StorageBench.self, E2EBench.self, GroupsBench.self, FloodBench.self, SchemaBench.self, DedupBench.self, TraceBench.self, MetricsBench.self, DictionaryBench.self, CLIBench.self, LongPollBench.self, VerifyBench.self, KafkaBench.self])
}

/// One measured case: printed as a table row, and as a JSON line with --json.
struct BenchResult {
    var name: String
    var records: Int
    var bytes: Int
    var seconds: Double
    var fields: [String: Any] = [:]
    var note: String = ""

    var recordsPerSecond: Double { Double(records) / seconds }
    var megabytesPerSecond: Double { Double(bytes) / seconds / 1_000_000 }

    var json: [String: Any] {
        var object = fields
        object["case"] = name
        object["records"] = records
        object["seconds"] = (seconds * 1000).rounded() / 1000
        object["records_per_s"] = recordsPerSecond.rounded()
        object["mb_per_s"] = (megabytesPerSecond * 10).rounded() / 10
        return object
    }
}

enum Report {
    static func conditions(extra: [String: Any]) -> [String: Any] {
        var object: [String: Any] = [
            "case": "conditions", "cores": ProcessInfo.processInfo.activeProcessorCount,
            "memory_gib": Int(ProcessInfo.processInfo.physicalMemory >> 30),
            "date": ISO8601DateFormatter().string(from: Date()), "millrace_version": MillraceVersion.current,
            "crc32c_hardware": CRC32C.isHardwareAccelerated,
        ]
        #if DEBUG
            object["build"] = "debug"
        #else
            object["build"] = "release"
        #endif
        for (key, value) in extra { object[key] = value }
        return object
    }

    static func jsonLine(_ object: [String: Any]) -> String {
        String(decoding: try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
    }

    static func printTable(_ results: [BenchResult]) {
        let headers = ["case", "records", "seconds", "records/s", "MB/s", "notes"]
        let rows = results.map { result in
            [
                result.name, "\(result.records)", String(format: "%.2f", result.seconds),
                String(format: "%.0f", result.recordsPerSecond), String(format: "%.1f", result.megabytesPerSecond), result.note,
            ]
        }
        printTable(headers, rows)
    }

    /// Columns padded to their widest cell: the first and last left-aligned, the rest right.
    static func printTable(_ headers: [String], _ rows: [[String]]) {
        var widths = headers.map(\.count)
        for row in rows { for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { index, cell in
                let pad = String(repeating: " ", count: widths[index] - cell.count)
                return index == 0 || index == cells.count - 1 ? cell + pad : pad + cell
            }.joined(separator: "  ")
        }
        print(line(headers))
        for row in rows { print(line(row)) }
    }
}

func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// User + system CPU seconds this process (the bench's client side) has used so far.
func ownCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

func percentile(_ sorted: [Double], _ fraction: Double) -> Double {
    guard !sorted.isEmpty else { return 0 }
    return sorted[min(sorted.count - 1, Int(Double(sorted.count) * fraction))]
}
