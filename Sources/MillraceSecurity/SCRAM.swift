import Crypto
import Foundation
import MillraceFormat

/// SCRAM (RFC 5802) with SHA-256 (RFC 7677) or SHA-512: the login both listeners will take
/// (issue 26; Kafka's SCRAM-SHA-256 and SCRAM-SHA-512). The broker keeps only a
/// `SCRAMCredential` per user (salt, iteration count, StoredKey, ServerKey), never the
/// password: it can check a client's proof and prove itself, but a stolen credential does not
/// log anyone in. Channel binding is not offered (gs2 header `n,,`). Names are taken as they
/// are (no SASLprep): `=` and `,` are escaped as the RFC says.
public enum SCRAMMechanism: String, CaseIterable, Sendable {
    case sha256 = "SCRAM-SHA-256"
    case sha512 = "SCRAM-SHA-512"

    func hmac(_ key: [UInt8], _ data: [UInt8]) -> [UInt8] {
        switch self {
        case .sha256: Array(HMAC<SHA256>.authenticationCode(for: data, using: SymmetricKey(data: key)))
        case .sha512: Array(HMAC<SHA512>.authenticationCode(for: data, using: SymmetricKey(data: key)))
        }
    }

    /// Bytes of the mechanism's digest (and so of StoredKey and ServerKey).
    public var digestBytes: Int {
        switch self {
        case .sha256: 32
        case .sha512: 64
        }
    }

    func hash(_ data: [UInt8]) -> [UInt8] {
        switch self {
        case .sha256: Array(SHA256.hash(data: data))
        case .sha512: Array(SHA512.hash(data: data))
        }
    }

    /// Hi(): PBKDF2 with the mechanism's HMAC, one block. Each round is two hash compressions
    /// from the key's inner and outer states, absorbed once (as BoringSSL's PBKDF2 does):
    /// a login's 8,192 rounds cost ~3 ms, not the ~20 ms of a fresh HMAC per round.
    func salted(_ password: [UInt8], salt: [UInt8], iterations: Int) -> [UInt8] {
        switch self {
        case .sha256: Self.pbkdf2(SHA256.self, password, salt: salt, iterations: iterations)
        case .sha512: Self.pbkdf2(SHA512.self, password, salt: salt, iterations: iterations)
        }
    }

    static func pbkdf2<Hash: HashFunction>(_: Hash.Type, _ password: [UInt8], salt: [UInt8], iterations: Int) -> [UInt8] {
        // HMAC's key: hashed when longer than a block, padded with zeros to a block.
        var key = password.count > Hash.blockByteCount ? Array(Hash.hash(data: password)) : password
        key += [UInt8](repeating: 0, count: Hash.blockByteCount - key.count)
        var inner = Hash()
        inner.update(data: key.map { $0 ^ 0x36 })
        var outer = Hash()
        outer.update(data: key.map { $0 ^ 0x5c })
        func mac(_ message: UnsafeRawBufferPointer) -> Hash.Digest {
            var innerRound = inner
            innerRound.update(bufferPointer: message)
            var outerRound = outer
            innerRound.finalize().withUnsafeBytes { outerRound.update(bufferPointer: $0) }
            return outerRound.finalize()
        }
        var block = (salt + [0, 0, 0, 1]).withUnsafeBytes { mac($0) }
        var result = Array(block)
        for _ in 1..<max(iterations, 1) {
            block = block.withUnsafeBytes { mac($0) }
            block.withUnsafeBytes { bytes in
                for index in result.indices { result[index] ^= bytes[index] }
            }
        }
        return result
    }
}

/// What the broker stores for a user.
public struct SCRAMCredential: Equatable, Sendable {
    public var mechanism: SCRAMMechanism
    public var salt: [UInt8]
    public var iterations: Int
    public var storedKey: [UInt8]
    public var serverKey: [UInt8]

    /// The iterations a new credential gets (RFC 7677 asks for at least 4,096).
    public static let iterationsDefault = 8_192
    public static let iterationsMin = 4_096
    /// The bytes of salt a new credential gets.
    public static let saltBytes = 24
    /// Clients refuse more (`SCRAMClient.receiveServerFirst`): a broker cannot make them spin.
    public static let iterationsMax = 1 << 20

    /// A credential for every mechanism, each with a fresh random salt.
    public static func all(password: String, iterations: Int = iterationsDefault) -> [SCRAMCredential] {
        SCRAMMechanism.allCases.map { mechanism in
            var generator = SystemRandomNumberGenerator()
            let salt = (0..<saltBytes).map { _ in UInt8.random(in: 0...255, using: &generator) }
            return SCRAMCredential(mechanism: mechanism, password: password, salt: salt, iterations: iterations)
        }
    }

    public init(mechanism: SCRAMMechanism, salt: [UInt8], iterations: Int, storedKey: [UInt8], serverKey: [UInt8]) {
        self.mechanism = mechanism
        self.salt = salt
        self.iterations = iterations
        self.storedKey = storedKey
        self.serverKey = serverKey
    }

