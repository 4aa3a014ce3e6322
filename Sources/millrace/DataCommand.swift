import ArgumentParser
import Foundation
import MillraceFormat
import MillraceStorage

struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Offline tools that open a data directory directly (refused while a broker runs on it).",
        subcommands: [Inspect.self, Verify.self])

    static func open(_ directory: String) throws -> Storage {
        var options = Storage.Options()
        options.readOnly = true
        options.createIfMissing = false
        do {
            return try Storage.open(directory: directory, options: options)
        } catch let error as MillraceError {
            Output.standardError("error: \(error.message)")
            throw ExitCode(2)
        }
    }

    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List topics and partitions with earliest/latest offsets and sizes.")

        @Argument(help: "The data directory.") var directory: String
        @Flag(help: "Print one JSON object instead of a table.") var json = false

        func run() throws {
            let storage = try DataCommand.open(directory)
            defer { storage.close() }
            let info = storage.info
            var descriptions: [TopicDescription] = []
            do {
                for topic in try storage.listTopics() { descriptions.append(try storage.describeTopic(topic.name)) }
            } catch let error as MillraceError {
                Output.standardError("error: \(error.message)")
                throw ExitCode(2)
            }
            if json {
                print(Output.json(Self.jsonObject(info, descriptions)))
                return
            }
            print("data directory \(info.directory): format \(info.formatVersion), \(Output.bytes(info.fileBytes)) on disk, \(Output.bytes(Int64(info.usedBytes))) in use")
            guard !descriptions.isEmpty else {
                print("no topics")
                return
            }
            var rows: [[String]] = []
            for description in descriptions {
                for partition in description.partitions {
                    rows.append([
                        description.info.name, "\(partition.partition)", Output.count(partition.logStartOffset),
                        Output.count(partition.nextOffset), Output.count(partition.recordCount), Output.count(partition.batchCount),
                        Output.bytes(partition.bytes),
                    ])
                }
            }
            print(
                Output.table(
                    ["TOPIC", "PARTITION", "EARLIEST", "LATEST", "RECORDS", "BATCHES", "BYTES"], rows, rightAligned: [1, 2, 3, 4, 5, 6]))
        }

        static func jsonObject(_ info: StorageInfo, _ descriptions: [TopicDescription]) -> [String: Any] {
            [
                "directory": info.directory, "format_version": Int(info.formatVersion), "file_bytes": info.fileBytes,
                "used_bytes": info.usedBytes, "map_bytes": info.mapSizeBytes,
                "topics": descriptions.map { description -> [String: Any] in
                    [
                        "name": description.info.name,
                        "retention_ms": description.info.config.retentionMs.map { $0 as Any } ?? NSNull(),
                        "retention_bytes": description.info.config.retentionBytes.map { $0 as Any } ?? NSNull(),
                        "compression": description.info.config.compression.description,
                        "timestamp_type": description.info.config.timestampType == .logAppend ? "log_append" : "create",
                        "partitions": description.partitions.map { partition -> [String: Any] in
                            [
                                "partition": Int(partition.partition), "earliest": partition.logStartOffset,
                                "latest": partition.nextOffset, "records": partition.recordCount, "batches": partition.batchCount,
                                "bytes": partition.bytes,
                            ]
                        },
                    ]
                },
            ]
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check every batch (CRC, framing, offset continuity); exit 0 only when clean.",
            discussion: "Exit codes: 0 clean, 1 problems found, 2 the directory could not be checked.")

        @Argument(help: "The data directory.") var directory: String
        @Flag(help: "Print one JSON object instead of a table.") var json = false

        func run() throws {
            let storage = try DataCommand.open(directory)
            defer { storage.close() }
            let showProgress = !json && Output.standardErrorIsTerminal
            let report: VerifyReport
            do {
                report = try storage.verify { done, total in
                    if showProgress { FileHandle.standardError.write(Data("\rverifying partition \(done)/\(total)".utf8)) }
                }
            } catch let error as MillraceError {
                Output.standardError("error: \(error.message)")
                throw ExitCode(2)
            }
            if showProgress { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
            if json {
                print(
                    Output.json([
                        "ok": report.problems.isEmpty, "partitions": report.partitionsChecked, "batches": report.batchesChecked,
                        "records": report.recordsChecked,
                        "problems": report.problems.map { problem -> [String: Any] in
                            [
                                "topic": problem.topic, "partition": Int(problem.partition),
                                "offset": problem.offset.map { $0 as Any } ?? NSNull(), "message": problem.message,
                            ]
                        },
                    ]))
            } else if report.problems.isEmpty {
                print(
                    "ok: \(report.partitionsChecked) partitions, \(Output.count(Int64(report.batchesChecked))) batches, \(Output.count(report.recordsChecked)) records checked; no problems"
                )
            } else {
                let rows = report.problems.map { problem in
                    [problem.topic, "\(problem.partition)", problem.offset.map { "\($0)" } ?? "-", problem.message]
                }
                print(Output.table(["TOPIC", "PARTITION", "OFFSET", "PROBLEM"], rows))
                print(
                    "\(report.problems.count) problem\(report.problems.count == 1 ? "" : "s") found in \(report.partitionsChecked) partitions; the data directory needs attention"
                )
            }
            if !report.problems.isEmpty { throw ExitCode(1) }
        }
    }
}
