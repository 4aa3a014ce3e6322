import Foundation
import Logging
import MillraceClient
import MillraceFormat
import MillraceSecurity
import MillraceServer
import MillraceStorage
import Testing

/// Kafka clients nobody here wrote, logging in as Kafka's do: librdkafka (confluent-kafka)
/// with SCRAM-SHA-256 and kafka-python with SCRAM-SHA-512, both over TLS (SASL_SSL), each held
/// to its principal's rights; a wrong password is refused; everything goes to the audit log.
@Suite(.stopsLiveServers) struct KafkaSecurityTests {
    static func broker() async throws -> (LiveServer, String, MillraceClient) {
        try await TLSTests.makeCertificates()
        let directory = try await SecurityTests.directory(users: SecurityTests.plant)
        let live = try await LiveServer(directory: directory) {
            $0.auth = .required
            $0.tls = TLSFiles(certificate: TLSTests.file("broker.pem"), key: TLSTests.file("broker.key"))
            $0.kafka = MillraceServer.KafkaListener(host: "127.0.0.1", port: 0)
        }
        let port = try #require(live.server.boundAddress(.kafka)?.port)
        let admin = TLSTests.client(live.port, tls: ClientTLS(caFile: TLSTests.file("ca.pem")), credentials: Credentials(user: "admin", password: "admin-secret"))
        for topic in ["plant.PL01.confirmations", "plant.PL02.confirmations", "supplier.acme.asn"] {
            _ = try await admin.createTopic(topic, MillraceClient.TopicConfig(partitions: 2))
        }
        return (live, "localhost:\(port)", admin)
    }

    /// librdkafka's names for the settings.
    static func librdkafka(_ user: String, _ password: String, mechanism: String = "SCRAM-SHA-256") -> [String: String] {
        [
            "security.protocol": "SASL_SSL", "sasl.mechanism": mechanism, "sasl.username": user, "sasl.password": password,
            "ssl.ca.location": TLSTests.file("ca.pem"),
        ]
    }

    /// kafka-python's.
    static func kafkaPython(_ user: String, _ password: String) -> [String: String] {
        [
            "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": user, "sasl_plain_password": password,
            "ssl_cafile": TLSTests.file("ca.pem"),
        ]
    }

    @Test func librdkafkaLogsInWithSCRAMOverTLSAndIsHeldToItsPlant() async throws {
        let (live, bootstrap, admin) = try await Self.broker()
        let mes = Self.librdkafka("mes-pl01", "pl01-secret")
        let delivered = try await KafkaClientTests.python(
            "confluent_client.py", ["produce", bootstrap, "plant.PL01.confirmations", "--count", "20"], clientConfig: mes
        ).filter { $0.kind == "delivery" }
        #expect(delivered.count == 20)
        let read = try await KafkaClientTests.python(
            "confluent_client.py", ["consume", bootstrap, "plant.PL01.confirmations", "--group", "plant.PL01.erp"], clientConfig: mes
        ).filter { $0.kind == "record" }
        #expect(read.count == 20)
        // Another plant's topic: refused, and the client is told it is an authorization matter.
        do {
            _ = try await KafkaClientTests.python("confluent_client.py", ["produce", bootstrap, "plant.PL02.confirmations", "--count", "1", "--timeout", "20"], clientConfig: mes)
            Issue.record("a produce to another plant's topic was accepted")
        } catch let failure as KafkaClientTests.ClientFailure {
            #expect(failure.description.lowercased().contains("authorization"), "\(failure)")
        }
        // A group outside its plant's prefix: refused.
        do {
            _ = try await KafkaClientTests.python(
                "confluent_client.py", ["consume", bootstrap, "plant.PL01.confirmations", "--group", "erp", "--timeout", "20"], clientConfig: mes)
            Issue.record("a group outside the plant's prefix was joined")
        } catch let failure as KafkaClientTests.ClientFailure {
            #expect(failure.description.lowercased().contains("authorization"), "\(failure)")
        }
        // A wrong password: the login is refused, with librdkafka saying so.
        do {
            _ = try await KafkaClientTests.python(
                "confluent_client.py", ["produce", bootstrap, "plant.PL01.confirmations", "--count", "1", "--timeout", "15"],
                clientConfig: Self.librdkafka("mes-pl01", "wrong-password"))
            Issue.record("a wrong password logged in")
        } catch let failure as KafkaClientTests.ClientFailure {
            #expect(failure.description.contains("Authentication") || failure.description.contains("authentication"), "\(failure)")
        }
        let audited = try await SecurityTests.auditRecords(live, tls: ClientTLS(caFile: TLSTests.file("ca.pem")))
        #expect(audited.contains { $0["principal"] == "mes-pl01" && $0["resource"] == "topic plant.PL02.confirmations" && $0["result"] == "not_authorized" }, "\(audited)")
        #expect(audited.contains { $0["principal"] == "mes-pl01" && $0["operation"] == "login" && $0["result"] == "authentication_failed" })
        await admin.close()
    }

    @Test func kafkaPythonLogsInWithSCRAM512OverTLSAndReadsOnlyItsSuppliersTopics() async throws {
        let (live, bootstrap, admin) = try await Self.broker()
        let acme = Self.kafkaPython("supplier-acme", "acme-secret")
        let delivered = try await KafkaClientTests.python(
            "kafka_python_client.py", ["produce", bootstrap, "supplier.acme.asn", "--count", "10"], clientConfig: acme
        ).filter { $0.kind == "delivery" }
        #expect(delivered.count == 10)
        let read = try await KafkaClientTests.python(
            "kafka_python_client.py", ["consume", bootstrap, "supplier.acme.asn", "--group", "supplier.acme.portal"], clientConfig: acme
        ).filter { $0.kind == "record" }
        #expect(read.count == 10)
        do {
            _ = try await KafkaClientTests.python(
                "kafka_python_client.py", ["consume", bootstrap, "plant.PL01.confirmations", "--group", "supplier.acme.snoop", "--timeout", "20"], clientConfig: acme)
            Issue.record("a supplier read a plant's topic")
        } catch let failure as KafkaClientTests.ClientFailure {
            // kafka-python does not raise for a topic it may not see: it waits with nothing
            // assigned, reads nothing, and the broker's audit log holds the refusal.
            #expect(failure.description.contains("assigned []"), "\(failure)")
        }
        let audited = try await SecurityTests.auditRecords(live, tls: ClientTLS(caFile: TLSTests.file("ca.pem")))
        #expect(audited.contains { $0["principal"] == "supplier-acme" && $0["resource"] == "topic plant.PL01.confirmations" && $0["result"] == "not_authorized" }, "\(audited)")
        await admin.close()
    }
}