    /// Derives the credential for `password` (UTF-8) with `salt`.
    public init(mechanism: SCRAMMechanism, password: String, salt: [UInt8], iterations: Int = iterationsDefault) {
        let salted = mechanism.salted(Array(password.utf8), salt: salt, iterations: iterations)
        let clientKey = mechanism.hmac(salted, Array("Client Key".utf8))
        self.init(
            mechanism: mechanism, salt: salt, iterations: iterations, storedKey: mechanism.hash(clientKey),
            serverKey: mechanism.hmac(salted, Array("Server Key".utf8)))
    }
}

/// A SCRAM exchange that went wrong, with the RFC's `e=` value where there is one.
public struct SCRAMError: Error, Equatable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
    public init(_ message: String) { self.message = message }
}

/// `key=value` attributes of a SCRAM message.
enum SCRAMAttributes {
    static func parse(_ message: String) throws -> [(Character, String)] {
        try message.split(separator: ",", omittingEmptySubsequences: false).map { part in
            guard part.count >= 2, part.dropFirst().first == "=", let key = part.first else {
                throw SCRAMError("\"\(part.prefix(32))\" is not a SCRAM attribute (key=value)")
            }
            return (key, String(part.dropFirst(2)))
        }
    }

    static func escape(_ name: String) -> String {
        name.replacingOccurrences(of: "=", with: "=3D").replacingOccurrences(of: ",", with: "=2C")
    }

    static func unescape(_ name: String) throws -> String {
        var result = ""
        var rest = Substring(name)
        while let equals = rest.firstIndex(of: "=") {
            result += rest[..<equals]
            let code = rest[equals...].prefix(3)
            switch code {
            case "=3D": result += "="
            case "=2C": result += ","
            default: throw SCRAMError("the user name has a bad escape \(code)")
            }
            rest = rest[equals...].dropFirst(3)
        }
        return result + rest
    }

    static func xor(_ left: [UInt8], _ right: [UInt8]) -> [UInt8] { zip(left, right).map { $0 ^ $1 } }

    static func base64(_ text: String) throws -> [UInt8] {
        guard let data = Data(base64Encoded: text) else { throw SCRAMError("\"\(text.prefix(32))\" is not base64") }
        return Array(data)
    }
}

/// The broker's side of one login, in the shape of the connection state machines: one call
/// per client message, each returning the answer to send.
public struct SCRAMServer: Sendable {
    public enum State: Equatable, Sendable {
        case awaitingClientFirst
        case awaitingClientFinal(user: String)
        case authenticated(user: String)
        case failed
    }

    public let mechanism: SCRAMMechanism
    public private(set) var state: State = .awaitingClientFirst
    private let nonce: String
    private var clientFirstBare = ""
    private var serverFirst = ""
    private var credential: SCRAMCredential?

    /// Makes up the salt of a user that does not exist, the same on every try (as a real
    /// user's is): an HMAC of the name under a secret of the broker's, as long as real salts,
    /// so nobody can tell the two apart or compute one offline.
    private let unknownSalt: @Sendable (String) -> [UInt8]

    /// `nonce` is the server's part of the nonce (printable, no comma): random in use, fixed in
    /// tests. `secret` keys the salts made up for users that do not exist (random per broker).
    public init(mechanism: SCRAMMechanism, nonce: String, secret: [UInt8] = SCRAMServer.processSecret) {
        self.mechanism = mechanism
        self.nonce = nonce
        unknownSalt = { user in Array(mechanism.hmac(secret, Array("unknown-user:\(user)".utf8)).prefix(SCRAMCredential.saltBytes)) }
    }

