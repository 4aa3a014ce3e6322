import MillraceFormat
import MillraceKafka
import MillraceSecurity
import MillraceWire
import NIOCore

/// Kafka's SASL login (SaslHandshake v1, then SaslAuthenticate) onto the broker's one login:
/// the same users, the same SCRAM exchange and the same rate limit as the native Authenticate.
extension KafkaService {
    /// Who the connection acts as (callers come after the login gate in `serve`).
    func principal(_ peer: ConnectionPeer) -> Principal { peer.session.principal ?? .anonymous }

    /// Whether `principal` may; a refusal goes to the audit log (requests the dispatcher
    /// does not carry out are checked here).
    func allows(_ principal: Principal, _ operation: SecurityOperation, _ resource: Resource, peer: ConnectionPeer, api: KafkaApiKey) -> Bool {
        guard !dispatcher.allows(principal, operation, resource) else { return true }
        dispatcher.security?.audit.record(
            principal: principal, peer: peer.description, operation: "Kafka \(api)", resource: "\(resource)", result: ErrorCode.notAuthorized.description,
            detail: "principal \(principal.name) may not \(operation.rawValue) \(resource)")
        return false
    }

    func handshake(_ request: KafkaSASL.HandshakeRequest, header: KafkaRequestHeader, peer: ConnectionPeer) -> ConnectionAnswer {
        let offered = dispatcher.security.map { $0.mode == .off ? [] : SCRAMMechanism.allCases.map(\.rawValue) } ?? []
        let response: KafkaSASL.HandshakeResponse
        if header.apiVersion == 0 {
            peer.protocolError(
                MillraceError(.authenticationFailed, "Kafka SaslHandshake v0 (raw SASL tokens) is not served: use a client of Kafka 1.0 or later (SaslAuthenticate)"), false)
            response = KafkaSASL.HandshakeResponse(errorCode: KafkaErrorCode.unsupportedSASLMechanism.rawValue, mechanisms: [])
        } else if offered.contains(request.mechanism) {
            peer.session.kafkaMechanism = request.mechanism
            response = KafkaSASL.HandshakeResponse(mechanisms: offered)
        } else {
            let why = offered.isEmpty ? "this broker runs with --auth off (connect with security.protocol=PLAINTEXT)" : "it offers \(offered.joined(separator: ", "))"
            peer.protocolError(MillraceError(.authenticationFailed, "Kafka SASL mechanism \(LogText.printable(request.mechanism)) refused: \(why)"), false)
            response = KafkaSASL.HandshakeResponse(errorCode: KafkaErrorCode.unsupportedSASLMechanism.rawValue, mechanisms: offered)
        }
        let version = header.apiVersion
        return Self.answer(header) { response.write(to: &$0, version: version) }
    }

    /// One SCRAM step. A refused login is answered SASL_AUTHENTICATION_FAILED with the reason,
    /// and the connection closes after it, as Kafka's brokers do.
    func authenticate(_ request: KafkaSASL.AuthenticateRequest, header: KafkaRequestHeader, peer: ConnectionPeer) -> ConnectionAnswer {
        let version = header.apiVersion
        func refuse(_ code: KafkaErrorCode, _ message: String) -> ConnectionAnswer {
            let response = KafkaSASL.AuthenticateResponse(errorCode: code.rawValue, errorMessage: message, authBytes: [])
            var answer = Self.answer(header) { response.write(to: &$0, version: version) }
            answer.thenClose = true
            return answer
        }
        guard let security = dispatcher.security, let mechanism = peer.session.kafkaMechanism else {
            return refuse(.illegalSASLState, "SaslAuthenticate before a SaslHandshake that named the mechanism")
        }
        switch security.authenticate(peer.session, mechanism: mechanism, message: request.authBytes, host: peer.host, peer: peer.description) {
        case .success(let step):
            let response = KafkaSASL.AuthenticateResponse(authBytes: step.reply)
            return Self.answer(header) { response.write(to: &$0, version: version) }
        case .failure(let error):
            return refuse(.saslAuthenticationFailed, error.message)
        }
    }
}
