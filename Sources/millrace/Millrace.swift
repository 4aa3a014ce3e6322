import ArgumentParser
import MillraceFormat

@main
struct Millrace: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "millrace",
        abstract: "Millrace: a durable event broker for manufacturing integration.",
        version: MillraceVersion.current,
        subcommands: [ServeCommand.self, TopicCommand.self, ProduceCommand.self, ConsumeCommand.self, GroupCommand.self, DataCommand.self])
}
