import MillraceFormat

// The stored form of `SecurityState` (`Storage.securityRecord`), big-endian:
//   u8 format (1)
//   u32 users, each: str name, u8 roles + str each, u8 has scope (+ str), i64 created,
//     i64 password changed, u8 credentials, each: str mechanism, u16 salt + bytes,
//     u32 iterations, u16 + stored key, u16 + server key
//   u32 roles, each: str name, u32 entries + entry each
//   u32 principals, each: str name, u32 entries + entry each
//   entry: u8 effect, u8 operation, u8 resource type, str pattern
// where str is u16 length + UTF-8.

extension SecurityState {
    static let formatVersion: UInt8 = 1

    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 4_096)
        writer.writeInteger(Self.formatVersion)
        writer.writeInteger(UInt32(users.count))
        for name in users.keys.sorted() {
            let user = users[name]!
            Self.write(user.name, &writer)
            writer.writeInteger(UInt8(user.roles.count))
            for role in user.roles { Self.write(role, &writer) }
            writer.writeInteger(UInt8(user.scope == nil ? 0 : 1))
            if let scope = user.scope { Self.write(scope, &writer) }
            writer.writeInteger(user.createdAtMs)
            writer.writeInteger(user.passwordChangedAtMs)
            writer.writeInteger(UInt8(user.credentials.count))
            for credential in user.credentials {
                Self.write(credential.mechanism.rawValue, &writer)
                Self.write(bytes: credential.salt, &writer)
                writer.writeInteger(UInt32(credential.iterations))
                Self.write(bytes: credential.storedKey, &writer)
                Self.write(bytes: credential.serverKey, &writer)
            }
        }
        writer.writeInteger(UInt32(roles.count))
        for name in roles.keys.sorted() {
            Self.write(name, &writer)
            Self.write(roles[name]!.entries, &writer)
        }
        writer.writeInteger(UInt32(principalEntries.count))
        for name in principalEntries.keys.sorted() {
            Self.write(name, &writer)
            Self.write(principalEntries[name]!, &writer)
        }
        return writer.bytes
    }

    /// Reads a stored state; nil bytes (never written) is the initial state.
    public init(decoding bytes: [UInt8]?) throws(SecurityError) {
        guard let bytes else {
            self = .initial
            return
        }
        do {
            self = try bytes.withUnsafeBytes { raw in
                var reader = ByteReader(raw)
                return try Self.read(&reader)
            }
        } catch let error as SecurityError {
            throw error
        } catch {
            throw SecurityError("the stored security record is damaged (\(error)); restore the data directory from a backup")
        }
    }

    private static func read(_ reader: inout ByteReader) throws -> SecurityState {
        let format: UInt8 = try reader.readInteger("security format")
        guard format == formatVersion else { throw SecurityError("the stored security record has format \(format); this build reads \(formatVersion)") }
        var state = SecurityState()
        let userCount: UInt32 = try reader.readInteger("user count")
        for _ in 0..<userCount {
            let name = try readText(&reader)
            let roleCount: UInt8 = try reader.readInteger("role count")
            var roles: [String] = []
            for _ in 0..<roleCount { roles.append(try readText(&reader)) }
            let hasScope: UInt8 = try reader.readInteger("scope flag")
            let scope = hasScope == 1 ? try readText(&reader) : nil
            let created: Int64 = try reader.readInteger("created")
            let changed: Int64 = try reader.readInteger("password changed")
            let credentialCount: UInt8 = try reader.readInteger("credential count")
            var credentials: [SCRAMCredential] = []
            for _ in 0..<credentialCount {
                let mechanismName = try readText(&reader)
                guard let mechanism = SCRAMMechanism(rawValue: mechanismName) else { throw SecurityError("unknown mechanism \(mechanismName) in the security record") }
                let salt = try readBytes(&reader)
                let iterations: UInt32 = try reader.readInteger("iterations")
                let storedKey = try readBytes(&reader)
                let serverKey = try readBytes(&reader)
                credentials.append(SCRAMCredential(mechanism: mechanism, salt: salt, iterations: Int(iterations), storedKey: storedKey, serverKey: serverKey))
            }
            state.users[name] = UserRecord(name: name, roles: roles, scope: scope, credentials: credentials, createdAtMs: created, passwordChangedAtMs: changed)
        }
        let roleCount: UInt32 = try reader.readInteger("role count")
        for _ in 0..<roleCount {
            let name = try readText(&reader)
            state.roles[name] = Role(name: name, entries: try readEntries(&reader))
        }
        let principalCount: UInt32 = try reader.readInteger("principal count")
        for _ in 0..<principalCount {
            let name = try readText(&reader)
            state.principalEntries[name] = try readEntries(&reader)
        }
        return state
    }

    private static func write(_ text: String, _ writer: inout ByteWriter) { write(bytes: Array(text.utf8), &writer) }

    private static func write(bytes: [UInt8], _ writer: inout ByteWriter) {
        writer.writeInteger(UInt16(bytes.count))
        writer.writeBytes(bytes)
    }

    private static func write(_ entries: [ACLEntry], _ writer: inout ByteWriter) {
        writer.writeInteger(UInt32(entries.count))
        for entry in entries {
            writer.writeInteger(UInt8(ACLEffect.allCases.firstIndex(of: entry.effect)!))
            writer.writeInteger(UInt8(SecurityOperation.allCases.firstIndex(of: entry.operation)!))
            writer.writeInteger(UInt8(ResourceType.allCases.firstIndex(of: entry.resourceType)!))
            write(entry.pattern.text, &writer)
        }
    }

    private static func readBytes(_ reader: inout ByteReader) throws -> [UInt8] {
        let count: UInt16 = try reader.readInteger("length")
        return Array(try reader.readBytes(Int(count), "bytes"))
    }

    private static func readText(_ reader: inout ByteReader) throws -> String { String(decoding: try readBytes(&reader), as: UTF8.self) }

    private static func readEntries(_ reader: inout ByteReader) throws -> [ACLEntry] {
        let count: UInt32 = try reader.readInteger("entry count")
        guard count <= UInt32(entriesMax) else { throw SecurityError("the security record holds \(count) entries in one place") }
        var entries: [ACLEntry] = []
        for _ in 0..<count {
            let effect: UInt8 = try reader.readInteger("effect")
            let operation: UInt8 = try reader.readInteger("operation")
            let type: UInt8 = try reader.readInteger("resource type")
            guard Int(effect) < ACLEffect.allCases.count, Int(operation) < SecurityOperation.allCases.count, Int(type) < ResourceType.allCases.count else {
                throw SecurityError("the security record holds an entry with an unknown effect, operation or resource type")
            }
            entries.append(
                ACLEntry(
                    ACLEffect.allCases[Int(effect)], SecurityOperation.allCases[Int(operation)], ResourceType.allCases[Int(type)],
                    try ResourcePattern(readText(&reader))))
        }
        return entries
    }
}
