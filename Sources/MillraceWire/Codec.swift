import MillraceFormat
import MillraceSecurity
import NIOCore

/// Splits size-prefixed frames off a stream.
public enum FrameDecoder {
    /// The frame at the front of `buffer` (the bytes after its size field), consuming it; nil
    /// while less than a whole frame has arrived, with the reader index left where it was.
    /// Throws `frameTooLarge` or `malformedRequest` for a size that cannot be right.
    public static func nextFrame(
        _ buffer: inout ByteBuffer, minimumBytes: Int, frameBytesMax: Int = Limits.frameBytesMax
    ) throws -> ByteBuffer? {
        guard let size = buffer.getInteger(at: buffer.readerIndex, as: Int32.self) else { return nil }
        guard size >= minimumBytes else {
            throw MillraceError(.malformedRequest, "frame size \(size) is below the \(minimumBytes)-byte minimum")
        }
        guard Int(size) <= frameBytesMax else {
            throw MillraceError(.frameTooLarge, "frame of \(size) bytes is over the \(frameBytesMax)-byte limit")
        }
        guard buffer.readableBytes >= 4 + Int(size) else { return nil }
        buffer.moveReaderIndex(forwardBy: 4)
        return buffer.readSlice(length: Int(size))
    }

    /// Writes `body` behind an `i32` size.
    static func writeFrame(into buffer: inout ByteBuffer, _ body: (inout ByteBuffer) -> Void) {
        let sizeAt = buffer.writerIndex
        buffer.writeInteger(Int32(0))
        body(&buffer)
        buffer.setInteger(Int32(buffer.writerIndex - sizeAt - 4), at: sizeAt)
    }
}

/// What a request frame turned out to be. The header always parses (frames are at least
/// its size), so every outcome can be answered with the right correlation id.
public enum DecodedRequest: Equatable, Sendable {
    case request(RequestHeader, Request)
    case unknownApi(RequestHeader)
    case unsupportedVersion(RequestHeader)
    case malformed(RequestHeader, MillraceError)
    /// The frame parses, but a field is over its limit: answer with the error, keep the connection.
    case refused(RequestHeader, MillraceError)
}

public enum RequestCodec {
    public static func encode(_ request: Request, correlationID: Int32, into buffer: inout ByteBuffer) {
        FrameDecoder.writeFrame(into: &buffer) { buffer in
            buffer.writeInteger(request.apiKey.rawValue)
            buffer.writeInteger(request.apiVersion)
            buffer.writeInteger(correlationID)
            writeBody(request, into: &buffer)
        }
    }

