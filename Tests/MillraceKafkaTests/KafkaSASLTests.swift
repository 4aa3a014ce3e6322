import MillraceFormat
import MillraceKafka
import MillraceWire
import NIOCore
import Testing

/// SaslHandshake and SaslAuthenticate at every version: golden bytes by hand where the layout
/// changes, round trips, truncations and an over-long message refused.
@Suite struct KafkaSASLTests {
    static func bytes(_ buffer: ByteBuffer) -> [UInt8] { Array(buffer.readableBytesView) }

    @Test func handshakeByHand() throws {
        var request = ByteBuffer()
        KafkaSASL.HandshakeRequest(mechanism: "SCRAM-SHA-256").write(to: &request, version: 1)
        #expect(Self.bytes(request) == [0, 13] + Array("SCRAM-SHA-256".utf8))
        #expect(try KafkaSASL.HandshakeRequest(from: &request, version: 1) == KafkaSASL.HandshakeRequest(mechanism: "SCRAM-SHA-256"))
        let answer = KafkaSASL.HandshakeResponse(errorCode: 33, mechanisms: ["SCRAM-SHA-256", "SCRAM-SHA-512"])
        var written = ByteBuffer()
        answer.write(to: &written, version: 0)
        #expect(Array(Self.bytes(written).prefix(8)) == [0, 33, 0, 0, 0, 2, 0, 13])
        #expect(try KafkaSASL.HandshakeResponse(from: &written, version: 0) == answer)
    }

    @Test func authenticateAtEveryVersion() throws {
        let message = Array("n,,n=user,r=abc".utf8)
        var v0 = ByteBuffer()
        KafkaSASL.AuthenticateRequest(authBytes: message).write(to: &v0, version: 0)
        #expect(Self.bytes(v0) == [0, 0, 0, UInt8(message.count)] + message)
        var v2 = ByteBuffer()
        KafkaSASL.AuthenticateRequest(authBytes: message).write(to: &v2, version: 2)
        #expect(Self.bytes(v2) == [UInt8(message.count + 1)] + message + [0])
        let answer = KafkaSASL.AuthenticateResponse(errorCode: 58, errorMessage: "authentication failed for user", authBytes: [1, 2], sessionLifetimeMs: 3_600_000)
        for version in KafkaSASL.authenticateVersions {
            var request = ByteBuffer()
            KafkaSASL.AuthenticateRequest(authBytes: message).write(to: &request, version: version)
            #expect(try KafkaSASL.AuthenticateRequest(from: &request, version: version).authBytes == message)
            #expect(request.readableBytes == 0)
            var written = ByteBuffer()
            answer.write(to: &written, version: version)
            var expected = answer
            if version < 1 { expected.sessionLifetimeMs = 0 }
            #expect(try KafkaSASL.AuthenticateResponse(from: &written, version: version) == expected, "v\(version)")
            #expect(written.readableBytes == 0)
            var whole = ByteBuffer()
            answer.write(to: &whole, version: version)
            for length in 0..<whole.readableBytes {
                var cut = whole.getSlice(at: 0, length: length)!
                #expect(throws: MillraceError.self, "v\(version) cut at \(length)") { try KafkaSASL.AuthenticateResponse(from: &cut, version: version) }
            }
        }
        var long = ByteBuffer()
        KafkaSASL.AuthenticateRequest(authBytes: [UInt8](repeating: 0x61, count: KafkaSASL.messageBytesMax + 1)).write(to: &long, version: 1)
        #expect(throws: MillraceError.self) { try KafkaSASL.AuthenticateRequest(from: &long, version: 1) }
    }
}
