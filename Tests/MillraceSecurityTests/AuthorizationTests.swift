import MillraceSecurity
import Testing

/// The ACL decision table: role × operation × resource × literal/prefix/any × allow/deny, with
/// a deny winning, `{scope}` standing for the principal's plant or supplier, `*` not reaching
/// internal topics, describe coming with every allow, and admin on the cluster with everything.
@Suite struct AuthorizationTests {
    static func user(_ name: String, _ roles: [String], scope: String? = nil) -> Principal {
        Principal(name: name, roles: roles, scope: scope, authentication: .password)
    }

    static let pl01 = user("mes-pl01", ["plant-system"], scope: "PL01")
    static let operatorPL03 = user("op-pl03", ["plant-operator"], scope: "PL03")
    static let acme = user("supplier-acme", ["supplier"], scope: "acme")
    static let auditor = user("audit", ["auditor"])
    static let admin = user("admin", [SecurityState.adminRole])
    static let unscoped = user("lost", ["plant-system"])

    struct Row: CustomTestStringConvertible, Sendable {
        var principal: Principal
        var operation: SecurityOperation
        var resource: Resource
        var allowed: Bool
        var testDescription: String { "\(principal.name) \(operation.rawValue) \(resource): \(allowed ? "allowed" : "refused")" }
    }

    /// The built-in roles, as a new data directory has them.
    static let builtInTable: [Row] = [
        // plant-system: its own plant's topics (prefix with {scope}), read and write, no more.
        Row(principal: pl01, operation: .write, resource: .topic("plant.PL01.confirmations"), allowed: true),
        Row(principal: pl01, operation: .read, resource: .topic("plant.PL01.confirmations"), allowed: true),
        Row(principal: pl01, operation: .describe, resource: .topic("plant.PL01.confirmations"), allowed: true),
        Row(principal: pl01, operation: .write, resource: .topic("plant.PL02.confirmations"), allowed: false),
        Row(principal: pl01, operation: .read, resource: .topic("plant.PL02.confirmations"), allowed: false),
        Row(principal: pl01, operation: .describe, resource: .topic("plant.PL02.confirmations"), allowed: false),
        Row(principal: pl01, operation: .write, resource: .topic("plant.PL011.x"), allowed: false),
        Row(principal: pl01, operation: .delete, resource: .topic("plant.PL01.confirmations"), allowed: false),
        Row(principal: pl01, operation: .create, resource: .topic("plant.PL01.new"), allowed: false),
        Row(principal: pl01, operation: .alter, resource: .subject("plant.PL01.confirmations"), allowed: false),
        Row(principal: pl01, operation: .read, resource: .group("plant.PL01.erp"), allowed: true),
        Row(principal: pl01, operation: .read, resource: .group("erp"), allowed: false),
        Row(principal: pl01, operation: .describe, resource: .cluster, allowed: true),
        Row(principal: pl01, operation: .admin, resource: .cluster, allowed: false),
        Row(principal: pl01, operation: .read, resource: .topic("_audit"), allowed: false),
        // Without a scope, {scope} patterns cover nothing.
        Row(principal: unscoped, operation: .write, resource: .topic("plant..confirmations"), allowed: false),
        Row(principal: unscoped, operation: .write, resource: .topic("plant.PL01.confirmations"), allowed: false),
        // plant-operator: creates, deletes and alters in its plant.
        Row(principal: operatorPL03, operation: .create, resource: .topic("plant.PL03.scrap"), allowed: true),
        Row(principal: operatorPL03, operation: .delete, resource: .topic("plant.PL03.scrap"), allowed: true),
        Row(principal: operatorPL03, operation: .alter, resource: .subject("plant.PL03.scrap"), allowed: true),
        Row(principal: operatorPL03, operation: .delete, resource: .group("plant.PL03.mes"), allowed: true),
        Row(principal: operatorPL03, operation: .create, resource: .topic("plant.PL01.scrap"), allowed: false),
        Row(principal: operatorPL03, operation: .admin, resource: .cluster, allowed: false),
        // supplier: only its own prefix.
        Row(principal: acme, operation: .read, resource: .topic("supplier.acme.asn"), allowed: true),
        Row(principal: acme, operation: .write, resource: .topic("supplier.acme.asn"), allowed: true),
        Row(principal: acme, operation: .read, resource: .topic("supplier.globex.asn"), allowed: false),
        Row(principal: acme, operation: .read, resource: .topic("plant.PL01.confirmations"), allowed: false),
        Row(principal: acme, operation: .describe, resource: .cluster, allowed: false),
        // auditor: reads everything, the audit topic too, changes nothing.
        Row(principal: auditor, operation: .read, resource: .topic("plant.PL01.confirmations"), allowed: true),
        Row(principal: auditor, operation: .read, resource: .topic("_audit"), allowed: true),
        Row(principal: auditor, operation: .write, resource: .topic("plant.PL01.confirmations"), allowed: false),
        Row(principal: auditor, operation: .delete, resource: .topic("plant.PL01.confirmations"), allowed: false),
        Row(principal: auditor, operation: .delete, resource: .group("erp"), allowed: false),
        Row(principal: auditor, operation: .read, resource: .cluster, allowed: true),
        Row(principal: auditor, operation: .admin, resource: .cluster, allowed: false),
        // enterprise-admin: everything, internal topics too.
        Row(principal: admin, operation: .delete, resource: .topic("plant.PL01.confirmations"), allowed: true),
        Row(principal: admin, operation: .write, resource: .topic("_audit"), allowed: true),
        Row(principal: admin, operation: .admin, resource: .cluster, allowed: true),
        Row(principal: admin, operation: .alter, resource: .group("anything"), allowed: true),
        // Anonymous (`--auth optional`): use topics, no deletes, no administration.
        Row(principal: .anonymous, operation: .write, resource: .topic("orders"), allowed: true),
        Row(principal: .anonymous, operation: .create, resource: .topic("orders"), allowed: true),
        Row(principal: .anonymous, operation: .delete, resource: .topic("orders"), allowed: false),
        Row(principal: .anonymous, operation: .read, resource: .topic("_audit"), allowed: false),
        Row(principal: .anonymous, operation: .admin, resource: .cluster, allowed: false),
        // `--auth off` and the broker itself: everything.
        Row(principal: .unrestricted, operation: .admin, resource: .cluster, allowed: true),
        Row(principal: .broker, operation: .write, resource: .topic("_audit"), allowed: true),
    ]

