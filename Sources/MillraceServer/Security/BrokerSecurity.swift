import Foundation
import Logging
import MillraceFormat
import MillraceSecurity
import MillraceStorage

/// Whether connections log in (`serve --auth`).
public enum AuthMode: String, Sendable, CaseIterable {
    /// No logins; every request allowed (a broker on loopback, as before issue 26).
    case off
    /// Logins taken and their principals held to their rights; a connection that does not
    /// log in acts as `anonymous` (the `anonymous` role's rights). For moving clients over.
    case optional
    /// Only ApiVersions and a login before anything else.
    case required
}

/// The broker's security: the state (users, roles, ACL entries) held in memory and in the
/// data directory, logins and their rate limit, and authorization decisions, for every
/// listener alike.
final class BrokerSecurity: Sendable {
    let mode: AuthMode
    private let storage: Storage
    private let current: Locked<SecurityState>
    let logins: LoginLimiter
    /// Every administrative change and every refusal (docs/SECURITY.md, "What is logged").
    let audit: AuditLog
    private let clock: any MillraceClock
    private let logger: Logger
    private let logLimiter: LogLimiter

    init(storage: Storage, mode: AuthMode, clock: any MillraceClock, logger: Logger, logLimiter: LogLimiter) throws {
        self.mode = mode
        self.storage = storage
        self.clock = clock
        self.logger = logger
        self.logLimiter = logLimiter
        logins = LoginLimiter(clock: clock)
        audit = AuditLog(storage: storage, clock: clock, logger: logger, logLimiter: logLimiter)
        do {
            current = Locked(try SecurityState(decoding: storage.securityRecord()))
        } catch let error as SecurityError {
            throw MillraceError(.storageError, error.message)
        }
    }

    var state: SecurityState { current.withLock { $0 } }

    /// Who a new connection acts as before any login: everyone with `--auth off`, anonymous
    /// with `optional`, nobody (only a login) with `required`.
    func newSession(encrypted: Bool) -> ConnectionSession {
        switch mode {
        case .off: ConnectionSession(principal: .unrestricted, encrypted: encrypted)
        case .optional: ConnectionSession(principal: .anonymous, encrypted: encrypted)
        case .required: ConnectionSession(principal: nil, encrypted: encrypted)
        }
    }

    /// Throws `notAuthorized`, naming the principal, the operation, the resource and the
    /// rule, unless `principal` may do `operation` on `resource`.
    func authorize(_ principal: Principal, _ operation: SecurityOperation, _ resource: Resource) throws {
        let state = self.state
        let decision = state.decide(state.current(principal), operation, resource)
        guard !decision.allowed else { return }
        throw refusal(principal, operation, resource, decision)
    }

    func allows(_ principal: Principal, _ operation: SecurityOperation, _ resource: Resource) -> Bool {
        if principal.isUnrestricted { return true }
        let state = self.state
        return state.decide(state.current(principal), operation, resource).allowed
    }

    func refusal(_ principal: Principal, _ operation: SecurityOperation, _ resource: Resource, _ decision: Decision) -> MillraceError {
        MillraceError(.notAuthorized, "principal \(principal.name) may not \(operation.rawValue) \(resource) (\(decision.reason))")
    }

    /// Makes `change` in the data directory and then in memory.
    func change(_ change: SecurityChange, completion: @escaping @Sendable (Result<Void, MillraceError>) -> Void) {
        let clock = self.clock
        storage.updateSecurityRecord({ bytes in
            do {
                var state = try SecurityState(decoding: bytes)
                try state.apply(change, nowMs: clock.nowMilliseconds())
                return state.encoded()
            } catch let error as SecurityError {
                throw MillraceError(.invalidRequest, error.message)
            }
        }) { [current] result in
            completion(
                result.flatMap { bytes in
                    guard let state = try? SecurityState(decoding: bytes) else { return .failure(MillraceError(.unexpected, "the security record just written does not read back")) }
                    current.withLock { $0 = state }
                    return .success(())
                })
        }
    }

    /// The user a client-first message names (`n,,n=USER,r=…`), for the audit record of a
    /// refused login.
    static func userNamed(in message: String) -> String? {
        guard message.hasPrefix("n,,n=") else { return nil }
        return message.dropFirst(5).split(separator: ",", maxSplits: 1).first.map { String($0.prefix(128)) }
    }

    // MARK: Idempotent producers

    private struct ProducerOwners {
        var owners: [Int64: String] = [:]
        var order: [Int64] = []
    }

    /// Which principal each producer id this process gave out (or first saw) belongs to: one
    /// principal cannot start a new epoch of another's id, nor send batches under it (which
    /// would fence the real producer). Bounded; the oldest claims are forgotten first.
    private let producerOwners = Locked(ProducerOwners())
    static let producerOwnersMax = 131_072

