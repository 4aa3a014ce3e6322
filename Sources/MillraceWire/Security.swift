import MillraceFormat
import MillraceSecurity
import NIOCore

// Authenticate, WhoAmI, DescribeSecurity and AlterSecurity (issue 26; docs/PROTOCOL.md).

/// One SASL step: the mechanism (`SCRAM-SHA-256` or `SCRAM-SHA-512`) and the client's message.
public struct AuthenticateRequest: Equatable, Sendable {
    public var mechanism: String
    public var message: [UInt8]

    public init(mechanism: String, message: [UInt8]) {
        self.mechanism = mechanism
        self.message = message
    }

    /// SCRAM messages are short; a longer one is refused before it is read.
    public static let messageBytesMax = 4_096
}

/// The broker's SASL message; once `complete`, who the connection now acts as.
public struct AuthenticateResponse: Equatable, Sendable {
    public var message: [UInt8]
    public var complete: Bool
    public var identity: Identity

    public init(message: [UInt8], complete: Bool, identity: Identity = Identity()) {
        self.message = message
        self.complete = complete
        self.identity = identity
    }

    func write(to buffer: inout ByteBuffer) {
        buffer.writeMillraceBytes(message)
        buffer.writeInteger(Int8(complete ? 1 : 0))
        identity.write(to: &buffer)
    }

    init(from buffer: inout ByteBuffer) throws {
        message = try buffer.readMillraceBytes("sasl message") ?? []
        complete = try buffer.readMillraceInteger("complete", as: Int8.self) != 0
        identity = try Identity(from: &buffer)
    }
}

/// Who a connection acts as: its principal, roles, scope and how it was identified
/// (`none`: the broker runs with `--auth off`; `anonymous`, `password`, `certificate`).
public struct Identity: Equatable, Sendable {
    public var principal: String
    public var roles: [String]
    public var scope: String
    public var authentication: String
    /// Whether the connection is encrypted (TLS).
    public var encrypted: Bool

    public init(principal: String = "", roles: [String] = [], scope: String = "", authentication: String = "", encrypted: Bool = false) {
        self.principal = principal
        self.roles = roles
        self.scope = scope
        self.authentication = authentication
        self.encrypted = encrypted
    }

    public init(_ principal: Principal, encrypted: Bool) {
        self.init(
            principal: principal.name, roles: principal.roles, scope: principal.scope ?? "", authentication: principal.authentication.rawValue,
            encrypted: encrypted)
    }

    func write(to buffer: inout ByteBuffer) {
        buffer.writeMillraceString(principal)
        buffer.writeMillraceArray(roles) { $0.writeMillraceString($1) }
        buffer.writeMillraceString(scope)
        buffer.writeMillraceString(authentication)
        buffer.writeInteger(Int8(encrypted ? 1 : 0))
    }

    init(from buffer: inout ByteBuffer) throws {
        principal = try buffer.readMillraceString("principal")
        roles = try buffer.readMillraceArray("roles", minimumElementBytes: 2) { try $0.readMillraceString("role") }
        scope = try buffer.readMillraceString("scope")
        authentication = try buffer.readMillraceString("authentication")
        encrypted = try buffer.readMillraceInteger("encrypted", as: Int8.self) != 0
    }
}

/// Users (without their stored keys), roles and principals' own entries, as
/// `millrace user|role|acl list` show them.
public struct SecurityDescription: Equatable, Sendable {
    public struct User: Equatable, Sendable {
        public var name: String
        public var roles: [String]
        public var scope: String
        public var mechanisms: [String]
        public var createdAtMs: Int64
        public var passwordChangedAtMs: Int64

        public init(name: String, roles: [String], scope: String, mechanisms: [String], createdAtMs: Int64, passwordChangedAtMs: Int64) {
            self.name = name
            self.roles = roles
            self.scope = scope
            self.mechanisms = mechanisms
            self.createdAtMs = createdAtMs
            self.passwordChangedAtMs = passwordChangedAtMs
        }
    }

    public struct Holder: Equatable, Sendable {
        public var name: String
        public var builtIn: Bool
        public var entries: [ACLEntry]

        public init(name: String, builtIn: Bool, entries: [ACLEntry]) {
            self.name = name
            self.builtIn = builtIn
            self.entries = entries
        }
    }

    public var users: [User]
    public var roles: [Holder]
    public var principals: [Holder]

    public init(users: [User], roles: [Holder], principals: [Holder]) {
        self.users = users
        self.roles = roles
        self.principals = principals
    }

    public init(_ state: SecurityState) {
        users = state.users.keys.sorted().map { name in
            let user = state.users[name]!
            return User(
                name: name, roles: user.roles, scope: user.scope ?? "", mechanisms: user.credentials.map(\.mechanism.rawValue), createdAtMs: user.createdAtMs,
                passwordChangedAtMs: user.passwordChangedAtMs)
        }
        roles = state.roles.keys.sorted().map { Holder(name: $0, builtIn: SecurityState.isBuiltIn($0), entries: state.roles[$0]!.entries) }
        principals = state.principalEntries.keys.sorted().map { Holder(name: $0, builtIn: false, entries: state.principalEntries[$0]!) }
    }

