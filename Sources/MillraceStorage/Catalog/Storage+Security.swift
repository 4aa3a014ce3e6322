import MillraceFormat

// The broker's security state (users' stored credentials, roles, ACLs; issue 26) is one
// record in the meta database, read whole at start and replaced whole, in the writer's
// transaction, by a change. Storage keeps its bytes; `MillraceSecurity` says what they mean.

extension Keys {
    static let security = Array("security".utf8)
}

extension Storage {
    /// The stored security record; nil when none was ever written.
    public func securityRecord() throws -> [UInt8]? {
        try withReadTransaction { txn, _ in try txn.get(databases.meta, Keys.security).map { Array($0) } }
    }

    /// Replaces the security record with what `update` makes of the stored one (nil: none
    /// yet), in one write transaction: two changes never overwrite each other. `update`
    /// runs on the writer thread and throws to refuse the change (nothing is written).
    public func updateSecurityRecord(
        _ update: @escaping @Sendable ([UInt8]?) throws -> [UInt8], completion: @escaping @Sendable (Result<[UInt8], MillraceError>) -> Void
    ) {
        guard let writer else { return completion(.failure(MillraceError(.storageError, "storage is open read-only"))) }
        writer.submitNow(.updateMeta(UpdateMetaOperation(key: Keys.security, update: update, completion: completion)))
    }

    public func updateSecurityRecord(_ update: @escaping @Sendable ([UInt8]?) throws -> [UInt8]) async throws -> [UInt8] {
        try await withCheckedThrowingContinuation { continuation in
            updateSecurityRecord(update) { continuation.resume(with: $0) }
        }
    }
}

/// A read-modify-write of one meta record.
struct UpdateMetaOperation {
    var key: [UInt8]
    var update: @Sendable ([UInt8]?) throws -> [UInt8]
    var completion: @Sendable (Result<[UInt8], MillraceError>) -> Void
}

extension Writer {
    func updateMeta(_ op: UpdateMetaOperation) -> Result<[UInt8], MillraceError> {
        withTransaction { context -> [UInt8] in
            let current = try context.txn.get(databases.meta, op.key).map { Array($0) }
            let next = try op.update(current)
            try context.txn.put(databases.meta, op.key, next)
            return next
        }
    }
}