    /// Nil when `principal` may use producer id `id` (claimed for it now if nobody has), else
    /// the error naming whose it is.
    /// Only InitProducer claims (`claiming`); a batch under an id nobody claimed (one given
    /// out before a restart) is let through without claiming it, so nobody can squat an id
    /// that InitProducer is about to give out.
    func claimProducer(_ id: Int64, by principal: Principal, claiming: Bool = true) -> MillraceError? {
        guard id >= 0, !principal.isUnrestricted else { return nil }
        let owner = producerOwners.withLock { table -> String? in
            if let owner = table.owners[id] { return owner }
            guard claiming else { return nil }
            table.owners[id] = principal.name
            table.order.append(id)
            if table.order.count > Self.producerOwnersMax {
                let forgotten = table.order.prefix(table.order.count / 4)
                for old in forgotten { table.owners[old] = nil }
                table.order.removeFirst(forgotten.count)
            }
            return nil
        }
        guard let owner, owner != principal.name else { return nil }
        return MillraceError(.notAuthorized, "principal \(principal.name) may not use producer id \(id): it belongs to another principal; ask for an id of its own (InitProducer)")
    }

    // MARK: Logins

    /// One SASL step of `session`'s login from `host` (the peer's address without its port).
    /// The answer to send, or the error to answer with before closing the connection.
    func authenticate(_ session: ConnectionSession, mechanism name: String, message: [UInt8], host: String, peer: String) -> Result<
        (reply: [UInt8], principal: Principal?), MillraceError
    > {
        guard mode != .off else {
            return .failure(MillraceError(.authenticationFailed, "this broker runs with --auth off: connect without a user (or start it with --auth required)"))
        }
        if let current = session.principal, current.authentication == .certificate {
            // Not a failed login: the connection is someone already. Not counted.
            return .failure(
                MillraceError(
                    .authenticationFailed,
                    "this connection is authenticated by its client certificate as \(current.name); connect without a user (or without the certificate) to log in with a password"))
        }
        let text = String(decoding: message, as: UTF8.self)
        let named = session.loginUser ?? Self.userNamed(in: text)
        if let waitMs = logins.blockedFor(host, user: named) {
            audit.record(
                principal: Principal(name: named.map { LogText.printable($0) } ?? "unknown", roles: [], authentication: .password),
                peer: peer, operation: "login", resource: "the cluster", result: ErrorCode.authenticationFailed.description, detail: "too many failed logins from \(host)")
            return .failure(
                MillraceError(.authenticationFailed, "too many failed logins from \(host); try again in \(max(1, (waitMs + 999) / 1_000)) s"))
        }
        let state = self.state
        do {
            let reply = try session.step(mechanism: name, message: text, state: state)
            if let user = reply.authenticatedUser {
                guard let principal = state.principal(named: user, .password) else { throw SCRAMError("user \(user) was deleted during the login") }
                session.loggedIn(principal)
                logins.succeeded(host, user: user)
                logger.info("\(peer) logged in as \(user) (\(name))")
                return .success((Array(reply.message.utf8), principal))
            }
            return .success((Array(reply.message.utf8), nil))
        } catch {
            let user = session.loginUser ?? Self.userNamed(in: text)
            session.loginFailed()
            logins.failed(host, user: user)
            audit.record(
                principal: Principal(name: user.map { LogText.printable($0) } ?? "unknown", roles: [], authentication: .password), peer: peer, operation: "login",
                resource: "the cluster", result: ErrorCode.authenticationFailed.description, detail: (error as? SCRAMError)?.message ?? "\(error)")
            // The reason names the user, never the password (SCRAM never sends it).
            let reason = (error as? SCRAMError)?.message ?? "\(error)"
            if let held = logLimiter.allow("login-failed") { logger.warning("login failed from \(peer): \(reason)\(held)") }
            return .failure(MillraceError(.authenticationFailed, "login refused: wrong user or password, or a broken SASL exchange (\(name))"))
        }
    }
}

/// One connection's identity: who it acts as, and its login while one is under way. Touched
/// on the connection's event loop; locked all the same, as sessions are shared with callbacks.
final class ConnectionSession: Sendable {
    private struct State {
        var principal: Principal?
        var exchange: SCRAMServer?
        /// The mechanism a Kafka client named in SaslHandshake.
        var kafkaMechanism: String?
        var loggedIn = false
    }

    private let state: Locked<State>
    let encrypted: Bool

    init(principal: Principal?, encrypted: Bool) {
        state = Locked(State(principal: principal))
        self.encrypted = encrypted
    }

    /// Who the connection acts as; nil until it logs in (`--auth required`).
    var principal: Principal? { state.withLock { $0.principal } }

    var kafkaMechanism: String? {
        get { state.withLock { $0.kafkaMechanism } }
        set { state.withLock { $0.kafkaMechanism = newValue } }
    }

    struct Step {
        var message: String
        var authenticatedUser: String?
    }