    private static func writeBody(_ request: Request, into buffer: inout ByteBuffer) {
        switch request {
        case .apiVersions, .listTopics, .listGroups:
            break
        case .describeGroup(let group), .deleteGroup(let group):
            buffer.writeMillraceString(group)
        case .metadata(let topics):
            buffer.writeMillraceArray(topics) { $0.writeMillraceString($1) }
        case .createTopic(let create):
            buffer.writeMillraceString(create.name)
            buffer.writeInteger(create.partitions)
            buffer.writeInteger(create.retentionMs)
            buffer.writeInteger(create.retentionBytes)
            buffer.writeInteger(create.compression)
            buffer.writeInteger(create.timestampType)
        case .deleteTopic(let name), .describeTopic(let name):
            buffer.writeMillraceString(name)
        case .produce(let produce):
            buffer.writeInteger(produce.timeoutMs)
            produce.topics.write(to: &buffer)
        case .fetch(let fetch):
            buffer.writeInteger(fetch.maxWaitMs)
            buffer.writeInteger(fetch.minBytes)
            buffer.writeInteger(fetch.maxBytes)
            fetch.topics.write(to: &buffer)
        case .listOffsets(let list):
            list.topics.write(to: &buffer)
        case .joinGroup(let join):
            buffer.writeMillraceString(join.group)
            buffer.writeMillraceString(join.memberID)
            buffer.writeInteger(join.sessionTimeoutMs)
            buffer.writeMillraceArray(join.topics) { $0.writeMillraceString($1) }
        case .heartbeat(let member), .leaveGroup(let member):
            buffer.writeMillraceString(member.group)
            buffer.writeMillraceString(member.memberID)
            buffer.writeInteger(member.generation)
        case .offsetCommit(let commit):
            buffer.writeMillraceString(commit.group)
            buffer.writeMillraceString(commit.memberID)
            buffer.writeInteger(commit.generation)
            commit.topics.write(to: &buffer)
        case .offsetFetch(let fetch):
            buffer.writeMillraceString(fetch.group)
            fetch.topics.write(to: &buffer)
        case .registerSchema(let register):
            buffer.writeMillraceString(register.topic)
            buffer.writeMillraceBytes(register.schema)
            buffer.writeInteger(Int8(register.dryRun ? 1 : 0))
        case .getSchema(let topic, let version):
            buffer.writeMillraceString(topic)
            buffer.writeInteger(version)
        case .listSchemas(let topic):
            buffer.writeMillraceString(topic)
        case .setSchemaPolicy(let policy):
            buffer.writeMillraceString(policy.topic)
            buffer.writeInteger(policy.compatibility)
            buffer.writeInteger(policy.onInvalid)
        case .initProducer(let producerId, let epoch):
            buffer.writeInteger(producerId)
            buffer.writeInteger(epoch)
        case .setDedupPolicy(let topic, let key, let windowMs):
            buffer.writeMillraceString(topic)
            buffer.writeMillraceString(key)
            buffer.writeInteger(windowMs)
        case .dedupCheck(let topic, let key):
            buffer.writeMillraceString(topic)
            buffer.writeMillraceBytes(key)
        case .dedupStatus(let topic):
            buffer.writeMillraceString(topic)
        case .setIndexPolicy(let topic, let policy):
            buffer.writeMillraceString(topic)
            policy.write(to: &buffer)
        case .indexStatus(let topic):
            buffer.writeMillraceString(topic)
        case .trace(let trace):
            trace.write(to: &buffer)
        case .walk(let walk):
            walk.write(to: &buffer)
        case .indexRebuild(let rebuild):
            rebuild.write(to: &buffer)
        case .brokerStatus:
            break
        case .backup(let backup):
            backup.write(to: &buffer)
        case .alterTopic(let alter):
            buffer.writeMillraceString(alter.topic)
            buffer.writeInteger(alter.retentionMs)
            buffer.writeInteger(alter.retentionBytes)
            buffer.writeInteger(alter.compression)
            // Version 1 (sent when the owner changes): the owner.
            if let owner = alter.owner {
                buffer.writeInteger(Int8(1))
                buffer.writeMillraceString(owner)
            }
        case .trainDictionary(let train):
            buffer.writeMillraceString(train.topic)
            buffer.writeInteger(train.samples)
            buffer.writeInteger(train.bytes)
        case .getDictionary(let topic, let id):
            buffer.writeMillraceString(topic)
            buffer.writeInteger(id)
        case .authenticate(let authenticate):
            buffer.writeMillraceString(authenticate.mechanism)
            buffer.writeMillraceBytes(authenticate.message)
        case .whoAmI, .describeSecurity:
            break
        case .alterSecurity(let change):
            change.write(to: &buffer)
        }
    }

