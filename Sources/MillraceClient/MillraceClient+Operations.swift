import MillraceFormat
import MillraceWire

extension MillraceClient {
    /// Version, uptime, disk, connections, each topic's size and traffic since the start, and
    /// each group's lag (BrokerStatus, API 30).
    public func brokerStatus() async throws -> BrokerStatusResponse {
        guard case .brokerStatus(let status) = try await send(.brokerStatus) else { throw Self.unexpectedBody }
        return status
    }

    /// Has the broker copy its data file, consistently, into `destination` on its own
    /// machine (a new directory), while it goes on serving (Backup, API 31). Not retried:
    /// a copy that was made and whose answer was lost would refuse a second go (the
    /// directory exists). Give the client a request timeout long enough for the copy.
    public func backup(to destination: String, compact: Bool = true) async throws -> BackupResponse {
        guard case .backup(let made) = try await request(.backup(BackupRequest(destination: destination, compact: compact))).get() else {
            throw Self.unexpectedBody
        }
        return made
    }
}
