import MillraceFormat
import MillraceWire
import NIOCore
import TestSupport
import Testing

func hex(_ text: String) -> [UInt8] {
    let digits = text.filter(\.isHexDigit)
    return stride(from: 0, to: digits.count, by: 2).map { offset in
        let start = digits.index(digits.startIndex, offsetBy: offset)
        return UInt8(digits[start..<digits.index(start, offsetBy: 2)], radix: 16)!
    }
}

func encoded(_ request: Request, correlationID: Int32 = 1) -> [UInt8] {
    var buffer = ByteBuffer()
    RequestCodec.encode(request, correlationID: correlationID, into: &buffer)
    return Array(buffer.readableBytesView)
}

func encoded(_ response: Response) -> [UInt8] {
    var buffer = ByteBuffer()
    ResponseCodec.encode(response, into: &buffer)
    return Array(buffer.readableBytesView)
}

func decodeRequest(_ bytes: [UInt8]) throws -> DecodedRequest? {
    var buffer = ByteBuffer(bytes: bytes)
    guard let frame = try FrameDecoder.nextFrame(&buffer, minimumBytes: RequestHeader.bytes) else { return nil }
    return RequestCodec.decode(frame: frame)
}

func decodeResponse(_ bytes: [UInt8], _ api: ApiKey) throws -> Response? {
    var buffer = ByteBuffer(bytes: bytes)
    guard let frame = try FrameDecoder.nextFrame(&buffer, minimumBytes: ResponseCodec.minimumFrameBytes) else { return nil }
    return try ResponseCodec.decode(frame: frame, apiKey: api)
}

