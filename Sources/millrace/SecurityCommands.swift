import ArgumentParser
import Foundation
import MillraceClient
import MillraceFormat
import MillraceSecurity
import MillraceServer
import MillraceStorage
import MillraceWire

// `millrace user|role|acl|whoami` (docs/SECURITY.md): through the broker as an administrator,
// or offline with --data-dir on a stopped broker's directory (how the first admin is made).

/// Where a security change goes: the running broker, or a data directory no broker runs on.
struct SecurityTarget: ParsableArguments {
    @OptionGroup var broker: BrokerOptions
    @Option(help: "Change this data directory directly (the broker must be stopped; it is created if missing) instead of asking the broker.")
    var dataDir: String?

    func apply(_ change: SecurityChange) async throws {
        guard let dataDir else {
            try await withClient(broker) { try await $0.alterSecurity(change) }
            return
        }
        let storage: Storage
        do {
            storage = try Storage.open(directory: dataDir)
        } catch let error as MillraceError {
            throw CommandFailure(
                message: error.code == .dataDirectoryLocked
                    ? "error: a broker is running on \(dataDir); stop it, or make the change through it (without --data-dir) as an administrator"
                    : "error: \(error.message)", exitCode: 1)
        }
        defer { storage.close() }
        // Recorded as the account that ran it: the broker is stopped, nobody logged in.
        let account = offlineAccount()
        do {
            _ = try await storage.updateSecurityRecord { bytes in
                do {
                    var state = try SecurityState(decoding: bytes)
                    try state.apply(change, nowMs: SystemClock().nowMilliseconds())
                    return state.encoded()
                } catch let error as SecurityError {
                    throw MillraceError(.invalidRequest, error.message)
                }
            }
        } catch let error as MillraceError {
            try? await OfflineAudit.record(
                storage: storage, principal: "offline:\(account)", operation: change.operation, resource: change.target, result: error.code.description, detail: error.message)
            throw CommandFailure(message: "error: \(error.message)", exitCode: 1)
        }
        try await OfflineAudit.record(storage: storage, principal: "offline:\(account)", operation: change.operation, resource: change.target, result: "ok")
    }

    func describe() async throws -> SecurityDescription {
        guard let dataDir else { return try await withClient(broker) { try await $0.describeSecurity() } }
        let storage = try DataCommand.open(dataDir)
        defer { storage.close() }
        do {
            return SecurityDescription(try SecurityState(decoding: storage.securityRecord()))
        } catch let error as SecurityError {
            throw CommandFailure(message: "error: \(error.message)", exitCode: 1)
        }
    }
}

/// A new password: the first line of stdin with --password-stdin, else asked twice on the
/// terminal. Never an argument (argv is visible to every user of the machine).
func newPassword(for user: String, fromStandardInput: Bool) throws -> String {
    if fromStandardInput {
        guard let line = readLine(strippingNewline: true), !line.isEmpty else {
            throw CommandFailure(message: "error: --password-stdin read no password (give it as the first line of standard input)")
        }
        guard line.count >= 8 else { throw CommandFailure(message: "error: a password has at least 8 characters; nothing changed", exitCode: 1) }
        return line
    }
    guard isatty(STDIN_FILENO) == 1 else {
        throw CommandFailure(message: "error: no terminal to ask for \(user)'s password on; pass it as the first line of stdin with --password-stdin")
    }
    let first = String(cString: getpass("New password for \(user): "))
    let second = String(cString: getpass("Again: "))
    guard first == second else { throw CommandFailure(message: "error: the two passwords differ; nothing changed", exitCode: 1) }
    guard first.count >= 8 else { throw CommandFailure(message: "error: a password has at least 8 characters; nothing changed", exitCode: 1) }
    return first
}