    /// Decodes one frame from `FrameDecoder.nextFrame`. A body must be consumed exactly.
    public static func decode(frame: ByteBuffer) -> DecodedRequest {
        var buffer = frame
        guard let apiKey = buffer.readInteger(as: Int16.self), let version = buffer.readInteger(as: Int16.self),
            let correlationID = buffer.readInteger(as: Int32.self)
        else {
            // FrameDecoder refuses such frames first; answer rather than trap all the same.
            return .malformed(
                RequestHeader(apiKey: -1, correlationID: -1),
                MillraceError(.malformedRequest, "a request frame of \(frame.readableBytes) bytes is shorter than its header"))
        }
        let header = RequestHeader(apiKey: apiKey, apiVersion: version, correlationID: correlationID)
        guard let api = ApiKey(rawValue: apiKey) else { return .unknownApi(header) }
        guard api.versions.contains(version) else { return .unsupportedVersion(header) }
        do {
            let request = try readBody(api, version, &buffer)
            guard buffer.readableBytes == 0 else {
                throw MillraceError(.malformedRequest, "\(buffer.readableBytes) bytes follow the \(api) request body")
            }
            return .request(header, request)
        } catch let error as MillraceError where error.code == .malformedRequest {
            return .malformed(header, error)
        } catch let error as MillraceError {
            return .refused(header, error)
        } catch {
            return .malformed(header, MillraceError(.malformedRequest, "\(error)"))
        }
    }

    /// AlterTopic v1's owner: i8 present, then the name ("" for none).
    private static func readOwner(_ buffer: inout ByteBuffer) throws -> String? {
        let present: Int8 = try buffer.readMillraceInteger("owner present")
        let owner = try buffer.readMillraceString("owner")
        return present == 0 ? nil : owner
    }

