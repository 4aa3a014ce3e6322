import Foundation
import Testing

/// The example package (`Examples/PlantIntegration`, built by `scripts/test`) used as its
/// README says: the MES simulator produces confirmations and genealogy (and resends them, as
/// a gateway after an outage does), the ERP poster consumes them as a group while the broker
/// is killed and restarted under it, and posts each confirmation exactly once.
@Suite(.serialized) struct ExamplePackageTests {
    static func example(_ name: String) throws -> String {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Examples/PlantIntegration/.build/debug/\(name)").path
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw CocoaError(.fileNoSuchFile, userInfo: [NSLocalizedDescriptionKey: "\(path) is not built; scripts/test builds the example package first"])
        }
        return path
    }

    func run(_ binary: String, _ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
    }

    @Test func mesSimulatorAndERPPosterAcrossABrokerRestart() async throws {
        let simulator = try Self.example("mes-simulator")
        let poster = try Self.example("erp-poster")
        let directory = NSTemporaryDirectory() + "millrace-example-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let broker = try RestartTests.Broker(directory: directory)
        defer { broker.stop(signal: SIGKILL) }
        let address = "127.0.0.1:\(broker.port)"

        let produced = try run(simulator, ["--broker", address, "--units", "300", "--resend", "1"])
        #expect(produced.status == 0, "\(produced.stderr)")
        #expect(produced.stdout == "mes-simulator: 600 appended, 300 duplicates caught, 0 quarantined, 0 invalid, 0 failed\n")
        // The genealogy reads as the README says: the serials built from a lot (where-used),
        // the lot a serial was built from (where-from).
        func walk(_ key: String, _ direction: String) throws -> [String] {
            let run = try CLITests().millrace(["trace", key, direction, "--json", "--broker", address])
            let tree = try #require(JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any], "\(run.stdout)\(run.stderr)")
            return (tree["nodes"] as? [[String: Any]] ?? []).compactMap { $0["value"] as? String }
        }
        let serials = try walk("LOT-2", "--where-used")
        #expect(serials.first == "LOT-2" && Set(serials.dropFirst()) == Set((100..<150).map { "SN-\(100_000 + $0)" }), "\(serials)")
        #expect(try walk("SN-100007", "--where-from") == ["SN-100007", "LOT-0"])

        // The poster runs while the broker is killed and comes back on the same port; the
        // second half of the confirmations exists only after the restart, so it must ride
        // through it to finish.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: poster)
        process.arguments = ["--broker", address, "--expect", "600"]
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let firstLines = out.fileHandleForReading.availableData  // it has started posting
        #expect(!firstLines.isEmpty)
        broker.stop(signal: SIGKILL)
        try broker.restart()
        let more = try run(simulator, ["--broker", address, "--units", "300", "--first", "300"])
        #expect(more.status == 0 && more.stdout.hasPrefix("mes-simulator: 600 appended"), "\(more)")
        let rest = out.fileHandleForReading.readDataToEndOfFile()
        let errors = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "\(errors)")
        let lines = String(decoding: firstLines + rest, as: UTF8.self).split(separator: "\n")
        #expect(lines.count == 600 && Set(lines).count == 600, "\(lines.count) lines, \(Set(lines).count) distinct")
        #expect(lines.allSatisfy { $0.hasPrefix("GR ORD-") })
        #expect(errors.hasSuffix("erp-poster: posted 600 confirmations, 600 units\n"), "\(errors)")
    }
}
