import Foundation
import Logging
import MillraceClient
import MillraceFormat
import MillraceSecurity
import MillraceServer
import MillraceStorage
import MillraceWire
import NIOCore
import TestSupport
import Testing

/// TLS on the listeners with certificates made by `scripts/make-certs` (openssl): a good
/// handshake, an expired certificate, a CA the client does not trust, a plain client on the TLS
/// port and a TLS client on a plain one (a clear error on both sides, no hang), mutual TLS
/// naming the principal, and a reload that new connections see while open ones go on.
@Suite(.stopsLiveServers) struct TLSTests {
    /// One set of certificates for the suite, made once (openssl runs in a child process;
    /// nothing blocks a thread of the test pool while it does).
    static let made = Locked<String?>(nil)
    static var certificates: String { made.withLock { $0 } ?? "" }

    static func makeCertificates() async throws {
        if made.withLock({ $0 }) != nil { return }
        let directory = NSTemporaryDirectory() + "millrace-certs-\(UUID().uuidString)"
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("scripts/make-certs").path
        _ = try await KafkaClientTests.run("/bin/bash", [script, directory, "gw-pl01", "stranger"], timeoutSeconds: 120)
        made.withLock { if $0 == nil { $0 = directory } }
    }

    static func file(_ name: String) -> String { certificates + "/" + name }

    static func server(clientCA: Bool = false, auth: AuthMode = .off, directory: String? = nil, certificate: String = "broker") async throws -> LiveServer {
        try await makeCertificates()
        return try await LiveServer(directory: directory) {
            $0.auth = auth
            $0.tls = TLSFiles(certificate: file("\(certificate).pem"), key: file("\(certificate).key"), clientCA: clientCA ? file("ca.pem") : nil)
        }
    }

    static func client(_ port: Int, host: String = "127.0.0.1", tls: ClientTLS?, credentials: Credentials? = nil) -> MillraceClient {
        var configuration = MillraceClient.Configuration()
        configuration.brokers = ["\(host):\(port)"]
        configuration.requestRetries = 0
        // Every case here ends in an answer or a refusal, never a wait; the generous timeouts
        // only keep a busy machine (a full suite on two cores) from turning a slow TLS
        // handshake into a timeout that hides the error under test.
        configuration.connectTimeout = .seconds(120)
        configuration.requestTimeout = .seconds(120)
        configuration.tls = tls
        configuration.credentials = credentials
        return MillraceClient(configuration: configuration)
    }

    static func failure(_ client: MillraceClient) async -> MillraceError? {
        defer { Task { await client.close() } }
        do {
            _ = try await client.whoAmI()
            return nil
        } catch {
            return error as? MillraceError
        }
    }

    @Test func aTrustedCertificateCarriesTheProtocol() async throws {
        let live = try await Self.server()
        for host in ["127.0.0.1", "localhost"] {
            let client = Self.client(live.port, host: host, tls: ClientTLS(caFile: Self.file("ca.pem")))
            let identity = try await client.whoAmI()
            #expect(identity.encrypted && identity.authentication == "none")
            _ = try await client.createTopic("t-\(host)")
            await client.close()
        }
    }

    @Test func anUntrustedOrExpiredCertificateIsRefusedWithWhy() async throws {
        let live = try await Self.server()
        let wrongCA = await Self.failure(Self.client(live.port, tls: ClientTLS(caFile: Self.file("other-ca.pem"))))
        #expect(wrongCA?.message.contains("not signed by a CA this client trusts") == true, "\(String(describing: wrongCA))")
        let expiredServer = try await Self.server(certificate: "expired")
        let expired = await Self.failure(Self.client(expiredServer.port, tls: ClientTLS(caFile: Self.file("ca.pem"))))
        #expect(expired?.message.contains("CERTIFICATE_VERIFY_FAILED") == true, "\(String(describing: expired))")
    }

    @Test func aPlainClientOnTheTLSPortAndATLSClientOnAPlainPortAreToldSo() async throws {
        let tlsServer = try await Self.server()
        let plain = await Self.failure(Self.client(tlsServer.port, tls: nil))
        #expect(plain?.message.contains("connect with --tls") == true, "\(String(describing: plain))")
        // Raw bytes of the native protocol on the TLS port: the broker closes, never hangs.
        let raw = try TestClient(port: tlsServer.port)
        try raw.sendRaw([0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1])
        #expect(raw.isClosedByServer())
        let plainServer = try await LiveServer()
        let tlsToPlain = await Self.failure(Self.client(plainServer.port, tls: ClientTLS(caFile: Self.file("ca.pem"))))
        #expect(tlsToPlain?.message.contains("does not speak TLS on this port") == true, "\(String(describing: tlsToPlain))")
        // Both brokers serve everyone else on.
        let fine = Self.client(tlsServer.port, tls: ClientTLS(caFile: Self.file("ca.pem")))
        #expect(try await fine.whoAmI().encrypted)
        await fine.close()
    }