    /// Feeds the login one client message.
    fileprivate func step(mechanism name: String, message: String, state security: SecurityState) throws -> Step {
        try state.withLock { state -> Step in
            guard !state.loggedIn else { throw SCRAMError("this connection has logged in already") }
            if var exchange = state.exchange {
                guard exchange.mechanism.rawValue == name else { throw SCRAMError("the mechanism changed during the login") }
                let final = try exchange.receiveClientFinal(message)
                state.exchange = exchange
                guard case .authenticated(let user) = exchange.state else { throw SCRAMError("the login did not complete") }
                return Step(message: final, authenticatedUser: user)
            }
            guard let mechanism = SCRAMMechanism(rawValue: name) else {
                throw SCRAMError("mechanism \(name) is not offered; use \(SCRAMMechanism.allCases.map(\.rawValue).joined(separator: " or "))")
            }
            var exchange = SCRAMServer(mechanism: mechanism, nonce: Self.nonce())
            let first = try exchange.receiveClientFirst(message) { security.users[$0]?.credential(mechanism) }
            state.exchange = exchange
            return Step(message: first, authenticatedUser: nil)
        }
    }

    fileprivate func loggedIn(_ principal: Principal) {
        state.withLock {
            $0.principal = principal
            $0.exchange = nil
            $0.loggedIn = true
        }
    }

    /// A verified client certificate for `subject`: the connection acts as the user of that
    /// name (a certificate-only user gives it roles), or as a principal of that name with only
    /// the entries given to it. With `--auth off` nothing changes. Returns who it acts as.
    func presented(certificate subject: String, security: BrokerSecurity) -> Principal? {
        guard security.mode != .off else { return principal }
        let principal = security.state.principal(named: subject, .certificate) ?? Principal(name: subject, roles: [], authentication: .certificate)
        state.withLock {
            $0.principal = principal
            $0.loggedIn = true
        }
        return principal
    }

    fileprivate func loginFailed() { state.withLock { $0.exchange = nil } }

    /// The user of the login under way (after its first message).
    fileprivate var loginUser: String? {
        state.withLock { state in
            guard case .awaitingClientFinal(let user)? = state.exchange?.state else { return nil }
            return user
        }
    }

    private static func nonce() -> String {
        var generator = SystemRandomNumberGenerator()
        return Data((0..<18).map { _ in UInt8.random(in: 0...255, using: &generator) }).base64EncodedString()
    }
}

/// Failed logins, counted per address and user, and per address over all users. Five
/// failures of one user from one address are free, then that user's logins from there are
/// refused unheard for a time that doubles with every failure (1 s up to 5 min); fifty from
/// one address over all users, and the whole address is. So one client with a wrong password
/// (librdkafka retries by itself) locks out itself, not its neighbours behind the same
/// gateway, and trying many users from one place still stops. A good login clears its user's
/// count. At most `entriesMax` counts are kept (the quietest are forgotten first).
final class LoginLimiter: Sendable {
    private struct Entry {
        var failures: Int
        var blockedUntilMs: Int64
        var lastMs: Int64
    }

    static let freeFailuresPerUser = 5
    static let freeFailuresPerAddress = 50
    static let blockMaxMs: Int64 = 300_000
    static let entriesMax = 20_000
    private let entries = Locked<[String: Entry]>([:])
    private let clock: any MillraceClock

    init(clock: any MillraceClock) { self.clock = clock }

    /// What failures are counted by: an IPv4 address, or an IPv6 address's /64 (one machine
    /// usually has a whole /64 to choose from).
    static func key(_ host: String) -> String {
        var v6 = in6_addr()
        guard host.contains(":"), !host.hasPrefix("::ffff:"), inet_pton(AF_INET6, host, &v6) == 1 else { return host }
        let bytes = withUnsafeBytes(of: &v6) { Array($0.prefix(8)) }
        return stride(from: 0, to: 8, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }.joined(separator: ":") + "::/64"
    }

    private static func keys(_ host: String, _ user: String?) -> (address: String, user: String) {
        let address = key(host)
        return (address, address + " " + (user ?? "?"))
    }

    /// Milliseconds before `user`'s next login from `host` is heard; nil when it may log in now.
    func blockedFor(_ host: String, user: String?) -> Int64? {
        let keys = Self.keys(host, user)
        let now = clock.nowMilliseconds()
        return entries.withLock { entries in
            let until = max(entries[keys.address]?.blockedUntilMs ?? 0, entries[keys.user]?.blockedUntilMs ?? 0)
            return until > now ? until - now : nil
        }
    }

    func failed(_ host: String, user: String?) {
        let keys = Self.keys(host, user)
        let now = clock.nowMilliseconds()
        entries.withLock { entries in
            for (key, free) in [(keys.user, Self.freeFailuresPerUser), (keys.address, Self.freeFailuresPerAddress)] {
                var entry = entries[key] ?? Entry(failures: 0, blockedUntilMs: 0, lastMs: now)
                entry.failures += 1
                entry.lastMs = now
                if entry.failures >= free {
                    let doublings = min(entry.failures - free, 20)
                    entry.blockedUntilMs = now + min(Self.blockMaxMs, 1_000 << doublings)
                }
                entries[key] = entry
            }
            while entries.count > Self.entriesMax, let quietest = entries.min(by: { $0.value.lastMs < $1.value.lastMs })?.key {
                entries[quietest] = nil
            }
        }
    }

    func succeeded(_ host: String, user: String) { entries.withLock { _ = $0.removeValue(forKey: Self.keys(host, user).user) } }
}