    func write(to buffer: inout ByteBuffer) {
        buffer.writeMillraceArray(users) { buffer, user in
            buffer.writeMillraceString(user.name)
            buffer.writeMillraceArray(user.roles) { $0.writeMillraceString($1) }
            buffer.writeMillraceString(user.scope)
            buffer.writeMillraceArray(user.mechanisms) { $0.writeMillraceString($1) }
            buffer.writeInteger(user.createdAtMs)
            buffer.writeInteger(user.passwordChangedAtMs)
        }
        for holders in [roles, principals] {
            buffer.writeMillraceArray(holders) { buffer, holder in
                buffer.writeMillraceString(holder.name)
                buffer.writeInteger(Int8(holder.builtIn ? 1 : 0))
                buffer.writeMillraceArray(holder.entries) { $1.write(to: &$0) }
            }
        }
    }

    init(from buffer: inout ByteBuffer) throws {
        users = try buffer.readMillraceArray("users", minimumElementBytes: 24) { buffer in
            User(
                name: try buffer.readMillraceString("user"), roles: try buffer.readMillraceArray("roles", minimumElementBytes: 2) { try $0.readMillraceString("role") },
                scope: try buffer.readMillraceString("scope"),
                mechanisms: try buffer.readMillraceArray("mechanisms", minimumElementBytes: 2) { try $0.readMillraceString("mechanism") },
                createdAtMs: try buffer.readMillraceInteger("created"), passwordChangedAtMs: try buffer.readMillraceInteger("password changed"))
        }
        func holders(_ what: String) throws -> [Holder] {
            try buffer.readMillraceArray(what, minimumElementBytes: 7) { buffer in
                Holder(
                    name: try buffer.readMillraceString("name"), builtIn: try buffer.readMillraceInteger("built in", as: Int8.self) != 0,
                    entries: try buffer.readMillraceArray("entries", minimumElementBytes: 5) { try ACLEntry(from: &$0) })
            }
        }
        roles = try holders("roles")
        principals = try holders("principals")
    }
}

extension ACLEntry {
    /// u8 effect, u8 operation, u8 resource type (each an index of its enum's cases), pattern.
    func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt8(ACLEffect.allCases.firstIndex(of: effect)!))
        buffer.writeInteger(UInt8(SecurityOperation.allCases.firstIndex(of: operation)!))
        buffer.writeInteger(UInt8(ResourceType.allCases.firstIndex(of: resourceType)!))
        buffer.writeMillraceString(pattern.text)
    }

    init(from buffer: inout ByteBuffer) throws {
        let effect = Int(try buffer.readMillraceInteger("effect", as: UInt8.self))
        let operation = Int(try buffer.readMillraceInteger("operation", as: UInt8.self))
        let type = Int(try buffer.readMillraceInteger("resource type", as: UInt8.self))
        guard effect < ACLEffect.allCases.count, operation < SecurityOperation.allCases.count, type < ResourceType.allCases.count else {
            throw MillraceError(.invalidRequest, "ACL entry with effect \(effect), operation \(operation), resource type \(type): not one this broker knows")
        }
        let text = try buffer.readMillraceString("pattern")
        let pattern: ResourcePattern
        do { pattern = try ResourcePattern(text) } catch { throw MillraceError(.invalidRequest, error.message) }
        self.init(ACLEffect.allCases[effect], SecurityOperation.allCases[operation], ResourceType.allCases[type], pattern)
    }
}

extension SCRAMCredential {
    func write(to buffer: inout ByteBuffer) {
        buffer.writeMillraceString(mechanism.rawValue)
        buffer.writeMillraceBytes(salt)
        buffer.writeInteger(Int32(clamping: iterations))
        buffer.writeMillraceBytes(storedKey)
        buffer.writeMillraceBytes(serverKey)
    }

