import Foundation
import MillraceFormat

/// A user the broker knows: its stored SCRAM credentials (none for a principal that only
/// presents a client certificate), its roles, and its scope (the plant or supplier that
/// `{scope}` in its roles' patterns stands for).
public struct UserRecord: Equatable, Sendable {
    public var name: String
    public var roles: [String]
    public var scope: String?
    public var credentials: [SCRAMCredential]
    public var createdAtMs: Int64
    public var passwordChangedAtMs: Int64

    public init(name: String, roles: [String], scope: String?, credentials: [SCRAMCredential], createdAtMs: Int64, passwordChangedAtMs: Int64) {
        self.name = name
        self.roles = roles
        self.scope = scope
        self.credentials = credentials
        self.createdAtMs = createdAtMs
        self.passwordChangedAtMs = passwordChangedAtMs
    }

    public func credential(_ mechanism: SCRAMMechanism) -> SCRAMCredential? { credentials.first { $0.mechanism == mechanism } }

    public func principal(_ authentication: Principal.Authentication) -> Principal {
        Principal(name: name, roles: roles, scope: scope, authentication: authentication)
    }
}

/// A named set of ACL entries.
public struct Role: Equatable, Sendable {
    public var name: String
    public var entries: [ACLEntry]

    public init(name: String, entries: [ACLEntry]) {
        self.name = name
        self.entries = entries
    }
}

/// Everything the broker decides logins and rights with: users, roles and the entries given
/// to single principals. Stored as one record (`Storage.securityRecord`) and held whole in
/// memory; a change makes a new state and replaces the stored one in one transaction.
public struct SecurityState: Equatable, Sendable {
    public internal(set) var users: [String: UserRecord] = [:]
    public internal(set) var roles: [String: Role] = [:]
    /// Entries given to one principal by name (`acl create --principal P`).
    public internal(set) var principalEntries: [String: [ACLEntry]] = [:]

    public static let usersMax = 10_000
    public static let rolesMax = 1_000
    public static let entriesMax = 10_000
    public static let anonymousRole = "anonymous"
    public static let adminRole = "enterprise-admin"

    /// The built-in roles, as a new data directory starts with them: an operator may change
    /// their entries, not delete them. `{scope}` is the user's plant or supplier.
    public static let builtInRoles: [Role] = {
        func entries(_ operations: [SecurityOperation], _ type: ResourceType, _ pattern: String) -> [ACLEntry] {
            operations.map { ACLEntry(.allow, $0, type, ResourcePattern(unchecked: pattern)) }
        }
        let plant = "plant.{scope}.*"
        let supplier = "supplier.{scope}.*"
        return [
            Role(name: adminRole, entries: entries([.admin], .cluster, "*")),
            Role(
                name: "plant-operator",
                entries: entries([.read, .write, .create, .delete, .alter], .topic, plant) + entries([.read, .alter, .delete], .group, plant)
                    + entries([.read, .alter], .subject, plant) + entries([.describe], .cluster, "*")),
            Role(
                name: "plant-system",
                entries: entries([.read, .write], .topic, plant) + entries([.read], .group, plant) + entries([.read], .subject, plant)
                    + entries([.describe], .cluster, "*")),
            Role(
                name: "supplier",
                entries: entries([.read, .write], .topic, supplier) + entries([.read], .group, supplier) + entries([.read], .subject, supplier)),
            Role(
                name: "auditor",
                entries: entries([.read], .topic, "*") + entries([.read], .topic, "_audit") + entries([.read], .group, "*")
                    + entries([.read], .subject, "*") + entries([.read], .cluster, "*")),
            Role(
                name: anonymousRole,
                entries: entries([.read, .write, .create], .topic, "*") + entries([.read], .group, "*") + entries([.read], .subject, "*")
                    + entries([.describe], .cluster, "*")),
        ]
    }()

    public static func isBuiltIn(_ role: String) -> Bool { builtInRoles.contains { $0.name == role } }

    /// A new data directory's state: the built-in roles, no users.
    public static var initial: SecurityState {
        var state = SecurityState()
        for role in builtInRoles { state.roles[role.name] = role }
        return state
    }

    public init() {}

    // MARK: Decisions

