/// One change to the security state, as `millrace user|role|acl` asks for it: made by the
/// broker for a logged-in administrator, or offline on a stopped broker's data directory.
public enum SecurityChange: Equatable, Sendable {
    /// A user with its roles, scope and SCRAM credentials (made by the client from the
    /// password, which never leaves it; none: a certificate-only principal).
    case createUser(name: String, roles: [String], scope: String?, credentials: [SCRAMCredential])
    case deleteUser(name: String)
    case setPassword(name: String, credentials: [SCRAMCredential])
    /// New roles (nil: keep) and scope (nil: keep; .some(nil): none).
    case setUser(name: String, roles: [String]?, scope: String??)
    case createRole(name: String)
    case deleteRole(name: String)
    case addEntry(ACLEntry, to: SecurityState.EntryHolder)
    case removeEntry(ACLEntry, from: SecurityState.EntryHolder)

    /// What the audit log names as the operation.
    public var operation: String {
        switch self {
        case .createUser: "user create"
        case .deleteUser: "user delete"
        case .setPassword: "user passwd"
        case .setUser: "user alter"
        case .createRole: "role create"
        case .deleteRole: "role delete"
        case .addEntry: "acl create"
        case .removeEntry: "acl delete"
        }
    }

    /// What the audit log names as the resource.
    public var target: String {
        switch self {
        case .createUser(let name, _, _, _), .deleteUser(let name), .setPassword(let name, _), .setUser(let name, _, _): "user \(name)"
        case .createRole(let name), .deleteRole(let name): "role \(name)"
        case .addEntry(let entry, let holder), .removeEntry(let entry, let holder): "\(holder): \(entry)"
        }
    }
}

extension SecurityState {
    /// Applies `change` at `nowMs`; throws what a person should read when it cannot be made.
    public mutating func apply(_ change: SecurityChange, nowMs: Int64) throws(SecurityError) {
        switch change {
        case .createUser(let name, let roles, let scope, let credentials):
            try Self.checkCredentials(credentials)
            try createUser(UserRecord(name: name, roles: roles, scope: scope, credentials: credentials, createdAtMs: nowMs, passwordChangedAtMs: nowMs))
        case .deleteUser(let name):
            try deleteUser(name)
        case .setPassword(let name, let credentials):
            try Self.checkCredentials(credentials)
            try setCredentials(user: name, credentials, atMs: nowMs)
        case .setUser(let name, let roles, let scope):
            try setRoles(user: name, roles: roles, scope: scope)
        case .createRole(let name):
            try createRole(name)
        case .deleteRole(let name):
            try deleteRole(name)
        case .addEntry(let entry, let holder):
            try addEntry(entry, to: holder)
        case .removeEntry(let entry, let holder):
            try removeEntry(entry, from: holder)
        }
    }

    static func checkCredentials(_ credentials: [SCRAMCredential]) throws(SecurityError) {
        for credential in credentials {
            guard credential.iterations >= SCRAMCredential.iterationsMin, credential.iterations <= SCRAMCredential.iterationsMax else {
                throw SecurityError("a credential's iteration count is \(SCRAMCredential.iterationsMin)...\(SCRAMCredential.iterationsMax); \(credential.iterations) given")
            }
            guard credential.salt.count >= 16, credential.salt.count <= 64, credential.storedKey.count == credential.mechanism.digestBytes,
                credential.serverKey.count == credential.mechanism.digestBytes
            else { throw SecurityError("a \(credential.mechanism.rawValue) credential has a salt of 16...64 bytes and keys of \(credential.mechanism.digestBytes)") }
        }
        guard Set(credentials.map(\.mechanism)).count == credentials.count else { throw SecurityError("one credential per mechanism") }
    }
}