    private static func readBody(_ api: ApiKey, _ version: Int16, _ buffer: inout ByteBuffer) throws -> Request {
        switch api {
        case .apiVersions:
            return .apiVersions
        case .listTopics:
            return .listTopics
        case .listGroups:
            return .listGroups
        case .describeGroup:
            return .describeGroup(group: try readGroup(&buffer))
        case .deleteGroup:
            return .deleteGroup(group: try readGroup(&buffer))
        case .metadata:
            return .metadata(topics: try readTopicNames(&buffer))
        case .createTopic:
            return .createTopic(
                CreateTopicRequest(
                    name: try readTopic(&buffer, "name"), partitions: try buffer.readMillraceInteger("partitions"),
                    retentionMs: try buffer.readMillraceInteger("retention ms"),
                    retentionBytes: try buffer.readMillraceInteger("retention bytes"),
                    compression: try buffer.readMillraceInteger("compression"),
                    timestampType: try buffer.readMillraceInteger("timestamp type")))
        case .deleteTopic:
            return .deleteTopic(name: try readTopic(&buffer, "name"))
        case .describeTopic:
            return .describeTopic(name: try readTopic(&buffer, "name"))
        case .produce:
            return .produce(
                ProduceRequest(timeoutMs: try buffer.readMillraceInteger("timeout"), topics: try .init(requestTopicsFrom: &buffer), version: version))
        case .fetch:
            return .fetch(
                FetchRequest(
                    maxWaitMs: try buffer.readMillraceInteger("max wait"), minBytes: try buffer.readMillraceInteger("min bytes"),
                    maxBytes: try buffer.readMillraceInteger("max bytes"), topics: try .init(requestTopicsFrom: &buffer)))
        case .listOffsets:
            return .listOffsets(ListOffsetsRequest(topics: try .init(requestTopicsFrom: &buffer)))
        case .joinGroup:
            return .joinGroup(
                JoinGroupRequest(
                    group: try readGroup(&buffer), memberID: try readMemberID(&buffer),
                    sessionTimeoutMs: try buffer.readMillraceInteger("session timeout"), topics: try readTopicNames(&buffer)))
        case .heartbeat:
            return .heartbeat(try readMember(&buffer))
        case .leaveGroup:
            return .leaveGroup(try readMember(&buffer))
        case .offsetCommit:
            return .offsetCommit(
                OffsetCommitRequest(
                    group: try readGroup(&buffer), memberID: try readMemberID(&buffer),
                    generation: try buffer.readMillraceInteger("generation"), topics: try .init(requestTopicsFrom: &buffer)))
        case .offsetFetch:
            return .offsetFetch(OffsetFetchRequest(group: try readGroup(&buffer), topics: try .init(requestTopicsFrom: &buffer)))
        case .registerSchema:
            let topic = try readTopic(&buffer)
            guard let schema = try buffer.readMillraceBytes("schema") else { throw MillraceError(.malformedRequest, "the schema is null") }
            guard schema.count <= Limits.schemaBytesMax else {
                throw MillraceError(.invalidSchema, "the schema is \(schema.count) bytes; at most \(Limits.schemaBytesMax) (schemaBytesMax)")
            }
            let dryRun: Int8 = try buffer.readMillraceInteger("dry run")
            return .registerSchema(RegisterSchemaRequest(topic: topic, schema: schema, dryRun: dryRun != 0))
        case .getSchema:
            return .getSchema(topic: try readTopic(&buffer), version: try buffer.readMillraceInteger("version"))
        case .listSchemas:
            return .listSchemas(topic: try readTopic(&buffer))
        case .setSchemaPolicy:
            return .setSchemaPolicy(
                SchemaPolicyRequest(
                    topic: try readTopic(&buffer), compatibility: try buffer.readMillraceInteger("compatibility"),
                    onInvalid: try buffer.readMillraceInteger("on invalid")))
        case .initProducer:
            return .initProducer(producerId: try buffer.readMillraceInteger("producer id"), epoch: try buffer.readMillraceInteger("epoch"))
        case .setDedupPolicy:
            let topic = try readTopic(&buffer)
            let key = try buffer.readMillraceString("dedup key")
            guard key.utf8.count <= Limits.dedupKeySpecBytesMax else {
                throw MillraceError(.invalidRequest, "dedup key spec is longer than \(Limits.dedupKeySpecBytesMax) bytes")
            }
            return .setDedupPolicy(topic: topic, key: key, windowMs: try buffer.readMillraceInteger("dedup window"))
        case .dedupCheck:
            let topic = try readTopic(&buffer)
            guard let key = try buffer.readMillraceBytes("dedup key") else { throw MillraceError(.invalidRequest, "the key to check is null") }
            guard key.count <= Limits.dedupKeyBytesMax else {
                throw MillraceError(.invalidRequest, "the key is \(key.count) bytes; keys over \(Limits.dedupKeyBytesMax) bytes are never held")
            }
            return .dedupCheck(topic: topic, key: key)
        case .dedupStatus:
            return .dedupStatus(topic: try readTopic(&buffer))
        case .setIndexPolicy:
            return .setIndexPolicy(topic: try readTopic(&buffer), policy: try IndexPolicyWire(from: &buffer))
        case .indexStatus:
            return .indexStatus(topic: try readTopic(&buffer))
        case .trace:
            return .trace(try TraceRequest(from: &buffer) { try readTopic(&$0) })
        case .walk:
            return .walk(try WalkRequest(from: &buffer) { try readTopic(&$0) })
        case .indexRebuild:
            return .indexRebuild(try IndexRebuildRequest(from: &buffer) { try readTopic(&$0) })
        case .brokerStatus:
            return .brokerStatus
        case .backup:
            return .backup(try BackupRequest(from: &buffer))
        case .alterTopic:
            return .alterTopic(
                AlterTopicRequest(
                    topic: try readTopic(&buffer), retentionMs: try buffer.readMillraceInteger("retention ms"),
                    retentionBytes: try buffer.readMillraceInteger("retention bytes"), compression: try buffer.readMillraceInteger("compression"),
                    owner: version >= 1 ? try readOwner(&buffer) : nil))
        case .trainDictionary:
            return .trainDictionary(
                TrainDictionaryRequest(topic: try readTopic(&buffer), samples: try buffer.readMillraceInteger("samples"), bytes: try buffer.readMillraceInteger("bytes")))
        case .getDictionary:
            return .getDictionary(topic: try readTopic(&buffer), id: try buffer.readMillraceInteger("dictionary id"))
        case .authenticate:
            let mechanism = try buffer.readMillraceString("mechanism")
            guard let message = try buffer.readMillraceBytes("sasl message") else { throw MillraceError(.malformedRequest, "the SASL message is null") }
            guard message.count <= AuthenticateRequest.messageBytesMax else {
                throw MillraceError(.invalidRequest, "SASL message of \(message.count) bytes; the limit is \(AuthenticateRequest.messageBytesMax)")
            }
            return .authenticate(AuthenticateRequest(mechanism: mechanism, message: message))
        case .whoAmI:
            return .whoAmI
        case .describeSecurity:
            return .describeSecurity
        case .alterSecurity:
            return .alterSecurity(try SecurityChange(from: &buffer))
        }
    }

