import ArgumentParser
import MillraceFormat

@main
struct Millrace: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "millrace",
        abstract: "Millrace: a durable event broker for manufacturing integration.",
        version: MillraceVersion.current,
        subcommands: [DataCommand.self])
}
