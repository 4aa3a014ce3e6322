import Foundation
import Logging
import MillraceClient
import MillraceFormat
import MillraceKafka
import MillraceSecurity
import MillraceServer
import MillraceStorage
import MillraceWire
import NIOCore
import TestSupport
import Testing

/// Logins and rights through a live broker (docs/SECURITY.md): the first administrator made
/// offline, SCRAM logins on the native port, refusals that name who and what, nothing served
/// before a login, failed logins rate-limited by address, and changes made through the broker.
@Suite(.stopsLiveServers) struct SecurityTests {
    static let iterations = SCRAMCredential.iterationsMin

    /// A data directory holding `users` (name, roles, scope, password), made offline as
    /// `millrace user create --data-dir` does before the broker starts.
    static func directory(users: [(String, [String], String?, String)]) async throws -> String {
        let directory = NSTemporaryDirectory() + "millrace-security-\(UUID().uuidString)"
        let storage = try Storage.open(directory: directory)
        defer { storage.close() }
        for (name, roles, scope, password) in users {
            _ = try await storage.updateSecurityRecord { bytes in
                var state = try SecurityState(decoding: bytes)
                try state.apply(.createUser(name: name, roles: roles, scope: scope, credentials: SCRAMCredential.all(password: password, iterations: iterations)), nowMs: 1)
                return state.encoded()
            }
        }
        return directory
    }

    static let plant: [(String, [String], String?, String)] = [
        ("admin", [SecurityState.adminRole], nil, "admin-secret"), ("mes-pl01", ["plant-system"], "PL01", "pl01-secret"),
        ("mes-pl02", ["plant-system"], "PL02", "pl02-secret"), ("supplier-acme", ["supplier"], "acme", "acme-secret"), ("audit", ["auditor"], nil, "audit-secret"),
    ]

    static func server(_ mode: AuthMode = .required, clock: ManualClock? = nil) async throws -> LiveServer {
        let directory = try await directory(users: plant)
        return try await LiveServer(directory: directory, clock: clock, configure: { $0.auth = mode })
    }

    static func client(_ live: LiveServer, _ user: String?, _ password: String = "") -> MillraceClient {
        var configuration = MillraceClient.Configuration()
        configuration.brokers = ["127.0.0.1:\(live.port)"]
        configuration.requestRetries = 0
        configuration.credentials = user.map { Credentials(user: $0, password: password) }
        return MillraceClient(configuration: configuration)
    }

    /// One record through a producer, waiting for its acknowledgement.
    static func produce(_ client: MillraceClient, _ topic: String, _ value: [UInt8]) async throws {
        let producer = Producer(client: client)
        do {
            _ = try await producer.send(topic: topic, value: value).delivery()
        } catch {
            try? await producer.close()
            throw error
        }
        try await producer.close()
    }

    static func refusal(_ body: () async throws -> Void) async -> MillraceError? {
        do {
            try await body()
            return nil
        } catch {
            return error as? MillraceError
        }
    }