    private static func readMember(_ buffer: inout ByteBuffer) throws -> GroupMemberRequest {
        GroupMemberRequest(
            group: try readGroup(&buffer), memberID: try readMemberID(&buffer), generation: try buffer.readMillraceInteger("generation"))
    }

    // Every string field of a request has its own limit (docs/PROTOCOL.md, "Limits").

    private static func readTopic(_ buffer: inout ByteBuffer, _ what: String = "topic") throws -> String {
        try buffer.readMillraceString(what, maxBytes: Limits.topicNameBytesMax, code: .invalidTopicName)
    }

    private static func readTopicNames(_ buffer: inout ByteBuffer) throws -> [String] {
        try buffer.readMillraceArray("topics", minimumElementBytes: 2, countMax: Limits.topicsPerRequestMax) { try readTopic(&$0) }
    }

    private static func readGroup(_ buffer: inout ByteBuffer) throws -> String {
        try buffer.readMillraceString("group", maxBytes: Limits.groupNameBytesMax)
    }

    private static func readMemberID(_ buffer: inout ByteBuffer) throws -> String {
        try buffer.readMillraceString("member id", maxBytes: Limits.memberIDBytesMax)
    }
}

public enum ResponseCodec {
    /// Smallest response frame: correlation id, error code, empty message.
    public static let minimumFrameBytes = 8

    public static func encode(_ response: Response, into buffer: inout ByteBuffer) {
        FrameDecoder.writeFrame(into: &buffer) { buffer in
            buffer.writeInteger(response.correlationID)
            buffer.writeInteger(response.errorCode.rawValue)
            // Messages may quote request fields; each is bounded, and so is the whole.
            buffer.writeMillraceString(response.message, maxBytes: Limits.errorMessageBytesMax)
            if response.errorCode == .none, let body = response.body { writeBody(body, version: response.apiVersion, into: &buffer) }
        }
    }

    /// The frame of `response` in parts to write in order: the same bytes as `encode`, but a
    /// fetch's stored batches go out as the buffers they were read into rather than being
    /// copied into the frame (the socket gathers the parts in one `writev`).
    public static func encodeParts(_ response: Response, allocator: ByteBufferAllocator = ByteBufferAllocator()) -> [ByteBuffer] {
        guard response.errorCode == .none, case .fetch(let topics)? = response.body else {
            var buffer = allocator.buffer(capacity: 64)
            encode(response, into: &buffer)
            return [buffer]
        }
        var parts: [ByteBuffer] = []
        var head = allocator.buffer(capacity: 256)
        head.writeInteger(Int32(0))  // the frame size, set below
        head.writeInteger(response.correlationID)
        head.writeInteger(response.errorCode.rawValue)
        head.writeMillraceString(response.message, maxBytes: Limits.errorMessageBytesMax)
        head.writeInteger(Int32(topics.count))
        for topic in topics {
            head.writeMillraceString(topic.topic)
            head.writeInteger(Int32(topic.entries.count))
            for entry in topic.entries {
                entry.writeHead(to: &head)
                guard entry.records.readableBytes > 0 else { continue }
                parts.append(head)
                parts.append(entry.records)
                head = allocator.buffer(capacity: 256)
            }
        }
        if head.readableBytes > 0 || parts.isEmpty { parts.append(head) }
        let size = parts.reduce(0) { $0 + $1.readableBytes } - 4
        parts[0].setInteger(Int32(size), at: parts[0].readerIndex)
        return parts
    }

