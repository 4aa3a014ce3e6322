import Foundation
import Testing

/// Issue 23, item 12: the same mistake gets the same exit code (usage and unreadable
/// input 2, runtime failures 1) and one message that starts once with "error:".
@Suite(.serialized) struct CLIMistakeTests {
    let cli = CLITests()
    let brokers = BrokerCLITests()
    let schemas = SchemaCLITests()

    @Test func aBrokenSchemaFileIsNamedWithLineAndColumnEverywhere() async throws {
        let broken = try schemas.file("{\n  \"type\": \"object\"\n  \"required\": [\"a\"]\n}\n")
        let reason = "the schema is not valid JSON at line 3, column 3: expected ',' or '}' in an object, found '\"'"
        // Refused before connecting: no broker listens on port 1.
        let registered = try cli.millrace(["schema", "register", "t", broken, "--broker", "127.0.0.1:1"])
        #expect(registered.status == 2)
        #expect(registered.stderr == "error: \(broken) is not a schema Millrace accepts: \(reason); nothing registered\n")
        let checked = try cli.millrace(["schema", "check", "t", broken, "--broker", "127.0.0.1:1"])
        #expect(checked.status == 2)
        #expect(checked.stderr == "error: \(broken) is not a schema Millrace accepts: \(reason); it could not be registered\n")
        let created = try cli.millrace(["topic", "create", "t", "--schema", broken, "--broker", "127.0.0.1:1"])
        #expect(created.status == 2)
        #expect(created.stderr == "error: \(broken) is not a schema Millrace accepts: \(reason); nothing was created\n")
    }

    @Test func produceFromADirectoryIsUnreadableInput() throws {
        let directory = NSTemporaryDirectory() + "millrace-produce-dir-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let fromDirectory = try cli.millrace(["produce", "t", "-f", directory, "--broker", "127.0.0.1:1"])
        #expect(fromDirectory.status == 2)
        #expect(fromDirectory.stderr == "error: cannot read \(directory): Is a directory\n")
        let missing = try cli.millrace(["produce", "t", "-f", directory + "/missing", "--broker", "127.0.0.1:1"])
        #expect(missing.status == 2)
        #expect(missing.stderr == "error: cannot read \(directory)/missing: No such file or directory\n")
    }
}
