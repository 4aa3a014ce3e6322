import Foundation
import MillraceSecurity
import Testing

/// SCRAM against the RFCs' own exchanges, and the broker's side against a wrong password, a
/// user that does not exist, a replayed nonce and garbage.
@Suite struct SCRAMTests {
    /// RFC 7677, section 3: user "user", password "pencil".
    @Test func rfc7677ExchangeByteForByte() throws {
        var client = SCRAMClient(mechanism: .sha256, user: "user", password: "pencil", nonce: "rOprNGfwEbeRWgbNEkqO")
        #expect(client.clientFirst == "n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
        let serverFirst = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        let final = try client.receiveServerFirst(serverFirst)
        #expect(final == "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
        try client.verifyServerFinal("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")

        // The broker's side, holding only the derived credential, answers the same.
        let salt: [UInt8] = [0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e, 0xec, 0xa0, 0x4b, 0x14, 0x12, 0x36, 0xfa, 0x81]
        let credential = SCRAMCredential(mechanism: .sha256, password: "pencil", salt: salt, iterations: 4096)
        var server = SCRAMServer(mechanism: .sha256, nonce: "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
        #expect(try server.receiveClientFirst(client.clientFirst) { $0 == "user" ? credential : nil } == serverFirst)
        #expect(try server.receiveClientFinal(final) == "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
        #expect(server.state == .authenticated(user: "user"))
    }

    /// The derived keys of both mechanisms, for a short password and one longer than a hash
    /// block (HMAC hashes that key first), against Python's hashlib.pbkdf2_hmac and hmac.
    @Test func derivedKeysMatchAnIndependentPBKDF2() throws {
        let cases: [(SCRAMMechanism, String, String, String)] = [
            (.sha256, "pencil", "Jp2qwppE3TtLvOAtzWur/agEIv8XX4CAcz5e3H+wMTk=", "eb2EJk3TRLaaloQImPmwzpaQL4qxBmRl9h+RRVQgbLg="),
            (.sha256, String(repeating: "p", count: 200), "qIAaKD48B4MgCH94OJW2EdR5r3NxptNf6MvF7dtXfOc=", "46x2yhXS53SJY8gdHwoZWTj90rvaj4NlIvV46ilu8jY="),
            (
                .sha512, "pencil", "MghB0/icKG6Kfa4u9aatA/9Z7rtCARhSXfiT8CbtTtdM7AbaMkJ1DaIXT/L678vMU/vTrvCdQEB9IcJmxQMh+g==",
                "PMGizof1H6Be2HDTJ267FVNw+ERP7JOvhpsOwZkUIYd0VnY83kBgKa2Cqa45/snO4q/OMoBpNYVf/DPTQu6URg=="
            ),
            (
                .sha512, String(repeating: "p", count: 200), "4RNvHU8zKpNOlnn3elCIaRJK2VkMHCMjvcyUtZ6Wxq3CdSxXb5kFnooRY4cloT+WCvWas1grFkhAt4UwTkgzSQ==",
                "1n8QtafH8CRH4GSL+zNtAwSkdOA56RSeKkGeuGZ3aatF1vZegVZOcgrY+3lktWwJ4FOALk/jCMo461UAgzUhMw=="
            ),
        ]
        for (mechanism, password, storedKey, serverKey) in cases {
            let credential = SCRAMCredential(mechanism: mechanism, password: password, salt: Array("salt-of-16-bytes".utf8), iterations: 8192)
            #expect(Data(credential.storedKey).base64EncodedString() == storedKey, "\(mechanism) \(password.count)")
            #expect(Data(credential.serverKey).base64EncodedString() == serverKey, "\(mechanism) \(password.count)")
        }
    }

    @Test func sha512RoundTripAndAWrongPassword() throws {
        let credential = SCRAMCredential(mechanism: .sha512, password: "s3cret", salt: Array("salt-of-16-bytes".utf8), iterations: 4096)
        for (password, accepted) in [("s3cret", true), ("s3cre7", false)] {
            var client = SCRAMClient(mechanism: .sha512, user: "mes,PL01=line3", password: password, nonce: "clientnonce")
            var server = SCRAMServer(mechanism: .sha512, nonce: "servernonce")
            let first = try server.receiveClientFirst(client.clientFirst) { $0 == "mes,PL01=line3" ? credential : nil }
            let final = try client.receiveServerFirst(first)
            if accepted {
                try client.verifyServerFinal(try server.receiveClientFinal(final))
                #expect(server.state == .authenticated(user: "mes,PL01=line3"))
            } else {
                #expect(throws: SCRAMError("authentication failed for user mes,PL01=line3")) { try server.receiveClientFinal(final) }
                #expect(server.state == .failed)
            }
        }
    }

    /// A user that does not exist gets a salt and iterations like anyone's, and fails only at
    /// the proof; a proof for another exchange's nonce, channel binding, and garbage are refused.
    @Test func strangersReplaysAndGarbageAreRefused() throws {
        var client = SCRAMClient(mechanism: .sha256, user: "nobody", password: "x", nonce: "abc")
        var server = SCRAMServer(mechanism: .sha256, nonce: "def")
        let first = try server.receiveClientFirst(client.clientFirst) { _ in nil }
        #expect(first.hasPrefix("r=abcdef,s=") && first.hasSuffix(",i=\(SCRAMCredential.iterationsDefault)"))
        #expect(throws: SCRAMError.self) { try server.receiveClientFinal(try client.receiveServerFirst(first)) }

        var replayed = SCRAMServer(mechanism: .sha256, nonce: "other")
        _ = try replayed.receiveClientFirst("n,,n=u,r=abc") { _ in SCRAMCredential(mechanism: .sha256, password: "x", salt: [1], iterations: 4096) }
        #expect(throws: SCRAMError("the nonce is not the one this exchange gave")) { try replayed.receiveClientFinal("c=biws,r=abcdef,p=AAAA") }

        for message in ["y,,n=u,r=a", "p=tls-unique,,n=u,r=a", "n,,r=a", "n,,n=,r=a", "n,,n=u=2X,r=a", "", "n,,", "n,,n=u"] {
            var fresh = SCRAMServer(mechanism: .sha256, nonce: "n")
            #expect(throws: SCRAMError.self, "\(message)") { _ = try fresh.receiveClientFirst(message) { _ in nil } }
        }
        var early = SCRAMServer(mechanism: .sha256, nonce: "n")
        #expect(throws: SCRAMError.self) { _ = try early.receiveClientFinal("c=biws,r=x,p=AAAA") }
    }
}
