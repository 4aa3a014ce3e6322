import MillraceFormat
import NIOCore
import NIOSSL

/// The certificate files every listener's TLS is made from (`serve --tls-cert`, `--tls-key`,
/// `--tls-client-ca`).
public struct TLSFiles: Sendable, Equatable {
    /// PEM: the broker's certificate, then any intermediates.
    public var certificate: String
    /// PEM: its private key.
    public var key: String
    /// PEM: the CAs whose client certificates are accepted. Given, every client must present
    /// one (mutual TLS), and its subject becomes the connection's principal.
    public var clientCA: String?

    public init(certificate: String, key: String, clientCA: String? = nil) {
        self.certificate = certificate
        self.key = key
        self.clientCA = clientCA
    }
}

/// The broker's TLS: a context made from `TLSFiles`, which new connections take; `reload()`
/// reads the files again (SIGHUP) and replaces it, leaving open connections as they are.
public final class ServerTLS: Sendable {
    public let files: TLSFiles
    private let current: Locked<NIOSSLContext>

    public init(files: TLSFiles) throws {
        self.files = files
        current = Locked(try Self.context(files))
    }

    var context: NIOSSLContext { current.withLock { $0 } }
    var requiresClientCertificate: Bool { files.clientCA != nil }

    /// Reads the files again; a broken file leaves the context as it was and throws why.
    public func reload() throws {
        let made = try Self.context(files)
        current.withLock { $0 = made }
    }

    private static func context(_ files: TLSFiles) throws -> NIOSSLContext {
        let chain: [NIOSSLCertificate]
        let key: NIOSSLPrivateKey
        do {
            chain = try NIOSSLCertificate.fromPEMFile(files.certificate)
        } catch {
            throw MillraceError(.invalidConfig, "cannot read the TLS certificate \(files.certificate) (PEM): \(error)")
        }
        guard !chain.isEmpty else { throw MillraceError(.invalidConfig, "the TLS certificate file \(files.certificate) holds no certificate") }
        do {
            key = try NIOSSLPrivateKey(file: files.key, format: .pem)
        } catch {
            throw MillraceError(.invalidConfig, "cannot read the TLS private key \(files.key) (PEM, unencrypted): \(error)")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        if let clientCA = files.clientCA {
            let roots: [NIOSSLCertificate]
            do {
                roots = try NIOSSLCertificate.fromPEMFile(clientCA)
            } catch {
                throw MillraceError(.invalidConfig, "cannot read the client CA file \(clientCA) (PEM): \(error)")
            }
            configuration.trustRoots = .certificates(roots)
            configuration.certificateVerification = .noHostnameVerification
        }
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw MillraceError(.invalidConfig, "the TLS certificate and key do not make a usable context (do they belong together?): \(error)")
        }
    }

    /// A certificate's subject as RFC 4514 writes it, most specific first: `CN=gw-pl01,O=Plant 01`;
    /// nil for a subject this broker cannot name without ambiguity (an attribute type outside
    /// CN, OU, O, L, ST, C, emailAddress and UID, or a control character), which then gets
    /// no principal: two different certificates must never name the same one.
    static func subject(of certificate: NIOSSLCertificate) -> String? {
        let names: [(SSLCertificateNameType, String)] = [
            (.commonName, "CN"), (.organizationalUnit, "OU"), (.organization, "O"), (.city, "L"), (.state, "ST"), (.country, "C"), (.emailAddress, "emailAddress"),
            (.userId, "UID"),
        ]
        var parts: [String] = []
        for part in certificate.subjectName.reversed() {
            guard let label = names.first(where: { $0.0 == part.type })?.1, !part.value.unicodeScalars.contains(where: \.isUnsafeInText) else { return nil }
            var escaped = ""
            for character in part.value {
                if "\\,+\"<>;=".contains(character) { escaped.append("\\") }
                escaped.append(character)
            }
            if escaped.hasPrefix("#") || escaped.hasPrefix(" ") { escaped = "\\" + escaped }
            parts.append("\(label)=\(escaped)")
        }
        return parts.isEmpty ? nil : parts.joined(separator: ",")
    }
}