/// One of every request, with values that exercise each field.
let sampleRequests: [Request] = [
    .apiVersions,
    .metadata(topics: []),
    .metadata(topics: ["confirmations", "genealogy"]),
    .createTopic(CreateTopicRequest(name: "lots", partitions: 6, retentionMs: 86_400_000, retentionBytes: -1, compression: 4, timestampType: 1)),
    .deleteTopic(name: "lots"),
    .describeTopic(name: "lots"),
    .listTopics,
    .produce(ProduceRequest(timeoutMs: 30_000, topics: [TopicEntries(topic: "t", [ProducePartition(partition: 2, records: [1, 2, 3])])])),
    .fetch(
        FetchRequest(
            maxWaitMs: 500, minBytes: 1, maxBytes: 1 << 20,
            topics: [TopicEntries(topic: "a", [FetchPartition(partition: 0, offset: 42, maxBytes: 65_536), FetchPartition(partition: 1, offset: 0, maxBytes: 1)])])),
    .listOffsets(ListOffsetsRequest(topics: [TopicEntries(topic: "a", [ListOffsetsPartition(partition: 0, timestamp: ListOffsetsPartition.earliest)])])),
    .joinGroup(JoinGroupRequest(group: "erp", sessionTimeoutMs: 10_000, topics: ["orders", "lots"])),
    .heartbeat(GroupMemberRequest(group: "erp", memberID: "erp-member-1", generation: 3)),
    .leaveGroup(GroupMemberRequest(group: "erp", memberID: "erp-member-1", generation: 3)),
    .offsetCommit(
        OffsetCommitRequest(group: "erp", memberID: "erp-member-1", generation: 3, topics: [TopicEntries(topic: "orders", [OffsetEntry(partition: 1, offset: 99, metadata: "w1")])])),
    .offsetFetch(OffsetFetchRequest(group: "erp", topics: [TopicEntries(topic: "orders", [PartitionNumber(0), PartitionNumber(1)])])),
    .describeGroup(group: "erp"),
    .listGroups,
    .deleteGroup(group: "erp"),
    .registerSchema(RegisterSchemaRequest(topic: "orders", schema: Array(#"{"type":"object"}"#.utf8), dryRun: true)),
    .getSchema(topic: "orders", version: -1),
    .listSchemas(topic: "orders"),
    .setSchemaPolicy(SchemaPolicyRequest(topic: "orders", compatibility: 1, onInvalid: -1)),
    .initProducer(producerId: -1, epoch: -1),
    .initProducer(producerId: 42, epoch: 3),
    .brokerStatus,
    .backup(BackupRequest(destination: "/backups/millrace-2026-11-28", compact: true)),
    .backup(BackupRequest(destination: "b", compact: false)),
    .alterTopic(AlterTopicRequest(topic: "orders", retentionMs: 604_800_000)),
    .alterTopic(AlterTopicRequest(topic: "orders", retentionMs: -1, retentionBytes: 1 << 30, compression: 4)),
]

let sampleResponses: [Response] = [
    Response(correlationID: 1, body: .apiVersions(.current)),
    Response(
        correlationID: 2,
        body: .metadata(MetadataResponse(brokerHost: "127.0.0.1", brokerPort: 7450, topics: [.init(name: "a", partitionCount: 3), .init(errorCode: .unknownTopic, name: "b", partitionCount: 0)]))),
    Response(correlationID: 3, body: .createTopic),
    Response(correlationID: 4, body: .deleteTopic),
    Response(
        correlationID: 5,
        body: .describeTopic(
            DescribeTopicResponse(
                name: "a", retentionMs: -1, retentionBytes: 1 << 30, compression: 0, timestampType: 0, createdAtMs: 1_700_000_000_000,
                partitions: [.init(partition: 0, logStartOffset: 10, logEndOffset: 99, bytes: 4096, batches: 3)]))),
    Response(correlationID: 6, body: .listTopics([TopicSummary(name: "a", partitionCount: 3)])),
    Response(
        correlationID: 7,
        body: .produce([
            TopicEntries(
                topic: "a",
                [
                    ProducePartitionResult(partition: 0, baseOffset: 100, logStartOffset: 0),
                    ProducePartitionResult(partition: 9, errorCode: .unknownPartition, message: "no partition 9", baseOffset: -1, logStartOffset: -1),
                ])
        ])),
    Response(
        correlationID: 8,
        body: .fetch([TopicEntries(topic: "a", [FetchPartitionResult(partition: 0, logStartOffset: 0, logEndOffset: 5, records: ByteBuffer(bytes: [9, 8, 7]))])])),
    Response(
        correlationID: 9,
        body: .listOffsets([TopicEntries(topic: "a", [ListOffsetsPartitionResult(partition: 0, offset: 17, timestamp: 1_700_000_000_123)])])),
    Response(correlationID: 10, error: MillraceError(.unknownTopic, "topic \"x\" does not exist")),
    Response(
        correlationID: 11,
        body: .joinGroup(GroupAssignmentResponse(memberID: "erp-member-1", generation: 2, rebalanced: true, assignment: [TopicEntries(topic: "orders", [PartitionNumber(0)])]))),
    Response(correlationID: 12, body: .heartbeat(GroupAssignmentResponse(memberID: "erp-member-1", generation: 2, rebalanced: false, assignment: []))),
    Response(correlationID: 13, body: .leaveGroup),
    Response(correlationID: 14, body: .offsetCommit),
    Response(correlationID: 15, body: .offsetFetch([TopicEntries(topic: "orders", [OffsetEntry(partition: 0, offset: -1)])])),
    Response(correlationID: 16, error: MillraceError(.staleGeneration, "commit from generation 1 refused")),
    Response(
        correlationID: 17,
        body: .describeGroup(
            DescribeGroupResponse(
                state: "stable", generation: 4,
                members: [GroupMemberEntry(memberID: "m1", assignment: [TopicEntries(topic: "orders", [PartitionNumber(0)])])],
                offsets: [TopicEntries(topic: "orders", [GroupLagEntry(partition: 0, committedOffset: 10, logEndOffset: 15, lag: 5, memberID: "m1")])]))),
    Response(correlationID: 18, body: .listGroups([GroupSummary(group: "erp", state: "empty", memberCount: 0)])),
    Response(correlationID: 19, body: .deleteGroup),
    Response(correlationID: 20, body: .registerSchema(RegisterSchemaResponse(version: 2, created: false, problems: ["/qty: type narrowed"]))),
    Response(correlationID: 21, body: .getSchema(SchemaResponse(version: 1, registeredAtMs: 1_700_000_000_000, schema: Array("{}".utf8)))),
    Response(
        correlationID: 22,
        body: .listSchemas(ListSchemasResponse(compatibility: 1, onInvalid: 0, versions: [SchemaVersionSummary(version: 1, registeredAtMs: 5, bytes: 2)]))),
    Response(correlationID: 23, body: .setSchemaPolicy),
    Response(correlationID: 24, body: .initProducer(producerId: 42, epoch: 4)),
    Response(
        correlationID: 25,
        body: .brokerStatus(
            BrokerStatusResponse(
                version: "0.1.0", startedAtMs: 1_700_000_000_000, nowMs: 1_700_000_060_000, dataDirectory: "/var/lib/millrace", dataFileBytes: 1 << 30,
                diskFreeBytes: 5 << 30, diskTotalBytes: 50 << 30, connections: 12, requestsInFlight: 3, notReady: ["disk full: no room"],
                topics: [
                    TopicStatus(
                        name: "orders", partitions: 2, records: 30, bytes: 3_000, producedRecords: 40, producedBytes: 4_000, fetchedRecords: 10, fetchedBytes: 1_000,
                        partitionSizes: [PartitionSize(partition: 0, records: 10, bytes: 1_000), PartitionSize(partition: 1, records: 20, bytes: 2_000)])
                ],
                groups: [GroupStatus(name: "erp", members: 2, lag: 7, partitions: 2)]))),
    Response(correlationID: 26, body: .backup(BackupResponse(bytes: 1 << 20, milliseconds: 42))),
    Response(correlationID: 27, body: .alterTopic),
]

@Suite struct WireTests {
    @Test func goldenApiVersionsRequest() {
        #expect(encoded(.apiVersions, correlationID: 7) == hex("00000008 0000 0000 00000007"))
    }

    @Test func goldenProduceRequest() throws {
        let bytes = hex(
            """
            00000020            size 32
            0006 0000 00000001  produce, v0, correlation 1
            000003e8            timeout 1000 ms
            00000001 0001 74    one topic, "t"
            00000001 00000000   one partition, 0
            00000001 ab         records: 1 byte
            """.split(separator: "\n").map { $0.prefix(19) }.joined())
        let request = Request.produce(ProduceRequest(timeoutMs: 1000, topics: [TopicEntries(topic: "t", [ProducePartition(partition: 0, records: [0xAB])])]))
        #expect(encoded(request) == bytes)
        #expect(try decodeRequest(bytes) == .request(RequestHeader(apiKey: 6, correlationID: 1), request))
    }

    @Test func goldenErrorResponse() throws {
        let bytes = hex("0000000a 00000005 0007 0002 6e6f")
        let response = Response(correlationID: 5, error: MillraceError(.unknownTopic, "no"))
        #expect(encoded(response) == bytes)
        #expect(try decodeResponse(bytes, .fetch) == response)
    }

    @Test func everyRequestRoundTrips() throws {
        for (index, request) in sampleRequests.enumerated() {
            let decoded = try decodeRequest(encoded(request, correlationID: Int32(index)))
            #expect(decoded == .request(RequestHeader(apiKey: request.apiKey.rawValue, apiVersion: request.apiVersion, correlationID: Int32(index)), request))
        }
    }

    /// BrokerStatus 1 adds the listeners, DescribeGroup 1 the group's protocol and its Kafka
    /// members' client ids and hosts; at version 0 the same answers go without them.
    @Test func versionOneAnswersCarryListenersAndKafkaClients() throws {
        let status = BrokerStatusResponse(
            version: "0.1.0", startedAtMs: 1, nowMs: 2, dataDirectory: "/d", dataFileBytes: 3, diskFreeBytes: 4, diskTotalBytes: 5, connections: 3,
            requestsInFlight: 0, notReady: [], topics: [], groups: [],
            listeners: [ListenerStatus(name: "native", address: "127.0.0.1:7450", connections: 1), ListenerStatus(name: "kafka", address: "0.0.0.0:9092", connections: 2)],
            kafkaMembers: [KafkaMemberStatus(group: "mes", memberID: "rdkafka-1-ab", clientID: "mes-line-3", host: "/192.0.2.7")])
        let group = DescribeGroupResponse(
            state: "stable", generation: 3, members: [GroupMemberEntry(memberID: "rdkafka-1-ab", assignment: [])], offsets: [], groupProtocol: "kafka",
            clients: [GroupClientEntry(memberID: "rdkafka-1-ab", clientID: "mes-line-3", host: "/192.0.2.7")])
        for (body, api) in [(ResponseBody.brokerStatus(status), ApiKey.brokerStatus), (.describeGroup(group), .describeGroup)] {
            for version: Int16 in [0, 1] {
                var response = Response(correlationID: 9, body: body)
                response.apiVersion = version
                var buffer = ByteBuffer()
                ResponseCodec.encode(response, into: &buffer)
                let frame = try #require(try FrameDecoder.nextFrame(&buffer, minimumBytes: ResponseCodec.minimumFrameBytes))
                let decoded = try ResponseCodec.decode(frame: frame, apiKey: api, apiVersion: version)
                switch decoded.body {
                case .brokerStatus(let read)?:
                    #expect(read.listeners == (version == 1 ? status.listeners : []))
                    #expect(read.kafkaMembers == (version == 1 ? status.kafkaMembers : []))
                    #expect(read.connections == 3)
                case .describeGroup(let read)?:
                    #expect(read.clients == (version == 1 ? group.clients : []))
                    #expect(read.groupProtocol == (version == 1 ? "kafka" : ""))
                    #expect(read.members == group.members)
                default:
                    Issue.record("\(api) v\(version) decoded as \(String(describing: decoded.body))")
                }
            }
        }
    }

    @Test func everyResponseRoundTrips() throws {
        for response in sampleResponses {
            let api = response.body?.apiKey ?? .metadata
            #expect(try decodeResponse(encoded(response), api) == response)
        }
    }

    /// The broker writes responses in parts (a fetch's batches as their own buffers): joined,
    /// they are the bytes `encode` gives, and they decode to the same response.
    @Test func responsePartsJoinToTheEncodedFrame() throws {
        let fetches = [
            Response(
                correlationID: 21,
                body: .fetch([
                    TopicEntries(
                        topic: "orders",
                        [
                            FetchPartitionResult(partition: 2, logStartOffset: 0, logEndOffset: 9, records: ByteBuffer(bytes: [1, 2, 3, 4])),
                            FetchPartitionResult(partition: 0, logStartOffset: 3, logEndOffset: 3),
                            FetchPartitionResult(partition: 5, errorCode: .offsetOutOfRange, message: "offset 9 is outside", logStartOffset: 0, logEndOffset: 4),
                            FetchPartitionResult(partition: 1, logStartOffset: 0, logEndOffset: 70, records: ByteBuffer(bytes: Array(repeating: 7, count: 300))),
                        ]),
                    TopicEntries(topic: "lots", [FetchPartitionResult(partition: 0, logStartOffset: 0, logEndOffset: 1, records: ByteBuffer(bytes: [42]))]),
                    TopicEntries(topic: "empty", []),
                ])),
            Response(correlationID: 22, body: .fetch([])),
            Response(correlationID: 23, error: MillraceError(.unknownTopic, "topic \"x\" does not exist")),
        ]
        for response in fetches + sampleResponses {
            let parts = ResponseCodec.encodeParts(response)
            let joined = parts.flatMap { Array($0.readableBytesView) }
            #expect(joined == encoded(response), "\(response)")
            if let api = response.body?.apiKey { #expect(try decodeResponse(joined, api) == response) }
        }
        #expect(ResponseCodec.encodeParts(fetches[0]).count == 7)  // head, 4 B, head, 300 B, head, 1 B, head
    }

    @Test func framesFedByteByByteComeOutWhole() throws {
        let stream = sampleRequests.enumerated().flatMap { encoded($1, correlationID: Int32($0)) }
        var buffer = ByteBuffer()
        var decoded: [Request] = []
        for byte in stream {
            buffer.writeInteger(byte)
            while let frame = try FrameDecoder.nextFrame(&buffer, minimumBytes: RequestHeader.bytes) {
                guard case .request(_, let request) = RequestCodec.decode(frame: frame) else {
                    Issue.record("frame did not decode")
                    continue
                }
                decoded.append(request)
            }
        }
        #expect(decoded == sampleRequests)
        #expect(buffer.readableBytes == 0)
    }

    @Test func truncatedBodiesAreMalformedAndShortFramesWait() throws {
        for request in sampleRequests {
            let bytes = encoded(request)
            // Any prefix of a frame is "not yet", never an error or a crash.
            for length in 0..<bytes.count { #expect(try decodeRequest(Array(bytes[..<length])) == nil) }
            // The same frame with its body cut short (and the size to match) is malformed.
            let headerEnd = 4 + RequestHeader.bytes
            for length in headerEnd..<bytes.count {
                var cut = Array(bytes[..<length])
                cut.replaceSubrange(0..<4, with: withUnsafeBytes(of: Int32(length - 4).bigEndian, Array.init))
                guard case .malformed(_, let error)? = try decodeRequest(cut) else {
                    Issue.record("\(request.apiKey) cut to \(length) bytes did not come out malformed")
                    continue
                }
                #expect(error.code == .malformedRequest)
            }
        }
    }

    @Test func bitFlipsNeverCrash() throws {
        var generator = SeededGenerator(seed: 31)
        for _ in 0..<20_000 {
            var bytes = encoded(sampleRequests[generator.next(in: 0...sampleRequests.count - 1)])
            for _ in 0..<generator.next(in: 1...3) {
                bytes[generator.next(in: 0...bytes.count - 1)] ^= UInt8(1 << generator.next(in: 0...7))
            }
            _ = try? decodeRequest(bytes)
        }
        for _ in 0..<5_000 {
            let response = sampleResponses[generator.next(in: 0...sampleResponses.count - 1)]
            var bytes = encoded(response)
            bytes[generator.next(in: 4...bytes.count - 1)] ^= UInt8(1 << generator.next(in: 0...7))
            _ = try? decodeResponse(bytes, response.body?.apiKey ?? .fetch)
        }
    }

    @Test func badSizesAndCountsAreRefused() throws {
        #expect { try decodeRequest(hex("00000004 00000000")) } throws: { ($0 as? MillraceError)?.code == .malformedRequest }
        #expect { try decodeRequest(hex("7fffffff")) } throws: { ($0 as? MillraceError)?.code == .frameTooLarge }
        // A metadata request claiming two billion topics in 4 bytes: refused before allocating.
        guard case .malformed(let header, let error)? = try decodeRequest(hex("0000000c 0001 0000 00000009 7fffffff")) else {
            Issue.record("huge count accepted")
            return
        }
        #expect(header.correlationID == 9 && error.code == .malformedRequest)
        #expect(try decodeRequest(hex("00000008 0063 0000 00000003")) == .unknownApi(RequestHeader(apiKey: 99, correlationID: 3)))
        #expect(try decodeRequest(hex("00000008 0000 0005 00000004")) == .unsupportedVersion(RequestHeader(apiKey: 0, apiVersion: 5, correlationID: 4)))
        // Bytes after a complete body.
        guard case .malformed? = try decodeRequest(hex("00000009 0000 0000 00000001 ff")) else {
            Issue.record("trailing bytes accepted")
            return
        }
    }

    /// A sound frame with a field over its own limit is refused with that field named (the
    /// connection can stay open); the same field at its limit decodes.
    @Test func fieldsOverTheirLimitAreRefusedAtDecode() throws {
        let longTopic = String(repeating: "t", count: Limits.topicNameBytesMax + 1)
        guard case .refused(let header, let error)? = try decodeRequest(encoded(.describeTopic(name: longTopic), correlationID: 5)) else {
            Issue.record("over-long topic accepted")
            return
        }
        #expect(header.correlationID == 5 && error.code == .invalidTopicName && error.message.contains("the limit is \(Limits.topicNameBytesMax)"))
        let atLimit = String(longTopic.dropFirst())
        #expect(try decodeRequest(encoded(.describeTopic(name: atLimit))) == .request(RequestHeader(apiKey: 4, apiVersion: 1, correlationID: 1), .describeTopic(name: atLimit)))

        let member = String(repeating: "m", count: Limits.memberIDBytesMax + 1)
        guard case .refused(_, let memberError)? = try decodeRequest(encoded(.heartbeat(GroupMemberRequest(group: "g", memberID: member, generation: 1)))) else {
            Issue.record("over-long member id accepted")
            return
        }
        #expect(memberError.code == .invalidRequest && memberError.message.hasPrefix("member id"))

        let topics = (0...Limits.topicsPerRequestMax).map { "t\($0)" }
        guard case .refused(_, let countError)? = try decodeRequest(encoded(.metadata(topics: topics))) else {
            Issue.record("too many topics accepted")
            return
        }
        #expect(countError.code == .invalidRequest)

        // OPERATIONS.md's limits table and PROTOCOL.md (SetDedupPolicy, SetIndexPolicy) name
        // these codes: the decoder refuses the counts and lengths, before any policy is parsed.
        let fields = IndexPolicyWire(IndexPolicy(fields: (0...Limits.indexFieldsMax).map { "/f\($0)" }))
        let links = IndexPolicyWire(IndexPolicy(links: (0...Limits.indexLinksMax).map { IndexLink(parent: "/p\($0)", child: "/c") }))
        let pointer = IndexPolicyWire(IndexPolicy(fields: ["/" + String(repeating: "p", count: Limits.dedupKeySpecBytesMax)]))
        let spec = "json:/" + String(repeating: "k", count: Limits.dedupKeySpecBytesMax)
        for request in [
            Request.setIndexPolicy(topic: "t", policy: fields), .setIndexPolicy(topic: "t", policy: links),
            .setIndexPolicy(topic: "t", policy: pointer), .setDedupPolicy(topic: "t", key: spec, windowMs: 60_000),
        ] {
            guard case .refused(_, let error)? = try decodeRequest(encoded(request)) else {
                Issue.record("\(request.apiKey) over its limit accepted")
                continue
            }
            #expect(error.code == .invalidRequest)
        }
    }

    /// Error messages quote request fields; they are cut to `errorMessageBytesMax` at a
    /// character boundary, and no string, however long, makes an encoder trap.
    @Test func longMessagesAreCutNotTrapped() throws {
        let message = String(repeating: "é", count: 40_000)  // 2 bytes each
        let response = try #require(try decodeResponse(encoded(Response(correlationID: 1, error: MillraceError(.unknownTopic, message))), .metadata))
        #expect(response.message.utf8.count <= Limits.errorMessageBytesMax)
        #expect(response.message.utf8.count >= Limits.errorMessageBytesMax - 1)
        #expect(response.message.allSatisfy { $0 == "é" })
        var buffer = ByteBuffer()
        buffer.writeMillraceString(String(repeating: "x", count: 100_000))
        #expect(buffer.getInteger(at: 0, as: Int16.self) == Int16(Limits.stringBytesMax))
    }
}
