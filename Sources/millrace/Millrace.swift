import ArgumentParser
import Foundation
import MillraceFormat

@main
struct Millrace: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "millrace",
        abstract: "Millrace: a durable event broker for manufacturing integration.",
        discussion: "Exit codes: 0 success, 1 a runtime error (the message says what happened and what to do), 2 bad usage.",
        version: MillraceVersion.current,
        subcommands: [ServeCommand.self, TopicCommand.self, ProduceCommand.self, ConsumeCommand.self, GroupCommand.self, SchemaCommand.self, QuarantineCommand.self, DedupCommand.self, TraceCommand.self, IndexCommand.self, StatusCommand.self, TopCommand.self, DataCommand.self, GenerateCommand.self, UserCommand.self, RoleCommand.self, ACLCommand.self, WhoAmICommand.self, AuditCommand.self])

    /// A mistyped command (`millrace topc list`), named with the nearest command, as git does.
    static func suggestion() -> String? {
        let arguments = CommandLine.arguments.dropFirst()
        guard let first = arguments.first, !first.hasPrefix("-") else { return nil }
        let names = (configuration.subcommands.map { $0._commandName } + ["help"])
        guard !names.contains(first) else { return nil }
        let nearest = names.min { distance($0, first) < distance($1, first) }
        guard let nearest, distance(nearest, first) <= max(2, first.count / 3) else {
            return "error: \(first) is not a millrace command; `millrace --help` lists them"
        }
        return "error: \(first) is not a millrace command; did you mean `millrace \(([nearest] + arguments.dropFirst()).joined(separator: " "))`?"
    }

    /// Levenshtein distance, for suggestions.
    static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        var row = Array(0...b.count)
        for i in 1...max(1, a.count) where !a.isEmpty {
            var previous = row[0]
            row[0] = i
            for j in 1...max(1, b.count) where !b.isEmpty {
                let saved = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
                previous = saved
            }
        }
        return a.isEmpty ? b.count : row[b.count]
    }

    /// As ArgumentParser's, except that usage errors exit 2 (not 64), like the commands' own.
    static func main() async {
        // Before any thread allocates: the commands stream through one arena; `serve` sets
        // its own (ServeCommand.swift).
        useOneMallocArena()
        do {
            var command = try parseAsRoot()
            if var asynchronous = command as? any AsyncParsableCommand {
                try await asynchronous.run()
            } else {
                try command.run()
            }
        } catch let failure as CommandFailure {
            // Printed as it is, with "error: " once (ArgumentParser would add "Error: ").
            Output.standardError(failure.message.hasPrefix("error: ") ? failure.message : "error: " + failure.message)
            Glibc.exit(failure.exitCode)
        } catch {
            if exitCode(for: error) == .validationFailure {
                Output.standardError(suggestion() ?? fullMessage(for: error))
                Glibc.exit(2)
            }
            exit(withError: error)
        }
    }
}
