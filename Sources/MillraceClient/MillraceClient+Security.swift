import MillraceFormat
import MillraceSecurity
import MillraceWire

// Users, roles and ACL entries (docs/SECURITY.md), and who this client is.

extension MillraceClient {
    /// Who this client's connection acts as.
    public func whoAmI() async throws -> Identity {
        guard case .whoAmI(let identity) = try await send(.whoAmI) else { throw unexpectedResponse("WhoAmI") }
        return identity
    }

    /// Users (without their stored keys), roles and principals' own entries.
    public func describeSecurity() async throws -> SecurityDescription {
        guard case .describeSecurity(let description) = try await send(.describeSecurity) else { throw unexpectedResponse("DescribeSecurity") }
        return description
    }

    /// One change to users, roles or ACL entries; needs the cluster's admin right. A password
    /// goes to the broker only as SCRAM credentials (`SCRAMCredential.all(password:)`).
    public func alterSecurity(_ change: SecurityChange) async throws {
        guard case .alterSecurity = try await send(.alterSecurity(change)) else { throw unexpectedResponse("AlterSecurity") }
    }

    private func unexpectedResponse(_ api: String) -> MillraceError {
        MillraceError(.unexpected, "the broker answered \(api) with another response")
    }
}
