import ArgumentParser
import Foundation
import MillraceClient
import MillraceFormat
import MillraceSchema
import MillraceWire

struct SchemaCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "schema", abstract: "Register, list, show and check topic schemas; validate events against them.",
        subcommands: [Register.self, List.self, Show.self, Check.self, Validate.self])

    /// A schema file's bytes, or a usage error naming the file.
    static func read(_ path: String) throws -> [UInt8] { try InputFile.contents(path) }

    /// Compiles a schema file's document here, before the broker sees it: one that is not a
    /// schema Millrace accepts is a usage error (exit 2) naming the file, and for a JSON syntax
    /// error its line and column, the same from every command that takes a schema file.
    static func compile(_ document: [UInt8], file: String, nothingDone: String) throws {
        do {
            _ = try Schema(json: document)
        } catch {
            Output.standardError("error: \(file) is not a schema Millrace accepts: \(located(error.message, in: document)); \(nothingDone)")
            throw ExitCode(2)
        }
    }

    /// `message` with its "at byte N" (1-based) as "at line L, column C" (both 1-based,
    /// columns in characters) of `document`.
    static func located(_ message: String, in document: [UInt8]) -> String {
        guard let range = message.range(of: #"at byte [0-9]+"#, options: .regularExpression),
            let byte = Int(message[range].dropFirst("at byte ".count)), byte >= 1
        else { return message }
        let before = document.prefix(byte - 1)
        let newline = UInt8(ascii: "\n")
        let line = before.filter { $0 == newline }.count + 1
        let lineStart = before.lastIndex(of: newline).map { $0 + 1 } ?? before.startIndex
        let column = String(decoding: before[lineStart...], as: UTF8.self).count + 1
        return message.replacingCharacters(in: range, with: "at line \(line), column \(column)")
    }

    /// Prints the reasons a schema was refused (one per line) and exits 1.
    static func refuse(_ headline: String, _ problems: [String]) throws -> Never {
        Output.standardError("error: \(headline):")
        for problem in problems { Output.standardError("  - \(problem)") }
        throw ExitCode(1)
    }

    struct Register: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Register FILE (a JSON Schema) as the topic's next schema version.",
            discussion: "A document identical to an existing version returns that version. One that breaks the topic's compatibility mode is refused with every reason." + Help.examples("millrace schema register checked confirmation.schema.json", "millrace schema register checked confirmation-v2.schema.json --json"))
        @OptionGroup var broker: BrokerOptions
        @Argument(help: "Topic.") var topic: String
        @Argument(help: "The JSON Schema file.") var file: String
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let schema = try SchemaCommand.read(file)
            try SchemaCommand.compile(schema, file: file, nothingDone: "nothing registered")
            let answer = try await withClient(broker) { try await $0.registerSchema(topic: topic, schema: schema) }
            if json {
                print(Output.json(["topic": topic, "version": Int(answer.version), "created": answer.created, "problems": answer.problems]))
                if !answer.problems.isEmpty { throw ExitCode(1) }
                return
            }
            if !answer.problems.isEmpty { try SchemaCommand.refuse("\(file) is not compatible with topic \(topic)'s schema (nothing registered)", answer.problems) }
            print(answer.created ? "registered \(file) as version \(answer.version) of \(topic)" : "\(file) is identical to version \(answer.version) of \(topic); nothing registered")
        }
    }

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Say whether FILE could be registered (valid, compatible), without registering it.", discussion: Help.exampleLines("millrace schema check checked confirmation-v2.schema.json"))
        @OptionGroup var broker: BrokerOptions
        @Argument(help: "Topic.") var topic: String
        @Argument(help: "The JSON Schema file.") var file: String
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let schema = try SchemaCommand.read(file)
            try SchemaCommand.compile(schema, file: file, nothingDone: "it could not be registered")
            let answer = try await withClient(broker) { try await $0.registerSchema(topic: topic, schema: schema, dryRun: true) }
            if json {
                print(Output.json(["topic": topic, "version": Int(answer.version), "compatible": answer.problems.isEmpty, "problems": answer.problems]))
                if !answer.problems.isEmpty { throw ExitCode(1) }
                return
            }
            if !answer.problems.isEmpty { try SchemaCommand.refuse("\(file) is not compatible with topic \(topic)'s schema", answer.problems) }
            let existing = try await withClient(broker) { try await $0.listSchemas(topic: topic) }.versions.map(\.version)
            print(existing.contains(answer.version) ? "\(file) is identical to version \(answer.version) of \(topic)" : "\(file) is compatible; it would be version \(answer.version) of \(topic)")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List a topic's schema versions and its schema policies.", discussion: Help.exampleLines("millrace schema list checked", "millrace schema list checked --json"))
        @OptionGroup var broker: BrokerOptions
        @Argument(help: "Topic.") var topic: String
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let list = try await withClient(broker) { try await $0.listSchemas(topic: topic) }
            let compatibility = list.compatibility.description
            let onInvalid = list.onInvalid.description
            if json {
                print(
                    Output.json([
                        "topic": topic, "compatibility": compatibility, "on_invalid": onInvalid,
                        "versions": list.versions.map {
                            ["version": Int($0.version), "registered": JSONText.isoTime(milliseconds: $0.registeredAtMs), "bytes": Int($0.bytes)] as [String: Any]
                        },
                    ]))
                return
            }
            print("topic \(topic): compatibility \(compatibility), invalid records: \(onInvalid)")
            if list.versions.isEmpty {
                print("no schema; register one with `millrace schema register \(topic) FILE`")
            } else {
                print(
                    Output.table(
                        ["VERSION", "REGISTERED", "BYTES"],
                        list.versions.map { ["\($0.version)", JSONText.isoTime(milliseconds: $0.registeredAtMs), Output.count(Int64($0.bytes))] },
                        rightAligned: [0, 2]))
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print a schema version's document as registered (default: the latest).", discussion: Help.exampleLines("millrace schema show checked", "millrace schema show checked --version 1 --json"))
        @OptionGroup var broker: BrokerOptions
        @Argument(help: "Topic.") var topic: String
        @Option(help: "The version (default: the latest).") var version: Int32?
        @Flag(help: "Print one JSON object (version, registration time, the document) instead of the document alone.") var json = false

        func run() async throws {
            if let version, version < 1 {
                Output.standardError("error: --version takes 1 or more (got \(version))")
                throw ExitCode(2)
            }
            let schema = try await withClient(broker) { try await $0.schema(topic: topic, version: version) }
            if json {
                let document = (try? JSONSerialization.jsonObject(with: Data(schema.schema), options: [.fragmentsAllowed])) ?? String(decoding: schema.schema, as: UTF8.self)
                return print(Output.json(["topic": topic, "version": Int(schema.version), "registered_ms": schema.registeredAtMs, "schema": document]))
            }
            FileHandle.standardOutput.write(Data(schema.schema))
            if schema.schema.last != UInt8(ascii: "\n") { print() }
        }
    }

    struct Validate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a file of events (one JSON value per line) against the topic's schema; writes nothing to the broker.",
            discussion: "Each invalid line is reported with its JSON path, rule and value. Exit 0 when every line is valid, 1 otherwise." + Help.examples("millrace schema validate checked events.ndjson", "millrace generate --invalid 5 | millrace schema validate checked -"))
        @OptionGroup var broker: BrokerOptions
        @Argument(help: "Topic.") var topic: String
        @Argument(help: "Events file (NDJSON); - for standard input.") var events: String
        @Option(help: "The schema version (default: the latest).") var version: Int32?
        @Option(help: "Report at most this many invalid lines (all are counted).") var show = 50
        @Flag(help: "Print one JSON object per invalid line and a summary object.") var json = false

        func run() async throws {
            guard show >= 0 else {
                Output.standardError("error: --show takes 0 or more (got \(show))")
                throw ExitCode(2)
            }
            // Unreadable input is found before connecting, as `produce -f` finds it.
            let descriptor = events == "-" ? 0 : try InputFile.open(events)
            defer { if descriptor != 0 { close(descriptor) } }
            let (found, schema) = try await withClient(broker) { try await $0.compiledSchema(topic: topic, version: version) }
            let (show, json) = (self.show, self.json)
            // Ctrl-C / SIGTERM: stop reading, report what was checked.
            let work = Task { () throws -> (lines: Int, invalid: Int) in
                var splitter = LineSplitter(lineBytesMax: Limits.batchBytesMax)
                var tape = JSONTape()
                var (lines, invalid) = (0, 0)
                // A line that is not a record (too long, not JSON) is named without a path.
                func report(_ number: Int, _ problem: SchemaViolation, column: Int? = nil) {
                    invalid += 1
                    guard invalid <= show else { return }
                    if json {
                        var object: [String: Any] = ["line": number, "path": problem.path, "rule": problem.rule, "message": problem.message]
                        if let column { object["column"] = column }
                        print(Output.json(object))
                    } else {
                        print("line \(number): \(problem.rule == "json" || problem.rule == "size" ? problem.message : problem.description)")
                    }
                }
                func check(_ batch: [LineSplitter.Line]) {
                    for line in batch {
                        lines += 1
                        switch line {
                        case .tooLong(let number, let bytes):
                            report(number, SchemaViolation(path: "", rule: "size", message: "the line is \(bytes) bytes; one record takes at most \(Limits.batchBytesMax)"))
                        case .text(let number, let bytes):
                            do {
                                try tape.parse(bytes, depthMax: Limits.jsonDepthMax)
                                if !schema.isValid(tape), let problem = schema.validate(tape, limit: 1).first { report(number, problem) }
                            } catch {
                                let (column, message) = InputFile.syntax(error, in: bytes)
                                report(number, SchemaViolation(path: "", rule: "json", message: message), column: column)
                            }
                        }
                    }
                }
                let reader = InputReader(descriptor: descriptor)
                for try await chunk in reader {
                    check(splitter.feed(chunk))
                    reader.consumed()
                    if Task.isCancelled { break }
                }
                if !Task.isCancelled { check(splitter.finish()) }
                return (lines, invalid)
            }
            let signals = TerminationSignals { work.cancel() }
            defer { signals.cancel() }
            let (lines, invalid) = try await signals.wait(for: work)
            let stopped = signals.signalled ? " (stopped by a signal after line \(lines))" : ""
            if json {
                print(Output.json(["topic": topic, "version": Int(found), "lines": lines, "invalid": invalid, "stopped": signals.signalled]))
            } else {
                let hidden = invalid > show ? " (\(invalid - show) not shown; raise --show)" : ""
                print("\(Output.count(Int64(lines - invalid))) of \(Output.count(Int64(lines))) lines are valid against version \(found) of \(topic)\(hidden)\(stopped)")
            }
            if invalid > 0 || signals.signalled { throw ExitCode(1) }
        }
    }
}