    @Test(arguments: builtInTable) func builtInRoles(_ row: Row) {
        let decision = SecurityState.initial.decide(row.principal, row.operation, row.resource)
        #expect(decision.allowed == row.allowed, "\(decision.reason)")
    }

    /// Literal, prefix and any patterns, allow and deny, on a principal's own entries and on a
    /// role's: a deny anywhere wins over every allow.
    @Test func literalPrefixAnyAndDenyWins() throws {
        var state = SecurityState.initial
        try state.createRole("erp-reader")
        try state.addEntry(ACLEntry(.allow, .read, .topic, try ResourcePattern("*")), to: .role("erp-reader"))
        try state.addEntry(ACLEntry(.deny, .read, .topic, try ResourcePattern("plant.PL01.payroll")), to: .role("erp-reader"))
        try state.addEntry(ACLEntry(.allow, .write, .topic, try ResourcePattern("erp.orders")), to: .principal("erp"))
        try state.addEntry(ACLEntry(.deny, .read, .topic, try ResourcePattern("hr.*")), to: .principal("erp"))
        let erp = Self.user("erp", ["erp-reader"])
        #expect(state.decide(erp, .read, .topic("plant.PL02.confirmations")).allowed)
        #expect(state.decide(erp, .read, .topic("supplier.acme.asn")).allowed)
        #expect(!state.decide(erp, .read, .topic("plant.PL01.payroll")).allowed)
        #expect(state.decide(erp, .read, .topic("plant.PL01.payroll2")).allowed)  // a literal covers one name
        #expect(!state.decide(erp, .read, .topic("hr.salaries")).allowed)  // the principal's own deny beats the role's allow
        #expect(state.decide(erp, .write, .topic("erp.orders")).allowed)
        #expect(!state.decide(erp, .write, .topic("erp.orders2")).allowed)
        #expect(!state.decide(erp, .read, .topic("_audit")).allowed)  // `*` leaves internal topics out
        #expect(!state.decide(erp, .read, .group("erp")).allowed)  // topics are not groups
        let denied = state.decide(erp, .read, .topic("hr.salaries"))
        #expect(denied.reason == "denied by principal erp: deny read topic hr.*")
        let missing = state.decide(erp, .delete, .topic("erp.orders"))
        #expect(missing.reason == "no entry of erp (roles erp-reader) allows it")
        // A deny of describe does not take read away; a deny of read does not take describe.
        try state.addEntry(ACLEntry(.deny, .describe, .topic, try ResourcePattern("erp.orders")), to: .principal("erp"))
        #expect(state.decide(erp, .write, .topic("erp.orders")).allowed)
        #expect(!state.decide(erp, .describe, .topic("erp.orders")).allowed)
        #expect(state.decide(erp, .describe, .topic("hr.salaries")).allowed)
        // A deny of admin on the cluster takes everything away, even from an administrator.
        try state.addEntry(ACLEntry(.deny, .admin, .cluster, .any), to: .principal("admin"))
        #expect(!state.decide(Self.admin, .read, .topic("orders")).allowed)
    }