    /// With a client CA, a client must present a certificate it signed; the certificate's
    /// subject is the principal, with the roles of the user of that name.
    @Test func mutualTLSNamesThePrincipal() async throws {
        let directory = try await SecurityTests.directory(users: [])
        let storage = try Storage.open(directory: directory)
        _ = try await storage.updateSecurityRecord { bytes in
            var state = try SecurityState(decoding: bytes)
            try state.apply(.createUser(name: "CN=gw-pl01,O=Millrace", roles: ["plant-system"], scope: "PL01", credentials: []), nowMs: 1)
            return state.encoded()
        }
        storage.close()
        let live = try await Self.server(clientCA: true, auth: .required, directory: directory)
        let gateway = Self.client(live.port, tls: ClientTLS(caFile: Self.file("ca.pem"), certificateFile: Self.file("gw-pl01.pem"), keyFile: Self.file("gw-pl01.key")))
        let identity = try await gateway.whoAmI()
        #expect(identity.principal == "CN=gw-pl01,O=Millrace" && identity.roles == ["plant-system"] && identity.scope == "PL01" && identity.authentication == "certificate")
        await gateway.close()
        // A password login on a connection its certificate already names: told so.
        let both = Self.client(
            live.port, tls: ClientTLS(caFile: Self.file("ca.pem"), certificateFile: Self.file("gw-pl01.pem"), keyFile: Self.file("gw-pl01.key")),
            credentials: Credentials(user: "gw", password: "whatever-1"))
        #expect(await Self.failure(both)?.message.contains("authenticated by its client certificate as CN=gw-pl01,O=Millrace") == true)
        // A certificate of the same CA for a principal nobody gave rights to: in, but may do nothing.
        let stranger = Self.client(live.port, tls: ClientTLS(caFile: Self.file("ca.pem"), certificateFile: Self.file("stranger.pem"), keyFile: Self.file("stranger.key")))
        #expect(try await stranger.listTopics().isEmpty)
        #expect(await SecurityTests.refusal { _ = try await stranger.createTopic("x") }?.code == .notAuthorized)
        await stranger.close()
        // No certificate: refused in the handshake, with what to do.
        let anonymous = await Self.failure(Self.client(live.port, tls: ClientTLS(caFile: Self.file("ca.pem"))))
        #expect(anonymous?.message.contains("give --cert and --tls-key") == true, "\(String(describing: anonymous))")
    }

    /// A reload reads the files again: new connections get the new certificate, an open one
    /// goes on; a broken file leaves the old certificate in use.
    @Test func aReloadReachesNewConnectionsAndSparesOpenOnes() async throws {
        try await Self.makeCertificates()
        let copy = NSTemporaryDirectory() + "millrace-reload-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: copy, withIntermediateDirectories: true)
        for name in ["broker.pem", "broker.key"] { try FileManager.default.copyItem(atPath: Self.file(name), toPath: copy + "/" + name) }
        let live = try await LiveServer {
            $0.tls = TLSFiles(certificate: copy + "/broker.pem", key: copy + "/broker.key")
        }
        let open = Self.client(live.port, tls: ClientTLS(caFile: Self.file("ca.pem")))
        _ = try await open.whoAmI()
        // The expired certificate in place of the good one: new handshakes fail, the open
        // connection still works.
        for name in ["pem", "key"] {
            try FileManager.default.removeItem(atPath: copy + "/broker.\(name)")
            try FileManager.default.copyItem(atPath: Self.file("expired.\(name)"), toPath: copy + "/broker.\(name)")
        }
        try live.server.tls?.reload()
        let refused = await Self.failure(Self.client(live.port, tls: ClientTLS(caFile: Self.file("ca.pem"))))
        #expect(refused?.message.contains("CERTIFICATE_VERIFY_FAILED") == true, "\(String(describing: refused))")
        #expect(try await open.whoAmI().encrypted)
        // A file that is not a certificate: the reload is refused, the one in use stays.
        try "not a certificate".write(toFile: copy + "/broker.pem", atomically: true, encoding: .utf8)
        #expect(throws: MillraceError.self) { try live.server.tls?.reload() }
        await open.close()
    }
}