    private static func writeBody(_ body: ResponseBody, version: Int16, into buffer: inout ByteBuffer) {
        switch body {
        case .apiVersions(let versions):
            versions.apis.write(to: &buffer)
            buffer.writeMillraceString(versions.serverVersion)
        case .metadata(let metadata):
            buffer.writeMillraceString(metadata.brokerHost)
            buffer.writeInteger(metadata.brokerPort)
            metadata.topics.write(to: &buffer)
        case .createTopic, .deleteTopic:
            break
        case .describeTopic(let topic):
            buffer.writeMillraceString(topic.name)
            buffer.writeInteger(topic.retentionMs)
            buffer.writeInteger(topic.retentionBytes)
            buffer.writeInteger(topic.compression)
            buffer.writeInteger(topic.timestampType)
            buffer.writeInteger(topic.createdAtMs)
            topic.partitions.write(to: &buffer)
            if version >= 1 { buffer.writeMillraceString(topic.owner) }
        case .listTopics(let topics):
            topics.write(to: &buffer)
        case .produce(let topics) where version >= 1:
            buffer.writeMillraceArray(topics) { buffer, topic in
                buffer.writeMillraceString(topic.topic)
                buffer.writeMillraceArray(topic.entries) { buffer, entry in entry.writeWithOutcomes(to: &buffer, version: version) }
            }
        case .produce(let topics):
            topics.write(to: &buffer)
        case .fetch(let topics):
            topics.write(to: &buffer)
        case .listOffsets(let topics):
            topics.write(to: &buffer)
        case .joinGroup(let assignment), .heartbeat(let assignment):
            assignment.write(to: &buffer)
        case .leaveGroup, .offsetCommit, .deleteGroup:
            break
        case .offsetFetch(let topics):
            topics.write(to: &buffer)
        case .describeGroup(let group):
            buffer.writeMillraceString(group.state)
            buffer.writeInteger(group.generation)
            group.members.write(to: &buffer)
            group.offsets.write(to: &buffer)
            if version >= 1 {
                buffer.writeMillraceString(group.groupProtocol)
                group.clients.write(to: &buffer)
            }
        case .listGroups(let groups):
            groups.write(to: &buffer)
        case .registerSchema(let registered):
            buffer.writeInteger(registered.version)
            buffer.writeInteger(Int8(registered.created ? 1 : 0))
            buffer.writeMillraceArray(registered.problems) { $0.writeMillraceString($1, maxBytes: 1_024) }
        case .getSchema(let schema):
            buffer.writeInteger(schema.version)
            buffer.writeInteger(schema.registeredAtMs)
            buffer.writeMillraceBytes(schema.schema)
        case .listSchemas(let list):
            buffer.writeInteger(list.compatibility)
            buffer.writeInteger(list.onInvalid)
            list.versions.write(to: &buffer)
        case .setSchemaPolicy:
            break
        case .initProducer(let producerId, let epoch):
            buffer.writeInteger(producerId)
            buffer.writeInteger(epoch)
        case .setDedupPolicy:
            break
        case .dedupCheck(let check):
            buffer.writeInteger(Int8(check.found ? 1 : 0))
            buffer.writeInteger(check.partition)
            buffer.writeInteger(check.offset)
            buffer.writeInteger(check.firstSeenMs)
        case .dedupStatus(let status):
            buffer.writeMillraceString(status.key)
            buffer.writeInteger(status.windowMs)
            buffer.writeInteger(status.keysHeld)
            buffer.writeInteger(status.runs)
            buffer.writeInteger(status.oldestKeyMs)
            buffer.writeInteger(status.duplicatesTotal)
            buffer.writeInteger(status.duplicatesRecent)
        case .setIndexPolicy:
            break
        case .indexStatus(let status):
            status.write(to: &buffer)
        case .trace(let trace):
            trace.write(to: &buffer)
        case .walk(let walk):
            walk.write(to: &buffer)
        case .indexRebuild(let step):
            step.write(to: &buffer)
        case .brokerStatus(let status):
            status.write(to: &buffer, version: version)
        case .backup(let backup):
            backup.write(to: &buffer)
        case .alterTopic:
            break
        case .trainDictionary(let training):
            training.write(to: &buffer)
        case .getDictionary(let dictionary):
            dictionary.write(to: &buffer)
        case .authenticate(let authenticate):
            authenticate.write(to: &buffer)
        case .whoAmI(let identity):
            identity.write(to: &buffer)
        case .describeSecurity(let description):
            description.write(to: &buffer)
        case .alterSecurity:
            break
        }
    }

