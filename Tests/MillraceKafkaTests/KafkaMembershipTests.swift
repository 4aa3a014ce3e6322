import MillraceFormat
import MillraceKafka
import MillraceWire
import NIOCore
import Testing

/// Heartbeat and LeaveGroup at every version: golden bytes by hand where the layout changes,
/// everything read back as written less what the version lacks.
@Suite struct KafkaMembershipTests {
    static func bytes(_ buffer: ByteBuffer) -> [UInt8] { Array(buffer.readableBytesView) }

    @Test func heartbeatsByHandAndAtEveryVersion() throws {
        let beat = KafkaMembership.Heartbeat(groupID: "g", generationID: 3, memberID: "m", groupInstanceID: "s")
        var v0 = ByteBuffer()
        beat.write(to: &v0, version: 0)
        #expect(Self.bytes(v0) == [0, 1, 0x67, 0, 0, 0, 3, 0, 1, 0x6D])
        var v4 = ByteBuffer()
        beat.write(to: &v4, version: 4)
        #expect(Self.bytes(v4) == [0x02, 0x67, 0, 0, 0, 3, 0x02, 0x6D, 0x02, 0x73, 0x00])
        for version in KafkaMembership.versions {
            var buffer = ByteBuffer()
            beat.write(to: &buffer, version: version)
            var expected = beat
            if version < 3 { expected.groupInstanceID = nil }
            #expect(try KafkaMembership.Heartbeat(from: &buffer, version: version) == expected, "v\(version)")
            #expect(buffer.readableBytes == 0)
        }
    }

    @Test func leavesAtEveryVersion() throws {
        let leave = KafkaMembership.LeaveGroup(groupID: "g", members: [KafkaMembership.Leaver(memberID: "m", groupInstanceID: nil)])
        var v3 = ByteBuffer()
        leave.write(to: &v3, version: 3)
        #expect(Self.bytes(v3) == [0, 1, 0x67, 0, 0, 0, 1, 0, 1, 0x6D, 0xFF, 0xFF])
        for version in KafkaMembership.versions {
            var buffer = ByteBuffer()
            leave.write(to: &buffer, version: version)
            #expect(try KafkaMembership.LeaveGroup(from: &buffer, version: version) == leave, "v\(version)")
            #expect(buffer.readableBytes == 0)
        }
        let answer = KafkaMembership.Response(
            throttleTimeMs: 2, errorCode: 0, members: [KafkaMembership.Leaver(memberID: "m", groupInstanceID: "s", errorCode: 25)])
        for version in KafkaMembership.versions {
            for api in [KafkaApiKey.heartbeat, .leaveGroup] {
                var buffer = ByteBuffer()
                answer.write(to: &buffer, version: version, api: api)
                var expected = answer
                if version < 1 { expected.throttleTimeMs = 0 }
                if api == .heartbeat || version < 3 { expected.members = nil }
                #expect(try KafkaMembership.Response(from: &buffer, version: version, api: api) == expected, "\(api) v\(version)")
                #expect(buffer.readableBytes == 0)
            }
        }
    }

    /// Names past the native protocol's limits are refused as they are there (the frame is
    /// sound: the request gets `invalid_request`, the connection stays).
    @Test func overLimitNamesAreRefused() {
        var longGroup = ByteBuffer()
        KafkaMembership.Heartbeat(groupID: String(repeating: "g", count: Limits.groupNameBytesMax + 1), generationID: 1, memberID: "m")
            .write(to: &longGroup, version: 4)
        #expect { _ = try KafkaMembership.Heartbeat(from: &longGroup, version: 4) } throws: { ($0 as? MillraceError)?.code == .invalidRequest }
        var longMember = ByteBuffer()
        KafkaMembership.LeaveGroup(groupID: "g", members: [KafkaMembership.Leaver(memberID: String(repeating: "m", count: Limits.memberIDBytesMax + 1))])
            .write(to: &longMember, version: 2)
        #expect { _ = try KafkaMembership.LeaveGroup(from: &longMember, version: 2) } throws: { ($0 as? MillraceError)?.code == .invalidRequest }
    }
}
