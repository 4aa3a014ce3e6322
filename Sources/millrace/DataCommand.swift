import ArgumentParser
import Foundation
import MillraceFormat
import MillraceServer
import MillraceStorage

struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Data directory tools: inspect and verify (offline), back up (online through the broker, or offline) and restore.",
        subcommands: [Inspect.self, Verify.self, Backup.self, Restore.self])

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
            abstract: "List topics and partitions with earliest/latest offsets and sizes.", discussion: Help.exampleLines("millrace data inspect /var/lib/millrace", "millrace data inspect ./millrace-data --json"))

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
            discussion: "Exit codes: 0 clean, 1 problems found, 2 the directory could not be checked." + Help.examples("millrace data verify /var/lib/millrace", "millrace data verify /backups/nightly --json"))

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

    struct Backup: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A consistent copy of the data file in a new directory: through the running broker, or offline with --data-dir.",
            discussion: """
                Through the broker (the default) the copy is made on the broker's machine while it serves, from one read transaction, so it is consistent; the broker accepts it only from a client on its own machine. Offline, --data-dir copies a directory no broker is running on. LMDB's copy leaves out freed pages (--no-compact keeps the file's layout and is faster). Progress goes to stderr.

                Exit codes: 0 the copy is made and synced, 1 it could not be made (the message says why), 2 bad usage.

                Examples:
                  millrace data backup /backups/millrace-2026-11-28
                  millrace data backup /backups/nightly --data-dir /var/lib/millrace   # broker stopped
                """)

        @OptionGroup var broker: BrokerOptions
        @Argument(help: "A new directory for the copy (it must not exist).") var destination: String
        @Option(help: "Copy this data directory directly (no broker may be running on it) instead of asking the broker.") var dataDir: String?
        @Flag(help: "Copy every page as it is instead of leaving out freed ones.") var noCompact = false
        @Flag(help: "Print one JSON object instead of a sentence.") var json = false

        func run() async throws {
            let target = URL(fileURLWithPath: destination).standardizedFileURL.path
            let progress = !json && Output.standardErrorIsTerminal ? BackupProgress(file: target + "/data.mdb") : nil
            let started = Date()
            let bytes: Int64
            if let dataDir {
                let storage = try DataCommand.open(dataDir)
                defer { storage.close() }
                do {
                    bytes = try storage.backup(to: target, compact: !noCompact)
                } catch let error as MillraceError {
                    progress?.stop()
                    Output.standardError("error: \(error.message)")
                    throw ExitCode(1)
                }
            } else {
                // A large copy takes a while: the broker answers once it is synced.
                let client = try broker.client(requestTimeout: .hours(6))
                do {
                    bytes = try await client.backup(to: target, compact: !noCompact).bytes
                    await client.close()
                } catch let error as MillraceError {
                    await client.close()
                    progress?.stop()
                    Output.standardError("error: the broker at \(broker.address) could not back up to \(target): \(error.message)")
                    throw ExitCode(1)
                }
            }
            progress?.stop()
            let seconds = Date().timeIntervalSince(started)
            if json {
                print(Output.json(["destination": target, "bytes": bytes, "seconds": seconds, "compacted": !noCompact, "online": dataDir == nil]))
            } else {
                print(
                    "backed up to \(target): \(Output.bytes(bytes)) in \(String(format: "%.1f", seconds)) s\(noCompact ? "" : ", compacted"); restore with `millrace data restore \(target) --data-dir DIR`"
                )
            }
        }
    }

    struct Restore: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a backup and make a data directory of it.",
            discussion: """
                Verifies every batch of the backup first (as `data verify` does) and refuses one with problems; then copies its data file into --data-dir, which must be new or empty (move a damaged directory aside first, do not overwrite it). Start the broker on the result.

                Exit codes: 0 restored, 1 the backup has problems or could not be copied, 2 bad usage.

                Examples:
                  millrace data restore /backups/millrace-2026-11-28 --data-dir /var/lib/millrace
                """)

        @Argument(help: "A directory `data backup` made.") var backup: String
        @Option(help: "Where to restore: a new or empty directory.") var dataDir: String
        @Flag(help: "Print one JSON object instead of sentences.") var json = false

        func run() async throws {
            let source = backup + "/data.mdb"
            guard FileManager.default.fileExists(atPath: source) else {
                Output.standardError("error: \(backup) holds no data.mdb; name a directory `millrace data backup` made")
                throw ExitCode(1)
            }
            let existing = (try? FileManager.default.contentsOfDirectory(atPath: dataDir)) ?? []
            guard existing.isEmpty else {
                Output.standardError(
                    "error: \(dataDir) is not empty (\(existing.sorted().prefix(3).joined(separator: ", "))); restore into a new directory, or move this one aside first")
                throw ExitCode(1)
            }
            // Check the backup as it is before anything is written.
            let report: VerifyReport
            let topics: Int
            do {
                let storage = try DataCommand.open(backup)
                defer { storage.close() }
                report = try storage.verify()
                topics = try storage.listTopics().count
            } catch let error as MillraceError {
                Output.standardError("error: \(backup) cannot be read as a Millrace data directory: \(error.message)")
                throw ExitCode(1)
            }
            guard report.problems.isEmpty else {
                let first = report.problems[0]
                Output.standardError(
                    "error: the backup has \(report.problems.count) problem\(report.problems.count == 1 ? "" : "s") (first: \(first.topic)/\(first.partition): \(first.message)); nothing was restored"
                )
                throw ExitCode(1)
            }
            do {
                try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
                let partial = dataDir + "/data.mdb.restoring"
                try? FileManager.default.removeItem(atPath: partial)
                try FileManager.default.copyItem(atPath: source, toPath: partial)
                try Self.sync(partial)
                guard rename(partial, dataDir + "/data.mdb") == 0 else {
                    throw CommandFailure(message: "cannot move the copy into place: \(String(cString: strerror(errno)))")
                }
                try Self.sync(dataDir)
                try await Self.settle(dataDir, from: backup)
            } catch {
                Output.standardError("error: could not restore into \(dataDir): \(error)")
                throw ExitCode(1)
            }
            if json {
                print(
                    Output.json([
                        "backup": backup, "data_dir": dataDir, "topics": topics, "partitions": report.partitionsChecked, "records": report.recordsChecked,
                    ]))
            } else {
                print(
                    "restored \(backup) into \(dataDir): \(topics) topics, \(Output.count(report.recordsChecked)) records, every batch checked; start the broker with `millrace serve --data-dir \(dataDir)`"
                )
            }
        }

        /// A backup taken while the broker ran holds the key index's newest entries only as
        /// the records they came from, as a crash leaves them: opened once here, they are
        /// indexed again and written as a run when it closes, so the broker's first start on
        /// the restored directory is a clean one (not reported as an unclean stop).
        static func settle(_ directory: String, from backup: String) async throws {
            var options = Storage.Options()
            options.createIfMissing = false
            options.retentionCheckIntervalMs = nil
            do {
                let storage = try Storage.open(directory: directory, options: options)
                defer { storage.close() }
                // The restore is the restored broker's first audit record.
                let account = offlineAccount()
                try await OfflineAudit.record(storage: storage, principal: "offline:\(account)", operation: "data restore", resource: directory, result: "ok", detail: "from \(backup)")
            } catch let error as MillraceError {
                throw CommandFailure(message: error.message)
            }
        }

        static func sync(_ path: String) throws {
            let descriptor = Glibc.open(path, O_RDONLY)
            guard descriptor >= 0 else { throw CommandFailure(message: "cannot open \(path): \(String(cString: strerror(errno)))") }
            defer { Glibc.close(descriptor) }
            guard fsync(descriptor) == 0 else { throw CommandFailure(message: "cannot sync \(path): \(String(cString: strerror(errno)))") }
        }
    }
}

/// "copying: 1.2 GiB" on stderr while a backup runs, from the copy's size on disk.
final class BackupProgress: @unchecked Sendable {
    private let timer: DispatchSourceTimer

    init(file: String) {
        timer = DispatchSource.makeTimerSource(queue: .global())
        timer.schedule(deadline: .now() + .milliseconds(500), repeating: .milliseconds(500))
        timer.setEventHandler {
            let size = (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int64) ?? 0
            FileHandle.standardError.write(Data("\rcopying: \(Output.bytes(size))\u{1B}[K".utf8))
        }
        timer.resume()
    }

    func stop() {
        timer.cancel()
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
    }
}