    /// Whether `principal` may do `operation` on `resource`: an entry of its own or of one of
    /// its roles must allow it and none may deny it (a deny wins).
    /// The broker decides on `current(principal)`, so a user deleted or given other roles has
    /// its open connections follow at once.
    public func decide(_ principal: Principal, _ operation: SecurityOperation, _ resource: Resource) -> Decision {
        if principal.isUnrestricted { return Decision(allowed: true, reason: "unrestricted (\(principal.authentication.rawValue))") }
        var allowedBy: String?
        for (source, entries) in entriesOf(principal) {
            for entry in entries where entry.covers(operation, on: resource, scope: principal.scope) {
                if entry.effect == .deny { return Decision(allowed: false, reason: "denied by \(source): \(entry)") }
                if allowedBy == nil { allowedBy = "\(source): \(entry)" }
            }
        }
        if let allowedBy { return Decision(allowed: true, reason: allowedBy) }
        let roles = principal.roles.isEmpty ? "no roles" : "roles \(principal.roles.joined(separator: ", "))"
        return Decision(allowed: false, reason: "no entry of \(principal.name) (\(roles)) allows it")
    }

    /// `principal` as the state has it now: a logged-in user's present roles and scope (none,
    /// once the user is deleted); a certificate's user's, or none.
    public func current(_ principal: Principal) -> Principal {
        switch principal.authentication {
        case .password, .certificate:
            return users[principal.name]?.principal(principal.authentication) ?? Principal(name: principal.name, roles: [], authentication: principal.authentication)
        case .none, .anonymous, .broker:
            return principal
        }
    }

    private func entriesOf(_ principal: Principal) -> [(String, [ACLEntry])] {
        var sources: [(String, [ACLEntry])] = []
        if let own = principalEntries[principal.name] { sources.append(("principal \(principal.name)", own)) }
        for name in principal.roles { if let role = roles[name] { sources.append(("role \(name)", role.entries)) } }
        return sources
    }

    /// The principal a login or certificate for `name` acts as; nil when there is no such user.
    public func principal(named name: String, _ authentication: Principal.Authentication) -> Principal? {
        users[name]?.principal(authentication)
    }

    // MARK: Changes (each returns the error a person reads)

