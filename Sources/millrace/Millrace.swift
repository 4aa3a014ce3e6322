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
        subcommands: [ServeCommand.self, TopicCommand.self, ProduceCommand.self, ConsumeCommand.self, GroupCommand.self, SchemaCommand.self, QuarantineCommand.self, DedupCommand.self, TraceCommand.self, IndexCommand.self, StatusCommand.self, TopCommand.self, DataCommand.self, GenerateCommand.self])

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
                Output.standardError(fullMessage(for: error))
                Glibc.exit(2)
            }
            exit(withError: error)
        }
    }
}
