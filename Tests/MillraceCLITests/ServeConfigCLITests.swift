import Foundation
import Testing

/// `serve`'s settings: built-in defaults, then the config file, then `MILLRACE_*`
/// variables, then flags; `--print-config` shows each with where it came from, and a bad
/// value is named with its source before anything starts.
@Suite struct ServeConfigCLITests {
    let cli = CLITests()

    func configFile(_ text: String) throws -> String {
        let path = NSTemporaryDirectory() + "millrace-config-\(UUID().uuidString).conf"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func flagsOverTheEnvironmentOverTheFileOverDefaults() throws {
        let file = try configFile(
            """
            # Millrace on the line-3 gateway
            data_dir = "/var/lib/millrace"
            listen = "0.0.0.0:7450"
            log_level = "debug"
            index_memory_mib = 128   # a bigger table
            """)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let run = try cli.millrace(
            ["serve", "--config", file, "--log-level", "warning", "--print-config"],
            environment: ["MILLRACE_LISTEN": "127.0.0.1:9450", "MILLRACE_LOG_LEVEL": "error", "MILLRACE_HTTP_LISTEN": "none", "MILLRACE_KAFKA_LISTEN": "0.0.0.0:9092"])
        #expect(run.status == 0, "\(run.stderr)")
        let lines = run.stdout.split(separator: "\n").map { $0.replacingOccurrences(of: " +", with: " ", options: .regularExpression) }
        #expect(
            lines == [
                #"data_dir = "/var/lib/millrace" # \#(file) line 2"#,
                #"listen = "127.0.0.1:9450" # MILLRACE_LISTEN"#,
                #"http_listen = "none" # MILLRACE_HTTP_LISTEN"#,
                #"kafka_listen = "0.0.0.0:9092" # MILLRACE_KAFKA_LISTEN"#,
                #"kafka_advertise = "" # default"#,
                #"auth = "off" # default"#,
                #"tls_cert = "" # default"#,
                #"tls_key = "" # default"#,
                #"tls_client_ca = "" # default"#,
                #"metrics_token_file = "" # default"#,
                #"producer_idle = "7d" # default"#,
                #"dedup_filter_mib = 16 # default"#,
                #"index_memory_mib = 128 # \#(file) line 5"#,
                #"log_level = "warning" # --log-level"#,
                #"log_format = "text" # default"#,
            ], "\(run.stdout)")
        // MILLRACE_CONFIG names the file when --config does not.
        let fromEnvironment = try cli.millrace(["serve", "--print-config"], environment: ["MILLRACE_CONFIG": file])
        #expect(fromEnvironment.stdout.contains(#"index_memory_mib = 128"#))
    }

    @Test func aBadSettingIsNamedWithItsSource() throws {
        let file = try configFile("listen = \"somewhere\"\n")
        defer { try? FileManager.default.removeItem(atPath: file) }
        let run = try cli.millrace(["serve", "--config", file, "--print-config"], environment: [:])
        #expect(run.status == 2)
        #expect(run.stderr == "error: \(file) line 1: listen takes HOST:PORT, for example 127.0.0.1:7450 (got somewhere)\n")
        let unknown = try configFile("colour = \"blue\"\n")
        defer { try? FileManager.default.removeItem(atPath: unknown) }
        #expect(try cli.millrace(["serve", "--config", unknown], environment: [:]).stderr.contains("line 1: unknown setting colour"))
        let environment = try cli.millrace(["serve", "--print-config"], environment: ["MILLRACE_DEDUP_FILTER_MIB": "0"])
        #expect(environment.status == 2 && environment.stderr == "error: MILLRACE_DEDUP_FILTER_MIB: dedup_filter_mib takes 1...1024 (got 0)\n")
        let flag = try cli.millrace(["serve", "--log-format", "xml", "--print-config"], environment: [:])
        #expect(flag.status == 2 && flag.stderr == "error: --log-format: log_format takes text or json (got xml)\n")
    }