    /// Role and scope names: letters, digits, '.', '_', '-', '@'. User and principal names
    /// may also be a certificate's subject (`CN=gateway-pl01,O=Plant 01`): printable ASCII.
    public static func validate(name: String, what: String) throws(SecurityError) {
        guard !name.isEmpty, name.utf8.count <= 128 else { throw SecurityError("a \(what) name is 1...128 characters") }
        let subjectLike = what == "user" || what == "principal"
        for byte in name.utf8 {
            let ok =
                subjectLike
                ? (byte >= 0x20 && byte <= 0x7E)
                : (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || byte == 0x2E || byte == 0x5F
                    || byte == 0x2D || byte == 0x40
            guard ok else {
                throw SecurityError(
                    subjectLike
                        ? "\(what) name \"\(name)\" may only use printable ASCII characters"
                        : "\(what) name \"\(name)\" may only use letters, digits, '.', '_', '-' and '@'")
            }
        }
        guard !subjectLike || (name.first != " " && name.last != " ") else { throw SecurityError("\(what) name \"\(name)\" starts or ends with a space") }
    }

    public mutating func createUser(_ user: UserRecord) throws(SecurityError) {
        try Self.validate(name: user.name, what: "user")
        guard user.name != Principal.anonymous.name, user.name != Principal.broker.name else {
            throw SecurityError("\(user.name) is the name of a principal the broker uses itself; choose another")
        }
        guard users[user.name] == nil else { throw SecurityError("user \(user.name) exists already; change its password with `millrace user passwd \(user.name)`") }
        guard users.count < Self.usersMax else { throw SecurityError("the broker holds \(Self.usersMax) users, its limit; delete unused ones first") }
        try checkRoles(user.roles)
        if let scope = user.scope { try Self.validate(name: scope, what: "scope") }
        users[user.name] = user
    }

    public mutating func deleteUser(_ name: String) throws(SecurityError) {
        guard users[name] != nil else { throw SecurityError("no user \(name); `millrace user list` shows them") }
        users[name] = nil
    }

    public mutating func setCredentials(user name: String, _ credentials: [SCRAMCredential], atMs: Int64) throws(SecurityError) {
        guard var user = users[name] else { throw SecurityError("no user \(name); `millrace user list` shows them") }
        user.credentials = credentials
        user.passwordChangedAtMs = atMs
        users[name] = user
    }

    public mutating func setRoles(user name: String, roles: [String]?, scope: String??) throws(SecurityError) {
        guard var user = users[name] else { throw SecurityError("no user \(name); `millrace user list` shows them") }
        if let roles {
            try checkRoles(roles)
            user.roles = roles
        }
        if let scope {
            if let scope { try Self.validate(name: scope, what: "scope") }
            user.scope = scope
        }
        users[name] = user
    }

    private func checkRoles(_ names: [String]) throws(SecurityError) {
        for name in names where roles[name] == nil {
            throw SecurityError("no role \(name); the roles are \(roles.keys.sorted().joined(separator: ", ")) (`millrace role create` makes one)")
        }
    }

    public mutating func createRole(_ name: String) throws(SecurityError) {
        try Self.validate(name: name, what: "role")
        guard roles[name] == nil else { throw SecurityError("role \(name) exists already") }
        guard roles.count < Self.rolesMax else { throw SecurityError("the broker holds \(Self.rolesMax) roles, its limit") }
        roles[name] = Role(name: name, entries: [])
    }

    public mutating func deleteRole(_ name: String) throws(SecurityError) {
        guard roles[name] != nil else { throw SecurityError("no role \(name); `millrace role list` shows them") }
        guard !Self.isBuiltIn(name) else {
            throw SecurityError("role \(name) is built in: change its entries with `millrace acl create|delete --role \(name)` instead of deleting it")
        }
        let holders = users.values.filter { $0.roles.contains(name) }.map(\.name).sorted()
        guard holders.isEmpty else {
            throw SecurityError("role \(name) is held by \(holders.prefix(5).joined(separator: ", "))\(holders.count > 5 ? " and \(holders.count - 5) more" : ""); give them other roles first")
        }
        roles[name] = nil
    }

    /// Where an ACL entry goes: a role's, or one principal's own.
    public enum EntryHolder: Equatable, Sendable, CustomStringConvertible {
        case role(String)
        case principal(String)

        public var description: String {
            switch self {
            case .role(let name): "role \(name)"
            case .principal(let name): "principal \(name)"
            }
        }
    }

    /// Adds an entry; false when the holder has it already (nothing changes).
    @discardableResult
    public mutating func addEntry(_ entry: ACLEntry, to holder: EntryHolder) throws(SecurityError) -> Bool {
        guard entryCount < Self.entriesMax else { throw SecurityError("the broker holds \(Self.entriesMax) ACL entries, its limit") }
        switch holder {
        case .role(let name):
            guard var role = roles[name] else { throw SecurityError("no role \(name); `millrace role list` shows them") }
            guard !role.entries.contains(entry) else { return false }
            role.entries.append(entry)
            roles[name] = role
        case .principal(let name):
            try Self.validate(name: name, what: "principal")
            guard !(principalEntries[name] ?? []).contains(entry) else { return false }
            principalEntries[name, default: []].append(entry)
        }
        return true
    }

    public mutating func removeEntry(_ entry: ACLEntry, from holder: EntryHolder) throws(SecurityError) {
        switch holder {
        case .role(let name):
            guard var role = roles[name], let index = role.entries.firstIndex(of: entry) else {
                throw SecurityError("\(holder) has no entry \"\(entry)\"; `millrace acl list --role \(name)` shows its entries")
            }
            role.entries.remove(at: index)
            roles[name] = role
        case .principal(let name):
            guard var entries = principalEntries[name], let index = entries.firstIndex(of: entry) else {
                throw SecurityError("\(holder) has no entry \"\(entry)\"; `millrace acl list --principal \(name)` shows its entries")
            }
            entries.remove(at: index)
            principalEntries[name] = entries.isEmpty ? nil : entries
        }
    }

    public var entryCount: Int { roles.values.reduce(0) { $0 + $1.entries.count } + principalEntries.values.reduce(0) { $0 + $1.count } }

    /// Every entry with its holder, roles first, sorted.
    public var allEntries: [(holder: EntryHolder, entry: ACLEntry)] {
        var result: [(EntryHolder, ACLEntry)] = []
        for name in roles.keys.sorted() { for entry in roles[name]!.entries { result.append((.role(name), entry)) } }
        for name in principalEntries.keys.sorted() { for entry in principalEntries[name]! { result.append((.principal(name), entry)) } }
        return result
    }
}