    @Test func eachPrincipalDoesWhatItsRolesAllowAndARefusalNamesWhoAndWhat() async throws {
        let live = try await Self.server()
        let admin = Self.client(live, "admin", "admin-secret")
        for topic in ["plant.PL01.confirmations", "plant.PL02.confirmations", "supplier.acme.asn", "supplier.globex.asn"] {
            _ = try await admin.createTopic(topic)
        }
        #expect(try await admin.whoAmI() == Identity(principal: "admin", roles: [SecurityState.adminRole], authentication: "password"))

        let pl01 = Self.client(live, "mes-pl01", "pl01-secret")
        try await Self.produce(pl01, "plant.PL01.confirmations", Array(#"{"lot":"L1"}"#.utf8))
        let crossPlant = await Self.refusal { try await Self.produce(pl01, "plant.PL02.confirmations", Array(#"{"lot":"L2"}"#.utf8)) }
        #expect(crossPlant?.code == .notAuthorized)
        // The producer asks for the topic's partitions first: it may not even see the topic.
        #expect(crossPlant?.message == "principal mes-pl01 may not describe topic plant.PL02.confirmations (no entry of mes-pl01 (roles plant-system) allows it)")
        // A principal that may see a topic but not write it is told so at the produce.
        let audit0 = Self.client(live, "audit", "audit-secret")
        let readOnly = await Self.refusal { try await Self.produce(audit0, "plant.PL02.confirmations", Array(#"{"lot":"L2"}"#.utf8)) }
        #expect(readOnly?.message == "principal audit may not write topic plant.PL02.confirmations (no entry of audit (roles auditor) allows it)")
        await audit0.close()
        #expect(try await pl01.listTopics().map(\.name) == ["plant.PL01.confirmations"])
        #expect(await Self.refusal { try await pl01.deleteTopic("plant.PL01.confirmations") }?.code == .notAuthorized)
        #expect(await Self.refusal { _ = try await pl01.describeSecurity() }?.code == .notAuthorized)

        let acme = Self.client(live, "supplier-acme", "acme-secret")
        #expect(try await acme.listTopics().map(\.name) == ["supplier.acme.asn"])
        #expect(await Self.refusal { _ = try await acme.describeTopic("supplier.globex.asn") }?.message.contains("may not describe topic supplier.globex.asn") == true)

        // The auditor reads everything and sees the users (never their keys), changes nothing.
        let audit = Self.client(live, "audit", "audit-secret")
        #expect(try await audit.listTopics().count == 4)
        let users = try await audit.describeSecurity().users
        #expect(users.map(\.name) == ["admin", "audit", "mes-pl01", "mes-pl02", "supplier-acme"])
        #expect(await Self.refusal { try await audit.deleteTopic("supplier.acme.asn") }?.code == .notAuthorized)
        #expect(await Self.refusal { try await audit.alterSecurity(.createRole(name: "x")) }?.code == .notAuthorized)
        for client in [admin, pl01, acme, audit] { await client.close() }
    }

    @Test func anAdministratorChangesUsersRolesAndEntriesThroughTheBroker() async throws {
        let live = try await Self.server()
        let admin = Self.client(live, "admin", "admin-secret")
        _ = try await admin.createTopic("erp.orders")
        try await admin.alterSecurity(.createRole(name: "erp-reader"))
        try await admin.alterSecurity(.addEntry(ACLEntry(.allow, .read, .topic, try ResourcePattern("*")), to: .role("erp-reader")))
        try await admin.alterSecurity(
            .createUser(name: "erp", roles: ["erp-reader"], scope: nil, credentials: SCRAMCredential.all(password: "erp-secret", iterations: Self.iterations)))
        let erp = Self.client(live, "erp", "erp-secret")
        #expect(try await erp.listTopics().map(\.name) == ["erp.orders"])
        #expect(await Self.refusal { try await Self.produce(erp, "erp.orders", [0x7B, 0x7D]) }?.code == .notAuthorized)
        // A new password: the old one no longer logs in, the new one does.
        try await admin.alterSecurity(.setPassword(name: "erp", credentials: SCRAMCredential.all(password: "erp-secret-2", iterations: Self.iterations)))
        let stale = Self.client(live, "erp", "erp-secret")
        #expect(await Self.refusal { _ = try await stale.listTopics() }?.code == .authenticationFailed)
        let renewed = Self.client(live, "erp", "erp-secret-2")
        #expect(try await renewed.whoAmI().principal == "erp")
        // A change the state cannot take is refused with the reason; nothing changes.
        let refused = await Self.refusal { try await admin.alterSecurity(.deleteRole(name: "erp-reader")) }
        #expect(refused?.code == .invalidRequest && refused?.message.contains("held by erp") == true)
        // Changes persist: the broker reads them back after a restart.
        await live.stop()
        let again = try await LiveServer(directory: live.directory, configure: { $0.auth = .required })
        let afterRestart = Self.client(again, "erp", "erp-secret-2")
        #expect(try await afterRestart.listTopics().map(\.name) == ["erp.orders"])
        for client in [admin, erp, stale, renewed, afterRestart] { await client.close() }
    }

    /// With `--auth required` every API but ApiVersions and Authenticate is refused before a
    /// login, its body never read, and the connection closed.
    @Test func noNativeApiIsServedBeforeTheLogin() async throws {
        let live = try await Self.server()
        for api in ApiKey.allCases where api != .apiVersions && api != .authenticate {
            let client = try TestClient(port: live.port)
            // A header and a body of garbage: refused for the missing login, not for the body.
            var frame = ByteBuffer()
            frame.writeInteger(Int32(8 + 16))
            frame.writeInteger(api.rawValue)
            frame.writeInteger(Int16(0))
            frame.writeInteger(Int32(77))
            frame.writeBytes([UInt8](repeating: 0xEE, count: 16))
            try client.sendRaw(Array(frame.readableBytesView))
            let response = try #require(try client.receive(), "\(api)")
            #expect(response.correlationID == 77 && response.errorCode == .authenticationRequired, "\(api)")
            #expect(client.isClosedByServer(), "\(api)")
        }
        // ApiVersions is answered, and the connection stays open for the login.
        let client = try TestClient(port: live.port)
        #expect(try client.call(.apiVersions).errorCode == ErrorCode.none)
        #expect(try client.call(.apiVersions).errorCode == ErrorCode.none)
        // A client without credentials is told what to do.
        let anonymous = Self.client(live, nil)
        let refused = await Self.refusal { _ = try await anonymous.listTopics() }
        #expect(refused?.code == .authenticationRequired && refused?.message.contains("MILLRACE_USER") == true)
        await anonymous.close()
    }

    @Test func everyKafkaApiButTheLoginClosesTheConnectionBeforeIt() async throws {
        let directory = try await Self.directory(users: Self.plant)
        let live = try await LiveServer(directory: directory, configure: {
            $0.auth = .required
            $0.kafka = MillraceServer.KafkaListener(host: "127.0.0.1", port: 0)
        })
        let port = try #require(live.server.boundAddress(.kafka)?.port)
        for (api, versions) in KafkaApiVersions.served where ![.apiVersions, .saslHandshake, .saslAuthenticate].contains(api) {
            let client = try TestClient(port: port)
            try client.sendRaw(KafkaListenerTests.frame(api.rawValue, version: versions.lowerBound, correlation: 5) { $0.writeBytes([UInt8](repeating: 0, count: 32)) })
            #expect(client.isClosedByServer(), "\(api)")
        }
        // The login's own APIs are answered.
        let client = try TestClient(port: port)
        try client.sendRaw(KafkaListenerTests.frame(KafkaApiKey.saslHandshake.rawValue, version: 1, correlation: 6) { $0.writeKafkaString("SCRAM-SHA-256", flexible: false) })
        var reply = try #require(try KafkaListenerTests.answer(client))
        #expect(reply.readInteger(as: Int32.self) == 6)
        let handshake = try KafkaSASL.HandshakeResponse(from: &reply, version: 1)
        #expect(handshake.errorCode == 0 && handshake.mechanisms == ["SCRAM-SHA-256", "SCRAM-SHA-512"])
    }

    /// Five failed logins of a user from an address are free; then that user is refused
    /// unheard from there (even with the right password) for a time that doubles, until the
    /// clock passes it; its neighbours behind the address are not; fifty over all users and
    /// the address is.
    @Test func bruteForceLoginsAreRateLimitedByUserAndAddress() async throws {
        let clock = ManualClock()
        let live = try await Self.server(clock: clock)
        var outcomes: [String] = []
        for attempt in 0..<12 {
            let client = Self.client(live, "admin", "guess-\(attempt)")
            let error = await Self.refusal { _ = try await client.whoAmI() }
            outcomes.append(error?.message.hasPrefix("too many failed logins from 127.0.0.1") == true ? "blocked" : error?.code == .authenticationFailed ? "wrong" : "?")
            await client.close()
        }
        #expect(outcomes == Array(repeating: "wrong", count: 5) + Array(repeating: "blocked", count: 7))
        let rightPassword = Self.client(live, "admin", "admin-secret")
        #expect(await Self.refusal { _ = try await rightPassword.whoAmI() }?.message.hasPrefix("too many failed logins") == true)
        // Another user behind the same address is not locked out by them.
        let neighbour = Self.client(live, "audit", "audit-secret")
        #expect(try await neighbour.whoAmI().principal == "audit")
        await neighbour.close()
        clock.advance(by: .seconds(2))
        #expect(try await rightPassword.whoAmI().principal == "admin")
        // A good login clears the address.
        let wrongAgain = Self.client(live, "admin", "nope")
        #expect(await Self.refusal { _ = try await wrongAgain.whoAmI() }?.code == .authenticationFailed)
        #expect(await Self.refusal { _ = try await wrongAgain.whoAmI() }?.message.hasPrefix("too many") == false)
        // Many users tried from one address: past fifty failures the address is refused.
        for attempt in 0..<50 {
            let sprayed = Self.client(live, "user-\(attempt)", "guess")
            _ = await Self.refusal { _ = try await sprayed.whoAmI() }
            await sprayed.close()
        }
        let after = Self.client(live, "audit", "audit-secret")
        #expect(await Self.refusal { _ = try await after.whoAmI() }?.message.hasPrefix("too many failed logins") == true)
        await after.close()
        for client in [rightPassword, wrongAgain] { await client.close() }
    }

    /// `--auth optional`: a client that does not log in is `anonymous` (its role's rights:
    /// produce and consume, no deletes or administration); one that logs in has its own.
    @Test func optionalLoginsLeaveOthersAnonymous() async throws {
        let live = try await Self.server(.optional)
        let anonymous = Self.client(live, nil)
        _ = try await anonymous.createTopic("orders")
        try await Self.produce(anonymous, "orders", [0x7B, 0x7D])
        #expect(try await anonymous.whoAmI() == Identity(principal: "anonymous", roles: ["anonymous"], authentication: "anonymous"))
        #expect(await Self.refusal { try await anonymous.deleteTopic("orders") }?.message.hasPrefix("principal anonymous may not delete topic orders") == true)
        let admin = Self.client(live, "admin", "admin-secret")
        try await admin.deleteTopic("orders")
        for client in [anonymous, admin] { await client.close() }
    }

    @Test func withAuthOffEverythingIsAllowedAndALoginIsRefusedWithWhatToDo() async throws {
        let live = try await Self.server(.off)
        let plain = Self.client(live, nil)
        #expect(try await plain.whoAmI().authentication == "none")
        _ = try await plain.createTopic("t")
        let login = Self.client(live, "admin", "admin-secret")
        #expect(await Self.refusal { _ = try await login.whoAmI() }?.message.contains("--auth off") == true)
        for client in [plain, login] { await client.close() }
    }

    /// A connection that does not log in within the deadline is closed (strangers do not hold
    /// connection slots), by the broker's clock; one that logged in stays.
    @Test func aConnectionThatDoesNotLogInIsClosedAtTheDeadline() async throws {
        let clock = ManualClock()
        let live = try await Self.server(clock: clock)
        let stranger = try TestClient(port: live.port)
        #expect(try stranger.call(.apiVersions).errorCode == ErrorCode.none)
        let member = Self.client(live, "audit", "audit-secret")
        _ = try await member.whoAmI()
        clock.advance(by: .seconds(9))
        live.server.tick()
        #expect(!stranger.hasBeenClosedByServer())
        clock.advance(by: .seconds(2))
        live.server.tick()
        #expect(stranger.isClosedByServer())
        #expect(try await member.whoAmI().principal == "audit")
        // Before a login a frame is held to a few KiB: a stranger cannot make the broker buffer more.
        let big = try TestClient(port: live.port)
        try big.sendRaw([0, 1, 0, 0] + [UInt8](repeating: 0, count: 64))
        let refused = try #require(try big.receive())
        #expect(refused.errorCode == .frameTooLarge)
        await member.close()
    }

    /// A user that does not exist gets a salt and iteration count like a real user's, the same
    /// on every try: its name cannot be told from a real one before the proof.
    @Test func unknownUsersLookLikeRealOnes() async throws {
        let live = try await Self.server()
        func serverFirst(_ user: String) throws -> String {
            let client = try TestClient(port: live.port)
            let response = try client.call(.authenticate(AuthenticateRequest(mechanism: "SCRAM-SHA-256", message: Array("n,,n=\(user),r=abcdef".utf8))))
            guard case .authenticate(let answer)? = response.body else { return "" }
            return String(decoding: answer.message, as: UTF8.self)
        }
        func saltAndIterations(_ message: String) -> (Int, String) {
            let parts = message.split(separator: ",")
            let salt = parts.first { $0.hasPrefix("s=") }.map { Data(base64Encoded: String($0.dropFirst(2)))?.count ?? -1 } ?? -1
            return (salt, String(parts.first { $0.hasPrefix("i=") } ?? ""))
        }
        let real = saltAndIterations(try serverFirst("admin"))
        let unknown = try serverFirst("nobody-here")
        #expect(saltAndIterations(unknown).0 == real.0 && real.0 == SCRAMCredential.saltBytes)
        #expect(unknown.split(separator: ",")[1] == (try serverFirst("nobody-here")).split(separator: ",")[1])  // the same salt each time
        // A name with a newline (a forged log line) is refused at once.
        let client = try TestClient(port: live.port)
        let forged = try client.call(.authenticate(AuthenticateRequest(mechanism: "SCRAM-SHA-256", message: Array("n,,n=x\nlogged in as admin,r=abc".utf8))))
        #expect(forged.errorCode == .authenticationFailed)
    }

    /// Rights follow the user, not the login: deleted or given other roles, its open
    /// connections change at once.
    @Test func openConnectionsFollowTheUsersPresentRoles() async throws {
        let live = try await Self.server()
        let admin = Self.client(live, "admin", "admin-secret")
        _ = try await admin.createTopic("supplier.acme.asn")
        let acme = Self.client(live, "supplier-acme", "acme-secret")
        #expect(try await acme.listTopics().map(\.name) == ["supplier.acme.asn"])
        try await admin.alterSecurity(.setUser(name: "supplier-acme", roles: nil, scope: .some("globex")))
        #expect(try await acme.listTopics().isEmpty)
        try await admin.alterSecurity(.setUser(name: "supplier-acme", roles: nil, scope: .some("acme")))
        #expect(try await acme.listTopics().count == 1)
        try await admin.alterSecurity(.deleteUser(name: "supplier-acme"))
        #expect(await Self.refusal { _ = try await acme.describeTopic("supplier.acme.asn") }?.message.contains("(no roles)") == true)
        for client in [admin, acme] { await client.close() }
    }

    /// BrokerStatus, group offsets and producer ids show or give a principal only its own.
    @Test func statusOffsetsAndProducerIdsAreThePrincipalsOwn() async throws {
        let live = try await Self.server()
        let admin = Self.client(live, "admin", "admin-secret")
        for topic in ["plant.PL01.confirmations", "plant.PL02.secret"] { _ = try await admin.createTopic(topic) }
        let pl01 = Self.client(live, "mes-pl01", "pl01-secret")
        let status = try await pl01.brokerStatus()
        #expect(status.topics.map(\.name) == ["plant.PL01.confirmations"] && status.dataDirectory.isEmpty)
        #expect(try await admin.brokerStatus().topics.count == 2)
        // A producer id belongs to the principal it was given to.
        let mine = try #require(try await Self.initProducer(pl01, id: -1, epoch: -1))
        let other = Self.client(live, "mes-pl02", "pl02-secret")
        let stolen = await Self.refusal { _ = try await Self.initProducer(other, id: mine.id, epoch: mine.epoch) }
        #expect(stolen?.code == .notAuthorized && stolen?.message.contains("may not use producer id \(mine.id)") == true)
        #expect(try await Self.initProducer(pl01, id: mine.id, epoch: mine.epoch)?.epoch == mine.epoch + 1)
        for client in [admin, pl01, other] { await client.close() }
    }

    static func initProducer(_ client: MillraceClient, id: Int64, epoch: Int16) async throws -> (id: Int64, epoch: Int16)? {
        guard case .initProducer(let producerId, let newEpoch) = try await client.send(.initProducer(producerId: id, epoch: epoch)) else { return nil }
        return (producerId, newEpoch)
    }

    /// A topic's owner alone produces to it, even against an administrator's write right; the
    /// refusal names the owner; describe and status show it; it survives a restart; `--auth
    /// off` has no names to check.
    @Test func onlyTheOwnerProducesToAnOwnedTopic() async throws {
        let live = try await Self.server()
        let admin = Self.client(live, "admin", "admin-secret")
        _ = try await admin.createTopic("plant.PL01.confirmations", MillraceClient.TopicConfig(owner: "mes-pl01"))
        #expect(try await admin.describeTopic("plant.PL01.confirmations").owner == "mes-pl01")
        #expect(try await admin.brokerStatus().owners == ["plant.PL01.confirmations": "mes-pl01"])
        let mes = Self.client(live, "mes-pl01", "pl01-secret")
        try await Self.produce(mes, "plant.PL01.confirmations", Array(#"{"lot":"L1"}"#.utf8))
        let refused = await Self.refusal { try await Self.produce(admin, "plant.PL01.confirmations", Array(#"{"lot":"L2"}"#.utf8)) }
        #expect(refused?.code == .notOwner)
        #expect(refused?.message == "topic plant.PL01.confirmations is owned by mes-pl01, its system of record: only mes-pl01 may produce to it (principal admin may not)")
        // The owner changes (an alter right is enough), and is removed.
        try await admin.alterTopic("plant.PL01.confirmations", owner: .some("admin"))
        try await Self.produce(admin, "plant.PL01.confirmations", Array(#"{"lot":"L3"}"#.utf8))
        #expect(await Self.refusal { try await Self.produce(mes, "plant.PL01.confirmations", Array(#"{"lot":"L4"}"#.utf8)) }?.code == .notOwner)
        try await admin.alterTopic("plant.PL01.confirmations", owner: .some(nil))
        try await Self.produce(mes, "plant.PL01.confirmations", Array(#"{"lot":"L5"}"#.utf8))
        try await admin.alterTopic("plant.PL01.confirmations", owner: .some("mes-pl01"))
        for client in [admin, mes] { await client.close() }
        await live.stop()
        let again = try await LiveServer(directory: live.directory, configure: { $0.auth = .off })
        let plain = Self.client(again, nil)
        #expect(try await plain.describeTopic("plant.PL01.confirmations").owner == "mes-pl01")
        try await Self.produce(plain, "plant.PL01.confirmations", Array(#"{"lot":"L6"}"#.utf8))
        await plain.close()
    }

    /// The audit records in `_audit`, as the auditor reads them.
    static func auditRecords(_ live: LiveServer, tls: ClientTLS? = nil) async throws -> [[String: String]] {
        await live.server.flushAudit()
        var configuration = Self.client(live, "audit", "audit-secret").configuration
        configuration.tls = tls
        let auditor = MillraceClient(configuration: configuration)
        defer { Task { await auditor.close() } }
        var rows: [[String: String]] = []
        for try await record in Consumer(client: auditor, topic: "_audit", from: .earliest, stopAtEnd: true) {
            let object = try JSONSerialization.jsonObject(with: Data(record.value ?? [])) as? [String: Any] ?? [:]
            rows.append(object.compactMapValues { $0 as? String })
        }
        return rows
    }

    /// Every administrative change and every refusal is a record naming who, from where, what,
    /// on what and how it ended; `_audit` is the broker's alone to write and nobody's to delete.
    @Test func changesAndRefusalsAreAudited() async throws {
        let live = try await Self.server()
        let admin = Self.client(live, "admin", "admin-secret")
        _ = try await admin.createTopic("plant.PL01.confirmations")
        try await admin.alterTopic("plant.PL01.confirmations", retention: .after(.seconds(86_400)), owner: .some("mes-pl01"))
        try await admin.alterSecurity(.createRole(name: "erp-reader"))
        try await admin.alterSecurity(.addEntry(ACLEntry(.allow, .read, .topic, try ResourcePattern("*")), to: .role("erp-reader")))
        try await admin.alterSecurity(.createUser(name: "erp", roles: ["erp-reader"], scope: nil, credentials: SCRAMCredential.all(password: "erp-secret", iterations: Self.iterations)))
        let pl02 = Self.client(live, "mes-pl02", "pl02-secret")
        _ = await Self.refusal { try await Self.produce(pl02, "plant.PL01.confirmations", [0x7B, 0x7D]) }
        _ = await Self.refusal { try await pl02.deleteTopic("plant.PL01.confirmations") }
        let wrong = Self.client(live, "mes-pl02", "not-it")
        _ = await Self.refusal { _ = try await wrong.listTopics() }
        #expect(await Self.refusal { try await admin.deleteTopic("_audit") }?.code == .notAuthorized)
        #expect(await Self.refusal { try await Self.produce(admin, "_audit", [0x7B, 0x7D]) }?.code == .notAuthorized)
        // Only auditors and administrators read it.
        #expect(await Self.refusal { _ = try await pl02.describeTopic("_audit") }?.code == .notAuthorized)
        let rows = try await Self.auditRecords(live)
        func has(_ principal: String, _ operation: String, _ resource: String, _ result: String) -> Bool {
            rows.contains { $0["principal"] == principal && $0["operation"] == operation && $0["resource"] == resource && $0["result"] == result && $0["peer"]?.hasPrefix("127.0.0.1:") == true }
        }
        #expect(has("admin", "topic create", "topic plant.PL01.confirmations", "ok"), "\(rows)")
        #expect(has("admin", "topic alter (owner mes-pl01)", "topic plant.PL01.confirmations", "ok"))
        #expect(has("admin", "role create", "role erp-reader", "ok"))
        #expect(has("admin", "acl create", "role erp-reader: allow read topic *", "ok"))
        #expect(has("admin", "user create", "user erp", "ok"))
        #expect(has("mes-pl02", "describe_topic", "topic plant.PL01.confirmations", "not_authorized") || has("mes-pl02", "metadata", "topic plant.PL01.confirmations", "not_authorized"))
        #expect(has("mes-pl02", "topic delete", "topic plant.PL01.confirmations", "not_authorized"))
        #expect(has("mes-pl02", "login", "the cluster", "authentication_failed"))
        #expect(has("admin", "topic delete", "topic _audit", "not_authorized"))
        #expect(rows.allSatisfy { ($0["detail"] ?? "").contains("secret") == false })
        for client in [admin, pl02, wrong] { await client.close() }
    }

    /// The audit trail cannot be made to forget, or filled: its retention only grows, names
    /// starting with _ are the broker's, a topic's quarantine has its topic's owner, and
    /// refusals past a burst are counted rather than written one by one.
    @Test func theTrailHoldsAndIsBounded() async throws {
        let clock = ManualClock()
        let live = try await Self.server(clock: clock)
        let admin = Self.client(live, "admin", "admin-secret")
        #expect(await Self.refusal { try await admin.alterTopic("_audit", retention: .after(.seconds(3_600))) }?.code == .notAuthorized)
        #expect(await Self.refusal { try await admin.alterTopic("_audit", owner: .some("admin")) }?.code == .notAuthorized)
        try await admin.alterTopic("_audit", retention: .forever)
        #expect(await Self.refusal { _ = try await admin.createTopic("_shadow") }?.code == .invalidTopicName)
        _ = try await admin.createTopic("plant.PL01.checked", MillraceClient.TopicConfig(owner: "mes-pl01"))
        _ = try await admin.createTopic("plant.PL01.checked.quarantine")
        let parked = await Self.refusal { try await Self.produce(admin, "plant.PL01.checked.quarantine", [0x7B, 0x7D]) }
        #expect(parked?.code == .notOwner && parked?.message.contains("owned by mes-pl01") == true)
        // A flood of refusals from one principal and address: the first 50 are records, the
        // rest are counted, and the next record after a pause says how many.
        let pl02 = Self.client(live, "mes-pl02", "pl02-secret")
        for _ in 0..<200 { _ = await Self.refusal { _ = try await pl02.describeTopic("plant.PL01.checked") } }
        clock.advance(by: .seconds(1))
        _ = await Self.refusal { _ = try await pl02.describeTopic("plant.PL01.checked") }
        let rows = try await Self.auditRecords(live).filter { $0["principal"] == "mes-pl02" }
        #expect(rows.count == 51, "\(rows.count)")
        #expect(rows.last?["detail"]?.contains("150 more refusals of this principal from this address") == true, "\(String(describing: rows.last))")
        for client in [admin, pl02] { await client.close() }
    }
}