    /// Issue 23, item 13: `--producer-idle` takes a duration; the older hours are still read
    /// as a flag, a file line and a variable, and hidden from --help.
    @Test func producerIdleTakesADurationAndTheOldHoursStillWork() throws {
        func setting(_ arguments: [String], _ environment: [String: String] = [:]) throws -> String {
            let run = try cli.millrace(["serve"] + arguments + ["--print-config"], environment: environment)
            #expect(run.status == 0, "\(run.stderr)")
            let line = run.stdout.split(separator: "\n").first { $0.hasPrefix("producer_idle ") } ?? ""
            return line.replacingOccurrences(of: " +", with: " ", options: .regularExpression)
        }
        #expect(try setting(["--producer-idle", "36h"]) == #"producer_idle = "36h" # --producer-idle"#)
        #expect(try setting(["--producer-idle-hours", "48"]) == #"producer_idle = "48h" # --producer-idle-hours"#)
        #expect(try setting([], ["MILLRACE_PRODUCER_IDLE_HOURS": "12"]) == #"producer_idle = "12h" # MILLRACE_PRODUCER_IDLE_HOURS"#)
        #expect(try setting([], ["MILLRACE_PRODUCER_IDLE": "2d"]) == #"producer_idle = "2d" # MILLRACE_PRODUCER_IDLE"#)
        let file = try configFile("producer_idle_hours = 24\n")
        defer { try? FileManager.default.removeItem(atPath: file) }
        #expect(try setting(["--config", file]) == #"producer_idle = "24h" # \#(file) line 1"#)

        let short = try cli.millrace(["serve", "--producer-idle", "30s", "--print-config"], environment: [:])
        #expect(short.status == 2 && short.stderr == "error: --producer-idle: producer_idle takes a duration from 1h to 365d, such as 7d or 36h (got 30s)\n")
        let help = try cli.millrace(["serve", "--help"]).stdout
        #expect(help.contains("--producer-idle <producer-idle>") && !help.contains("producer-idle-hours"), "\(help)")
    }

    /// Issue 23, item 14: a `serve` that cannot start leaves no data directory behind, and one
    /// that was there as it was.
    @Test func aServeThatCannotStartLeavesNoDataDirectory() async throws {
        try await withTestBroker { broker, storage in
            let busy = String(broker.split(separator: ":").last ?? "")
            // A directory a running broker holds is left exactly as it is.
            let held = try FileManager.default.contentsOfDirectory(atPath: storage.directory).sorted()
            let locked = try cli.millrace(["serve", "--data-dir", storage.directory, "--listen", "127.0.0.1:0", "--http-listen", "none"], environment: [:])
            #expect(locked.status == 2 && locked.stderr.contains("is in use by a running broker"), "\(locked.stderr)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: storage.directory).sorted() == held)
            let base = NSTemporaryDirectory() + "millrace-failed-serve-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: base) }
            for (listen, http) in [("127.0.0.1:\(busy)", "none"), ("127.0.0.1:0", "127.0.0.1:\(busy)")] {
                let fresh = base + "/new/data"
                let run = try cli.millrace(["serve", "--data-dir", fresh, "--listen", listen, "--http-listen", http], environment: [:])
                #expect(run.status == 2 && (run.stderr.contains("the address is in use") || run.stderr.contains("cannot listen for HTTP")), "\(run.stderr)")
                #expect(!FileManager.default.fileExists(atPath: base), "\(listen) \(http): \((try? FileManager.default.subpathsOfDirectory(atPath: base)) ?? [])")

                let existing = base + "/empty"
                try FileManager.default.createDirectory(atPath: existing, withIntermediateDirectories: true)
                let again = try cli.millrace(["serve", "--data-dir", existing, "--listen", listen, "--http-listen", http], environment: [:])
                #expect(again.status == 2)
                #expect(try FileManager.default.contentsOfDirectory(atPath: existing) == [], "\(listen) \(http)")
                try FileManager.default.removeItem(atPath: base)
            }
        }
    }

}