struct UserCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "user", abstract: "Users that log in (SCRAM-SHA-256/512): create, list, delete, change passwords and roles.",
        subcommands: [Create.self, List.self, Delete.self, Passwd.self, Alter.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a user with roles; the password is asked for (or read from stdin), stored only as salted SCRAM keys.",
            discussion: Help.exampleLines(
                "millrace user create admin --role enterprise-admin --data-dir /var/lib/millrace   # the first admin, broker stopped",
                "millrace user create mes-pl01 --role plant-system --scope PL01",
                "echo \"$PASSWORD\" | millrace user create erp --role erp-reader --password-stdin",
                "millrace user create CN=gateway-pl01 --role plant-system --scope PL01 --no-password   # client certificate only"))
        @OptionGroup var target: SecurityTarget
        @Argument(help: "User name (letters, digits, . _ - @ =).") var name: String
        @Option(name: .customLong("role"), help: "A role the user holds (repeat for several); `millrace role list` shows them.") var roles: [String] = []
        @Option(help: "The plant or supplier {scope} stands for in its roles' patterns (PL01, acme).") var scope: String?
        @Flag(help: "Read the password from the first line of stdin.") var passwordStdin = false
        @Flag(help: "No password: a principal that only presents a client certificate.") var noPassword = false
        @Flag(help: "Print one JSON object instead of a sentence.") var json = false

        func run() async throws {
            guard !roles.isEmpty else { throw CommandFailure(message: "error: give the user at least one --role (`millrace role list` shows them)") }
            let credentials = noPassword ? [] : SCRAMCredential.all(password: try newPassword(for: name, fromStandardInput: passwordStdin))
            try await target.apply(.createUser(name: name, roles: roles, scope: scope, credentials: credentials))
            print(json ? Output.json(["user": name, "roles": roles, "scope": scope as Any, "created": true]) : "created user \(name) with roles \(roles.joined(separator: ", "))\(scope.map { ", scope \($0)" } ?? "")")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List users with their roles, scope and login mechanisms.", discussion: Help.exampleLines("millrace user list", "millrace user list --data-dir /var/lib/millrace --json"))
        @OptionGroup var target: SecurityTarget
        @Flag(help: "Print JSON instead of a table.") var json = false

        func run() async throws {
            let users = try await target.describe().users
            if json {
                print(
                    Output.json([
                        "users": users.map {
                            ["user": $0.name, "roles": $0.roles, "scope": $0.scope, "mechanisms": $0.mechanisms, "created_ms": $0.createdAtMs, "password_changed_ms": $0.passwordChangedAtMs] as [String: Any]
                        }
                    ]))
            } else if users.isEmpty {
                print("no users (create the first administrator with `millrace user create admin --role enterprise-admin --data-dir DIR`)")
            } else {
                print(
                    Output.table(
                        ["USER", "ROLES", "SCOPE", "LOGIN", "PASSWORD CHANGED"],
                        users.map {
                            [
                                $0.name, $0.roles.joined(separator: ","), $0.scope.isEmpty ? "-" : $0.scope, $0.mechanisms.isEmpty ? "certificate" : "password",
                                $0.mechanisms.isEmpty ? "-" : Output.time(milliseconds: $0.passwordChangedAtMs),
                            ]
                        }))
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a user (its open connections keep their login until they close).", discussion: Help.exampleLines("millrace user delete contractor-7"))
        @OptionGroup var target: SecurityTarget
        @Argument(help: "User name.") var name: String
        @Flag(help: "Print one JSON object instead of a sentence.") var json = false

        func run() async throws {
            try await target.apply(.deleteUser(name: name))
            print(json ? Output.json(["user": name, "deleted": true]) : "deleted user \(name)")
        }
    }

    struct Passwd: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change a user's password (asked for, or read from stdin).", discussion: Help.exampleLines("millrace user passwd mes-pl01", "echo \"$NEW\" | millrace user passwd mes-pl01 --password-stdin"))
        @OptionGroup var target: SecurityTarget
        @Argument(help: "User name.") var name: String
        @Flag(help: "Read the new password from the first line of stdin.") var passwordStdin = false
        @Flag(help: "Print one JSON object instead of a sentence.") var json = false

        func run() async throws {
            let credentials = SCRAMCredential.all(password: try newPassword(for: name, fromStandardInput: passwordStdin))
            try await target.apply(.setPassword(name: name, credentials: credentials))
            print(json ? Output.json(["user": name, "password_changed": true]) : "changed the password of \(name); its next logins use the new one")
        }
    }

    struct Alter: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change a user's roles or scope.", discussion: Help.exampleLines("millrace user alter mes-pl01 --role plant-system --role auditor", "millrace user alter acme-portal --scope acme"))
        @OptionGroup var target: SecurityTarget
        @Argument(help: "User name.") var name: String
        @Option(name: .customLong("role"), help: "The user's roles from now on (repeat for several).") var roles: [String] = []
        @Option(help: "The user's scope from now on.") var scope: String?
        @Flag(help: "Print one JSON object instead of a sentence.") var json = false

        func run() async throws {
            guard !roles.isEmpty || scope != nil else { throw CommandFailure(message: "error: give --role or --scope") }
            try await target.apply(.setUser(name: name, roles: roles.isEmpty ? nil : roles, scope: scope.map { .some($0) }))
            print(json ? Output.json(["user": name, "altered": true]) : "changed user \(name); its next logins carry the change")
        }
    }
}