    /// Decodes one response frame, given the API of the request it answers (the client knows
    /// it from the correlation id).
    public static func decode(frame: ByteBuffer, apiKey: ApiKey, apiVersion: Int16 = 0) throws -> Response {
        var buffer = frame
        let correlationID: Int32 = try buffer.readMillraceInteger("correlation id")
        let errorCode = try readErrorCode(&buffer)
        let message = try buffer.readMillraceString("message")
        guard errorCode == .none else {
            return Response(correlationID: correlationID, error: MillraceError(errorCode, message))
        }
        let body = try readBody(apiKey, apiVersion, &buffer)
        guard buffer.readableBytes == 0 else {
            throw MillraceError(.malformedRequest, "\(buffer.readableBytes) bytes follow the \(apiKey) response body")
        }
        var response = Response(correlationID: correlationID, body: body)
        response.apiVersion = apiVersion
        return response
    }

    private static func readBody(_ api: ApiKey, _ version: Int16, _ buffer: inout ByteBuffer) throws -> ResponseBody {
        switch api {
        case .apiVersions:
            return .apiVersions(
                ApiVersionsResponse(apis: try .init(from: &buffer, "apis"), serverVersion: try buffer.readMillraceString("server version")))
        case .metadata:
            return .metadata(
                MetadataResponse(
                    brokerHost: try buffer.readMillraceString("broker host"), brokerPort: try buffer.readMillraceInteger("broker port"),
                    topics: try .init(from: &buffer, "topics")))
        case .createTopic:
            return .createTopic
        case .deleteTopic:
            return .deleteTopic
        case .describeTopic:
            return .describeTopic(
                DescribeTopicResponse(
                    name: try buffer.readMillraceString("name"), retentionMs: try buffer.readMillraceInteger("retention ms"),
                    retentionBytes: try buffer.readMillraceInteger("retention bytes"),
                    compression: try buffer.readMillraceInteger("compression"),
                    timestampType: try buffer.readMillraceInteger("timestamp type"),
                    createdAtMs: try buffer.readMillraceInteger("created at"), partitions: try .init(from: &buffer, "partitions"),
                    owner: version >= 1 ? try buffer.readMillraceString("owner") : ""))
        case .listTopics:
            return .listTopics(try .init(from: &buffer, "topics"))
        case .produce where version >= 1:
            return .produce(
                try buffer.readMillraceArray("topics", minimumElementBytes: 6, countMax: Limits.topicsPerRequestMax) { buffer in
                    let topic = try buffer.readMillraceString("topic")
                    let entries = try buffer.readMillraceArray("partitions", minimumElementBytes: ProducePartitionResult.minimumBytes + 4) {
                        try ProducePartitionResult(withOutcomes: &$0, version: version)
                    }
                    return TopicEntries(topic: topic, entries)
                })
        case .produce:
            return .produce(try .init(from: &buffer, "topics"))
        case .fetch:
            return .fetch(try .init(from: &buffer, "topics"))
        case .listOffsets:
            return .listOffsets(try .init(from: &buffer, "topics"))
        case .joinGroup:
            return .joinGroup(try GroupAssignmentResponse(from: &buffer))
        case .heartbeat:
            return .heartbeat(try GroupAssignmentResponse(from: &buffer))
        case .leaveGroup:
            return .leaveGroup
        case .offsetCommit:
            return .offsetCommit
        case .offsetFetch:
            return .offsetFetch(try .init(from: &buffer, "topics"))
        case .describeGroup:
            var group = DescribeGroupResponse(
                state: try buffer.readMillraceString("state"), generation: try buffer.readMillraceInteger("generation"),
                members: try .init(from: &buffer, "members"), offsets: try .init(from: &buffer, "offsets"))
            if version >= 1 {
                group.groupProtocol = try buffer.readMillraceString("group protocol")
                group.clients = try .init(from: &buffer, "clients")
            }
            return .describeGroup(group)
        case .listGroups:
            return .listGroups(try .init(from: &buffer, "groups"))
        case .deleteGroup:
            return .deleteGroup
        case .registerSchema:
            let version: Int32 = try buffer.readMillraceInteger("version")
            let created: Int8 = try buffer.readMillraceInteger("created")
            let problems = try buffer.readMillraceArray("problems", minimumElementBytes: 2) { try $0.readMillraceString("problem") }
            return .registerSchema(RegisterSchemaResponse(version: version, created: created != 0, problems: problems))
        case .getSchema:
            let version: Int32 = try buffer.readMillraceInteger("version")
            let registeredAtMs: Int64 = try buffer.readMillraceInteger("registered at")
            guard let schema = try buffer.readMillraceBytes("schema") else { throw MillraceError(.malformedRequest, "the schema is null") }
            return .getSchema(SchemaResponse(version: version, registeredAtMs: registeredAtMs, schema: schema))
        case .listSchemas:
            return .listSchemas(
                ListSchemasResponse(
                    compatibility: try buffer.readMillraceInteger("compatibility"), onInvalid: try buffer.readMillraceInteger("on invalid"),
                    versions: try .init(from: &buffer, "versions")))
        case .setSchemaPolicy:
            return .setSchemaPolicy
        case .initProducer:
            return .initProducer(producerId: try buffer.readMillraceInteger("producer id"), epoch: try buffer.readMillraceInteger("epoch"))
        case .setDedupPolicy:
            return .setDedupPolicy
        case .dedupCheck:
            let found: Int8 = try buffer.readMillraceInteger("found")
            return .dedupCheck(
                DedupCheckResponse(
                    found: found != 0, partition: try buffer.readMillraceInteger("partition"), offset: try buffer.readMillraceInteger("offset"),
                    firstSeenMs: try buffer.readMillraceInteger("first seen")))
        case .dedupStatus:
            return .dedupStatus(
                DedupStatusResponse(
                    key: try buffer.readMillraceString("dedup key"), windowMs: try buffer.readMillraceInteger("window"),
                    keysHeld: try buffer.readMillraceInteger("keys held"), runs: try buffer.readMillraceInteger("runs"),
                    oldestKeyMs: try buffer.readMillraceInteger("oldest key"), duplicatesTotal: try buffer.readMillraceInteger("duplicates"),
                    duplicatesRecent: try buffer.readMillraceInteger("recent duplicates")))
        case .setIndexPolicy:
            return .setIndexPolicy
        case .indexStatus:
            return .indexStatus(try IndexStatusResponse(from: &buffer))
        case .trace:
            return .trace(try TraceResponse(from: &buffer))
        case .walk:
            return .walk(try WalkResponse(from: &buffer))
        case .indexRebuild:
            return .indexRebuild(try IndexRebuildResponse(from: &buffer))
        case .brokerStatus:
            return .brokerStatus(try BrokerStatusResponse(from: &buffer, version: version))
        case .backup:
            return .backup(try BackupResponse(from: &buffer))
        case .alterTopic:
            return .alterTopic
        case .trainDictionary:
            return .trainDictionary(try DictionaryTrainingResponse(from: &buffer))
        case .getDictionary:
            return .getDictionary(try DictionaryResponse(from: &buffer))
        case .authenticate:
            return .authenticate(try AuthenticateResponse(from: &buffer))
        case .whoAmI:
            return .whoAmI(try Identity(from: &buffer))
        case .describeSecurity:
            return .describeSecurity(try SecurityDescription(from: &buffer))
        case .alterSecurity:
            return .alterSecurity
        }
    }
}