    /// A secret made when the process starts.
    public static let processSecret: [UInt8] = {
        var generator = SystemRandomNumberGenerator()
        return (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }()

    /// client-first-message → server-first-message. `lookUp` gives the user's credential,
    /// nil for a user that does not exist (the exchange then goes on with a made-up salt, so
    /// that a stranger learns nothing until the proof fails).
    public mutating func receiveClientFirst(_ message: String, lookUp: (String) -> SCRAMCredential?) throws -> String {
        guard state == .awaitingClientFirst else { throw fail("a client-first message came twice") }
        guard message.hasPrefix("n,,") else {
            throw fail(message.hasPrefix("y,") || message.hasPrefix("p=") ? "channel binding is not offered; use gs2 header n,," : "a client-first message starts n,,")
        }
        clientFirstBare = String(message.dropFirst(3))
        let attributes = try SCRAMAttributes.parse(clientFirstBare)
        guard attributes.count >= 2, attributes[0].0 == "n", attributes[1].0 == "r", !attributes[1].1.isEmpty else {
            throw fail("a client-first message is n=USER,r=NONCE")
        }
        let user = try SCRAMAttributes.unescape(attributes[0].1)
        guard !user.isEmpty, user.utf8.count <= 256 else { throw fail("a user name is 1...256 bytes") }
        // Names are printable ASCII (`SecurityState.validate`); anything else is refused before
        // it can reach a log line (a newline in a name would forge one).
        guard user.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else { throw fail("a user name with characters no user name has") }
        let clientNonce = attributes[1].1
        let found = lookUp(user).flatMap { $0.mechanism == mechanism ? $0 : nil }
        credential = found
        let salt = found?.salt ?? unknownSalt(user)
        let iterations = found?.iterations ?? SCRAMCredential.iterationsDefault
        serverFirst = "r=\(clientNonce)\(nonce),s=\(Data(salt).base64EncodedString()),i=\(iterations)"
        state = .awaitingClientFinal(user: user)
        return serverFirst
    }

    /// client-final-message → server-final-message (`v=`), once the proof holds.
    public mutating func receiveClientFinal(_ message: String) throws -> String {
        guard case .awaitingClientFinal(let user) = state else { throw fail("a client-final message came out of turn") }
        guard let proofAt = message.range(of: ",p=") else { throw fail("a client-final message ends ,p=PROOF") }
        let withoutProof = String(message[..<proofAt.lowerBound])
        let attributes = try SCRAMAttributes.parse(withoutProof)
        guard attributes.count >= 2, attributes[0] == ("c", "biws"), attributes[1].0 == "r" else {
            throw fail("a client-final message is c=biws,r=NONCE,p=PROOF")
        }
        // RFC 5802 wants the server-first nonce echoed exactly; librdkafka sends its own nonce
        // again in front of it, and Kafka's brokers take any nonce that ends with theirs. So
        // does this one: the proof covers the message as sent, and the random server part
        // (which makes a replay fail) must still be there.
        guard attributes[1].1.hasSuffix(serverFirst.split(separator: ",")[0].dropFirst(2)) else {
            throw fail("the nonce is not the one this exchange gave")
        }
        let proof = try SCRAMAttributes.base64(String(message[proofAt.upperBound...]))
        guard let credential, proof.count == credential.storedKey.count else { throw fail("authentication failed for user \(user)") }
        let authMessage = Array("\(clientFirstBare),\(serverFirst),\(withoutProof)".utf8)
        let signature = mechanism.hmac(credential.storedKey, authMessage)
        let clientKey = SCRAMAttributes.xor(proof, signature)
        // Constant time over the key's length: no early exit on the first difference.
        let difference = zip(mechanism.hash(clientKey), credential.storedKey).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) }
        guard difference == 0 else { throw fail("authentication failed for user \(user)") }
        state = .authenticated(user: user)
        return "v=" + Data(mechanism.hmac(credential.serverKey, authMessage)).base64EncodedString()
    }

    private mutating func fail(_ message: String) -> SCRAMError {
        state = .failed
        return SCRAMError(message)
    }
}

/// A client's side of one login (the CLI and the Swift client; tests).
public struct SCRAMClient: Sendable {
    public let mechanism: SCRAMMechanism
    private let user: String
    private let password: String
    private let nonce: String
    private var serverFirst = ""
    private var serverSignature: [UInt8] = []

    public init(mechanism: SCRAMMechanism, user: String, password: String, nonce: String) {
        self.mechanism = mechanism
        self.user = user
        self.password = password
        self.nonce = nonce
    }

    private var clientFirstBare: String { "n=\(SCRAMAttributes.escape(user)),r=\(nonce)" }

    public var clientFirst: String { "n,," + clientFirstBare }

    /// server-first-message → client-final-message.
    public mutating func receiveServerFirst(_ message: String, iterationsMax: Int = 1 << 20) throws -> String {
        let attributes = try SCRAMAttributes.parse(message)
        guard attributes.count >= 3, attributes[0].0 == "r", attributes[1].0 == "s", attributes[2].0 == "i" else {
            throw SCRAMError("a server-first message is r=NONCE,s=SALT,i=ITERATIONS")
        }
        guard attributes[0].1.hasPrefix(nonce), attributes[0].1.count > nonce.count else { throw SCRAMError("the server's nonce does not extend ours") }
        guard let iterations = Int(attributes[2].1), (1...iterationsMax).contains(iterations) else {
            throw SCRAMError("the server asks for \(attributes[2].1) iterations")
        }
        serverFirst = message
        let salted = mechanism.salted(Array(password.utf8), salt: try SCRAMAttributes.base64(attributes[1].1), iterations: iterations)
        let clientKey = mechanism.hmac(salted, Array("Client Key".utf8))
        let withoutProof = "c=biws,r=\(attributes[0].1)"
        let authMessage = Array("\(clientFirstBare),\(serverFirst),\(withoutProof)".utf8)
        let proof = SCRAMAttributes.xor(clientKey, mechanism.hmac(mechanism.hash(clientKey), authMessage))
        serverSignature = mechanism.hmac(mechanism.hmac(salted, Array("Server Key".utf8)), authMessage)
        return withoutProof + ",p=" + Data(proof).base64EncodedString()
    }

    /// Checks the server's final message: it knew the credential.
    public func verifyServerFinal(_ message: String) throws {
        if message.hasPrefix("e=") { throw SCRAMError("the broker refused the login: \(message.dropFirst(2))") }
        guard message.hasPrefix("v="), try SCRAMAttributes.base64(String(message.dropFirst(2))) == serverSignature else {
            throw SCRAMError("the broker could not prove it holds the credential")
        }
    }
}