    init(from buffer: inout ByteBuffer) throws {
        let name = try buffer.readMillraceString("mechanism")
        guard let mechanism = SCRAMMechanism(rawValue: name) else {
            throw MillraceError(.invalidRequest, "mechanism \(name) is not one of \(SCRAMMechanism.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self.init(
            mechanism: mechanism, salt: try buffer.readMillraceBytes("salt") ?? [], iterations: Int(try buffer.readMillraceInteger("iterations", as: Int32.self)),
            storedKey: try buffer.readMillraceBytes("stored key") ?? [], serverKey: try buffer.readMillraceBytes("server key") ?? [])
    }
}

extension SecurityChange {
    /// u8 kind (0 create user … 7 remove entry), then the fields.
    func write(to buffer: inout ByteBuffer) {
        func writeHolder(_ holder: SecurityState.EntryHolder) {
            switch holder {
            case .role(let name):
                buffer.writeInteger(UInt8(0))
                buffer.writeMillraceString(name)
            case .principal(let name):
                buffer.writeInteger(UInt8(1))
                buffer.writeMillraceString(name)
            }
        }
        switch self {
        case .createUser(let name, let roles, let scope, let credentials):
            buffer.writeInteger(UInt8(0))
            buffer.writeMillraceString(name)
            buffer.writeMillraceArray(roles) { $0.writeMillraceString($1) }
            buffer.writeInteger(Int8(scope == nil ? 0 : 1))
            buffer.writeMillraceString(scope ?? "")
            buffer.writeMillraceArray(credentials) { $1.write(to: &$0) }
        case .deleteUser(let name):
            buffer.writeInteger(UInt8(1))
            buffer.writeMillraceString(name)
        case .setPassword(let name, let credentials):
            buffer.writeInteger(UInt8(2))
            buffer.writeMillraceString(name)
            buffer.writeMillraceArray(credentials) { $1.write(to: &$0) }
        case .setUser(let name, let roles, let scope):
            buffer.writeInteger(UInt8(3))
            buffer.writeMillraceString(name)
            buffer.writeInteger(Int8(roles == nil ? 0 : 1))
            buffer.writeMillraceArray(roles ?? []) { $0.writeMillraceString($1) }
            // 0 keep, 1 none, 2 this one
            switch scope {
            case nil: buffer.writeInteger(Int8(0))
            case .some(nil): buffer.writeInteger(Int8(1))
            case .some(.some): buffer.writeInteger(Int8(2))
            }
            buffer.writeMillraceString((scope ?? nil) ?? "")
        case .createRole(let name):
            buffer.writeInteger(UInt8(4))
            buffer.writeMillraceString(name)
        case .deleteRole(let name):
            buffer.writeInteger(UInt8(5))
            buffer.writeMillraceString(name)
        case .addEntry(let entry, let holder):
            buffer.writeInteger(UInt8(6))
            writeHolder(holder)
            entry.write(to: &buffer)
        case .removeEntry(let entry, let holder):
            buffer.writeInteger(UInt8(7))
            writeHolder(holder)
            entry.write(to: &buffer)
        }
    }

    init(from buffer: inout ByteBuffer) throws {
        func names() throws -> [String] { try buffer.readMillraceArray("roles", minimumElementBytes: 2, countMax: 64) { try $0.readMillraceString("role") } }
        func credentials() throws -> [SCRAMCredential] {
            try buffer.readMillraceArray("credentials", minimumElementBytes: 18, countMax: 4) { try SCRAMCredential(from: &$0) }
        }
        func holder() throws -> SecurityState.EntryHolder {
            let kind = try buffer.readMillraceInteger("holder kind", as: UInt8.self)
            let name = try buffer.readMillraceString("holder")
            switch kind {
            case 0: return .role(name)
            case 1: return .principal(name)
            default: throw MillraceError(.invalidRequest, "ACL holder kind \(kind) is not 0 (role) or 1 (principal)")
            }
        }
        let kind = try buffer.readMillraceInteger("change kind", as: UInt8.self)
        switch kind {
        case 0:
            let name = try buffer.readMillraceString("user")
            let roles = try names()
            let hasScope = try buffer.readMillraceInteger("has scope", as: Int8.self) != 0
            let scope = try buffer.readMillraceString("scope")
            self = .createUser(name: name, roles: roles, scope: hasScope ? scope : nil, credentials: try credentials())
        case 1: self = .deleteUser(name: try buffer.readMillraceString("user"))
        case 2: self = .setPassword(name: try buffer.readMillraceString("user"), credentials: try credentials())
        case 3:
            let name = try buffer.readMillraceString("user")
            let hasRoles = try buffer.readMillraceInteger("has roles", as: Int8.self) != 0
            let roles = try names()
            let scopeKind = try buffer.readMillraceInteger("scope kind", as: Int8.self)
            let scope = try buffer.readMillraceString("scope")
            let change: String?? =
                switch scopeKind {
                case 0: nil
                case 1: .some(nil)
                default: .some(scope)
                }
            self = .setUser(name: name, roles: hasRoles ? roles : nil, scope: change)
        case 4: self = .createRole(name: try buffer.readMillraceString("role"))
        case 5: self = .deleteRole(name: try buffer.readMillraceString("role"))
        case 6:
            let holder = try holder()
            self = .addEntry(try ACLEntry(from: &buffer), to: holder)
        case 7:
            let holder = try holder()
            self = .removeEntry(try ACLEntry(from: &buffer), from: holder)
        default: throw MillraceError(.invalidRequest, "security change kind \(kind) is not one this broker knows (0...7)")
        }
    }
}