    @Test func patternsAreChecked() {
        for good in ["*", "orders", "plant.PL03.*", "plant.{scope}.*", "_audit", "a-b_c.d"] { #expect(throws: Never.self) { try ResourcePattern(good) } }
        for bad in ["", "or*ders", "**", "plant/PL03", "a b", "{plant}.x", String(repeating: "x", count: 256)] {
            #expect(throws: SecurityError.self, "\(bad)") { try ResourcePattern(bad) }
        }
    }

    @Test func changesRefusedWithTheReason() throws {
        var state = SecurityState.initial
        #expect(throws: SecurityError("role enterprise-admin is built in: change its entries with `millrace acl create|delete --role enterprise-admin` instead of deleting it")) {
            try state.apply(.deleteRole(name: "enterprise-admin"), nowMs: 0)
        }
        #expect(throws: SecurityError.self) { try state.apply(.createUser(name: "x", roles: ["no-such-role"], scope: nil, credentials: []), nowMs: 0) }
        #expect(throws: SecurityError.self) { try state.apply(.createUser(name: "bad\u{7}name", roles: ["auditor"], scope: nil, credentials: []), nowMs: 0) }
        try state.apply(.createRole(name: "erp-reader"), nowMs: 0)
        try state.apply(.createUser(name: "erp", roles: ["erp-reader"], scope: nil, credentials: SCRAMCredential.all(password: "secret-1", iterations: 4_096)), nowMs: 5)
        #expect(throws: SecurityError.self) { try state.apply(.deleteRole(name: "erp-reader"), nowMs: 0) }  // held by erp
        #expect(throws: SecurityError.self) { try state.apply(.createUser(name: "erp", roles: ["auditor"], scope: nil, credentials: []), nowMs: 0) }
        // A credential the broker could not use, or that would make logins spin, is refused.
        var weak = SCRAMCredential.all(password: "secret-1", iterations: 4_096)
        weak[0].iterations = 10
        #expect(throws: SecurityError.self) { try state.apply(.setPassword(name: "erp", credentials: weak), nowMs: 0) }
        try state.apply(.setUser(name: "erp", roles: ["auditor"], scope: .some("PL01")), nowMs: 0)
        #expect(state.users["erp"]?.roles == ["auditor"] && state.users["erp"]?.scope == "PL01")
        try state.apply(.deleteUser(name: "erp"), nowMs: 0)
        try state.apply(.deleteRole(name: "erp-reader"), nowMs: 0)
        #expect(state.users.isEmpty && state.roles["erp-reader"] == nil)
    }

    /// The stored form reads back to the same state, and what it stores of a password is the
    /// SCRAM keys (no password bytes anywhere in it).
    @Test func storedFormRoundTripsWithoutThePassword() throws {
        var state = SecurityState.initial
        try state.apply(.createRole(name: "erp-reader"), nowMs: 1)
        try state.apply(.addEntry(ACLEntry(.deny, .write, .group, try ResourcePattern("x.*")), to: .role("erp-reader")), nowMs: 1)
        try state.apply(.addEntry(ACLEntry(.allow, .read, .subject, try ResourcePattern("plant.{scope}.*")), to: .principal("CN=gw")), nowMs: 1)
        let password = "correct horse battery"
        try state.apply(.createUser(name: "erp", roles: ["erp-reader", "auditor"], scope: "PL09", credentials: SCRAMCredential.all(password: password, iterations: 4_096)), nowMs: 7)
        let bytes = state.encoded()
        #expect(try SecurityState(decoding: bytes) == state)
        #expect(try SecurityState(decoding: nil) == .initial)
        let needle = Array(password.utf8)
        #expect(!(0...(bytes.count - needle.count)).contains { Array(bytes[$0..<$0 + needle.count]) == needle })
        // A damaged record is refused with what to do, not trusted.
        #expect(throws: SecurityError.self) { try SecurityState(decoding: Array(bytes.prefix(bytes.count / 2))) }
    }
}