struct RoleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "role", abstract: "Roles: named sets of ACL entries that users hold.", subcommands: [Create.self, List.self, Delete.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create an empty role; give it entries with `millrace acl create --role`.", discussion: Help.exampleLines("millrace role create erp-reader"))
        @OptionGroup var target: SecurityTarget
        @Argument(help: "Role name.") var name: String
        @Flag(help: "Print one JSON object instead of a sentence.") var json = false

        func run() async throws {
            try await target.apply(.createRole(name: name))
            print(json ? Output.json(["role": name, "created": true]) : "created role \(name); add entries with `millrace acl create --role \(name) --allow read --topic 'PATTERN'`")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List roles with their entries.", discussion: Help.exampleLines("millrace role list", "millrace role list --json"))
        @OptionGroup var target: SecurityTarget
        @Flag(help: "Print JSON instead of a table.") var json = false

        func run() async throws {
            let roles = try await target.describe().roles
            if json {
                print(Output.json(["roles": roles.map { ["role": $0.name, "built_in": $0.builtIn, "entries": $0.entries.map(\.description)] as [String: Any] }]))
            } else {
                print(
                    Output.table(
                        ["ROLE", "BUILT IN", "ENTRIES"],
                        roles.map { [$0.name, $0.builtIn ? "yes" : "no", $0.entries.isEmpty ? "-" : $0.entries.map(\.description).joined(separator: "; ")] }))
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a role no user holds (built-in roles stay; change their entries instead).", discussion: Help.exampleLines("millrace role delete erp-reader"))
        @OptionGroup var target: SecurityTarget
        @Argument(help: "Role name.") var name: String
        @Flag(help: "Print one JSON object instead of a sentence.") var json = false

        func run() async throws {
            try await target.apply(.deleteRole(name: name))
            print(json ? Output.json(["role": name, "deleted": true]) : "deleted role \(name)")
        }
    }
}

/// The entry an `acl create|delete` names.
struct ACLEntryOptions: ParsableArguments {
    @Option(help: "Give the entry to this principal (a user, or a certificate's subject).") var principal: String?
    @Option(help: "Give the entry to this role.") var role: String?
    @Option(help: "Allow this operation: read, write, create, delete, alter, describe, admin.") var allow: String?
    @Option(help: "Deny this operation (a deny wins over every allow).") var deny: String?
    @Option(help: "Topics: a name, a prefix ending in * (plant.PL03.*), or * (every topic not starting with _).") var topic: String?
    @Option(help: "Consumer groups: a name, prefix* or *.") var group: String?
    @Option(help: "Schema subjects (a topic's schemas): a name, prefix* or *.") var subject: String?
    @Flag(help: "The cluster (for admin and describe).") var cluster = false

    func entry() throws -> (ACLEntry, SecurityState.EntryHolder) {
        let holder: SecurityState.EntryHolder
        switch (principal, role) {
        case (let principal?, nil): holder = .principal(principal)
        case (nil, let role?): holder = .role(role)
        default: throw CommandFailure(message: "error: give --principal or --role (one of them)")
        }
        let effect: ACLEffect
        let operationName: String
        switch (allow, deny) {
        case (let name?, nil): (effect, operationName) = (.allow, name)
        case (nil, let name?): (effect, operationName) = (.deny, name)
        default: throw CommandFailure(message: "error: give --allow OPERATION or --deny OPERATION (one of them)")
        }
        guard let operation = SecurityOperation(rawValue: operationName) else {
            throw CommandFailure(message: "error: \(operationName) is not an operation; use one of \(SecurityOperation.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let resources: [(ResourceType, String)] = [(.topic, topic), (.group, group), (.subject, subject), (.cluster, cluster ? "*" : nil)].compactMap { type, pattern in
            pattern.map { (type, $0) }
        }
        guard resources.count == 1, let (type, text) = resources.first else {
            throw CommandFailure(message: "error: give one of --topic PATTERN, --group PATTERN, --subject PATTERN or --cluster")
        }
        do {
            return (ACLEntry(effect, operation, type, try ResourcePattern(text)), holder)
        } catch {
            throw CommandFailure(message: "error: \(error.message)")
        }
    }
}

struct ACLCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "acl", abstract: "ACL entries: allow or deny an operation on topics, groups, schema subjects or the cluster.",
        subcommands: [Create.self, List.self, Delete.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add an entry to a role or a principal.",
            discussion: Help.exampleLines(
                "millrace acl create --role erp-reader --allow read --topic '*'", "millrace acl create --principal mes-pl01 --deny write --topic plant.PL01.bom",
                "millrace acl create --role plant-operator --allow alter --subject 'plant.{scope}.*'"))
        @OptionGroup var target: SecurityTarget
        @OptionGroup var options: ACLEntryOptions
        @Flag(help: "Print one JSON object instead of a sentence.") var json = false

        func run() async throws {
            let (entry, holder) = try options.entry()
            try await target.apply(.addEntry(entry, to: holder))
            print(json ? Output.json(["holder": holder.description, "entry": entry.description, "created": true]) : "\(holder): \(entry)")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List entries, of every role and principal or of one.", discussion: Help.exampleLines("millrace acl list", "millrace acl list --role supplier", "millrace acl list --json"))
        @OptionGroup var target: SecurityTarget
        @Option(help: "Only this principal's own entries.") var principal: String?
        @Option(help: "Only this role's entries.") var role: String?
        @Flag(help: "Print JSON instead of a table.") var json = false

        func run() async throws {
            let description = try await target.describe()
            var rows: [(holder: String, entry: ACLEntry)] = []
            for role in description.roles where self.role == nil || self.role == role.name { rows += role.entries.map { ("role \(role.name)", $0) } }
            for holder in description.principals where principal == nil || principal == holder.name { rows += holder.entries.map { ("principal \(holder.name)", $0) } }
            if role != nil { rows = rows.filter { $0.holder.hasPrefix("role ") } }
            if principal != nil { rows = rows.filter { $0.holder.hasPrefix("principal ") } }
            if json {
                print(
                    Output.json([
                        "entries": rows.map {
                            ["holder": $0.holder, "effect": $0.entry.effect.rawValue, "operation": $0.entry.operation.rawValue, "resource": $0.entry.resourceType.rawValue, "pattern": $0.entry.pattern.text]
                        }
                    ]))
            } else if rows.isEmpty {
                print("no entries")
            } else {
                print(
                    Output.table(
                        ["HOLDER", "EFFECT", "OPERATION", "RESOURCE", "PATTERN"],
                        rows.map { [$0.holder, $0.entry.effect.rawValue, $0.entry.operation.rawValue, $0.entry.resourceType.rawValue, $0.entry.resourceType == .cluster ? "-" : $0.entry.pattern.text] }))
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove an entry from a role or a principal.", discussion: Help.exampleLines("millrace acl delete --role anonymous --allow write --topic '*'"))
        @OptionGroup var target: SecurityTarget
        @OptionGroup var options: ACLEntryOptions
        @Flag(help: "Print one JSON object instead of a sentence.") var json = false

        func run() async throws {
            let (entry, holder) = try options.entry()
            try await target.apply(.removeEntry(entry, from: holder))
            print(json ? Output.json(["holder": holder.description, "entry": entry.description, "deleted": true]) : "removed from \(holder): \(entry)")
        }
    }
}

struct WhoAmICommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "whoami", abstract: "Who the broker takes this client for: principal, roles, scope, login, encryption.",
        discussion: Help.exampleLines("MILLRACE_USER=mes-pl01 millrace whoami", "millrace whoami --json"))
    @OptionGroup var broker: BrokerOptions
    @Flag(help: "Print one JSON object instead of lines.") var json = false

    func run() async throws {
        let identity = try await withClient(broker) { try await $0.whoAmI() }
        if json {
            print(
                Output.json([
                    "principal": identity.principal, "roles": identity.roles, "scope": identity.scope, "authentication": identity.authentication,
                    "encrypted": identity.encrypted,
                ]))
        } else {
            print("principal       \(identity.principal)")
            print("roles           \(identity.roles.isEmpty ? "-" : identity.roles.joined(separator: ", "))")
            print("scope           \(identity.scope.isEmpty ? "-" : identity.scope)")
            print("authentication  \(identity.authentication == "none" ? "none (the broker runs with --auth off: every request allowed)" : identity.authentication)")
            print("encrypted       \(identity.encrypted ? "yes (TLS)" : "no")")
        }
    }
}

struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit", abstract: "Who changed what, and every refused request: the broker's audit topic (_audit), newest last.",
        discussion: """
            Each record names its time, the principal, where it came from, the operation, the resource and the result (ok, or the \
            error: not_authorized, not_owner, authentication_failed, …). Reading it needs the read right on topic _audit (the \
            auditor and enterprise-admin roles have it).
            """ + Help.examples("millrace audit --since 24h", "millrace audit --principal mes-pl01 --since 7d", "millrace audit --refused --json"))
    @OptionGroup var broker: BrokerOptions
    @Option(help: "Records of the last DURATION (90m, 24h, 7d); default 24h.") var since = "24h"
    @Option(help: "Only this principal's records.") var principal: String?
    @Flag(help: "Only refusals (every result but ok).") var refused = false
    @Flag(help: "Print one JSON object instead of a table.") var json = false

    func run() async throws {
        guard let window = Durations.parse(since), window > 0 else {
            throw CommandFailure(message: "error: --since takes a duration such as 90m, 24h or 7d (got \(since))")
        }
        let from = Int64(Date().timeIntervalSince1970 * 1_000) - window
        let (principal, refused) = (self.principal, self.refused)
        let records = try await withClient(broker) { client -> [[String: Any]] in
            var rows: [[String: Any]] = []
            for try await record in Consumer(client: client, topic: "_audit", from: .timestamp(from), stopAtEnd: true) {
                guard let value = record.value, let object = try? JSONSerialization.jsonObject(with: Data(value)) as? [String: Any] else { continue }
                if let principal, object["principal"] as? String != principal { continue }
                if refused, object["result"] as? String == "ok" { continue }
                rows.append(object)
            }
            return rows
        }
        if json {
            print(Output.json(["records": records, "since_ms": from]))
        } else if records.isEmpty {
            print("no audit records since \(Output.time(milliseconds: from))\(principal.map { " for \($0)" } ?? "")")
        } else {
            print(
                Output.table(
                    ["TIME", "PRINCIPAL", "PEER", "OPERATION", "RESOURCE", "RESULT"],
                    records.map { row in
                        let result = row["result"] as? String ?? "?"
                        let detail = row["detail"] as? String ?? ""
                        return [
                            Output.time(milliseconds: row["time_ms"] as? Int64 ?? Int64(row["time_ms"] as? Int ?? 0)), row["principal"] as? String ?? "?", row["peer"] as? String ?? "?",
                            row["operation"] as? String ?? "?", row["resource"] as? String ?? "?", result == "ok" || detail.isEmpty ? result : "\(result): \(detail)",
                        ]
                    }))
        }
    }
}

/// Who made an offline change, as the audit record names it: the account running the command
/// (from the system, not the environment, which the caller sets), and who it came through sudo
/// from when it did.
func offlineAccount() -> String {
    let uid = getuid()
    let name = getpwuid(uid).map { String(cString: $0.pointee.pw_name) } ?? "uid \(uid)"
    guard let sudo = ProcessInfo.processInfo.environment["SUDO_USER"], sudo != name else { return name }
    return "\(name) (via sudo from \(sudo))"
}
