import MillraceFormat
import MillraceKafka
import MillraceSecurity
import MillraceStorage
import MillraceWire
import NIOCore

/// Kafka's consumer group APIs, onto the broker's one group coordinator and offset store.
extension KafkaService {
    func handleGroup(_ api: KafkaApiKey, _ header: KafkaRequestHeader, body: inout ByteBuffer, peer: ConnectionPeer) throws -> EventLoopFuture<
        ConnectionAnswer
    > {
        let version = header.apiVersion
        let eventLoop = peer.eventLoop
        let groups = dispatcher.groups
        let principal = principal(peer)
        /// Whether the principal may take part in `group`; logged when not.
        func mayJoin(_ group: String) -> Bool { allows(principal, .read, .group(group), peer: peer, api: api) }
        let refused = KafkaErrorCode.groupAuthorizationFailed.rawValue
        switch api {
        case .joinGroup:
            let request = try KafkaGroups.JoinRequest(from: &body, version: version)
            guard mayJoin(request.groupID) else {
                let response = KafkaGroups.JoinResponse(errorCode: refused, generationID: -1, protocolName: "", leader: "", memberID: request.memberID, members: [])
                return eventLoop.makeSucceededFuture(Self.answer(header) { response.write(to: &$0, version: version) })
            }
            return groups.kafkaJoin(request, clientID: header.clientID ?? "", clientHost: Self.host(peer.description), on: eventLoop).map { answer in
                let response = KafkaGroups.JoinResponse(
                    errorCode: answer.error.rawValue, generationID: answer.generation, protocolName: answer.protocolName, leader: answer.leader,
                    memberID: answer.memberID, members: answer.members.map { KafkaGroups.JoinResponse.Member(memberID: $0.id, metadata: $0.metadata) })
                return Self.answer(header) { response.write(to: &$0, version: version) }
            }
        case .syncGroup:
            let request = try KafkaGroups.SyncRequest(from: &body, version: version)
            guard mayJoin(request.groupID) else {
                let response = KafkaGroups.SyncResponse(errorCode: refused, assignment: [])
                return eventLoop.makeSucceededFuture(Self.answer(header) { response.write(to: &$0, version: version) })
            }
            return groups.kafkaSync(request, on: eventLoop).map { answer in
                let response = KafkaGroups.SyncResponse(errorCode: answer.error.rawValue, assignment: answer.assignment)
                return Self.answer(header) { response.write(to: &$0, version: version) }
            }
        case .heartbeat:
            let request = try KafkaMembership.Heartbeat(from: &body, version: version)
            let response = KafkaMembership.Response(errorCode: mayJoin(request.groupID) ? groups.kafkaHeartbeat(request).rawValue : refused)
            return eventLoop.makeSucceededFuture(Self.answer(header) { response.write(to: &$0, version: version, api: .heartbeat) })
        case .leaveGroup:
            let request = try KafkaMembership.LeaveGroup(from: &body, version: version)
            let codes =
                mayJoin(request.groupID)
                ? groups.kafkaLeave(group: request.groupID, memberIDs: request.members.map(\.memberID))
                : request.members.map { _ in KafkaErrorCode.groupAuthorizationFailed }
            // v3+ answers per member; before, one member and one code.
            let response =
                version >= 3
                ? KafkaMembership.Response(
                    members: zip(request.members, codes).map { KafkaMembership.Leaver(memberID: $0.memberID, groupInstanceID: $0.groupInstanceID, errorCode: $1.rawValue) })
                : KafkaMembership.Response(errorCode: (codes.first ?? .unknownMemberID).rawValue)
            return eventLoop.makeSucceededFuture(Self.answer(header) { response.write(to: &$0, version: version, api: .leaveGroup) })
        case .offsetCommit:
            let request = try KafkaGroups.OffsetCommitRequest(from: &body, version: version)
            return offsetCommit(request, header: header, peer: peer)
        case .offsetFetch:
            let request = try KafkaGroups.OffsetFetchRequest(from: &body, version: version)
            return offsetFetch(request, header: header, peer: peer)
        case .describeGroups:
            let request = try KafkaGroups.DescribeRequest(from: &body, version: version)
            let response = KafkaGroups.DescribeResponse(
                groups: request.groups.map { name in
                    guard allows(principal, .describe, .group(name), peer: peer, api: api) else {
                        var described = KafkaGroups.DescribedGroup(groupID: name, state: "", protocolType: "", protocolData: "", members: [])
                        described.errorCode = refused
                        return described
                    }
                    return describe(name)
                })
            return eventLoop.makeSucceededFuture(Self.answer(header) { response.write(to: &$0, version: version) })
        case .listGroups:
            let types = groups.protocolTypes()
            let stored = (try? dispatcher.storage.groupsWithCommittedOffsets()) ?? []
            let names = Set(types.keys).union(stored).sorted().filter { dispatcher.allows(principal, .describe, .group($0)) }
            let response = KafkaGroups.ListResponse(groups: names.map { ($0, types[$0] ?? "consumer") })
            return eventLoop.makeSucceededFuture(Self.answer(header) { response.write(to: &$0, version: version) })
        default:
            throw MillraceError(.unexpected, "\(api) is not a group API")
        }
    }

    /// `192.0.2.7` of `192.0.2.7:51234` (Kafka names a member's host without its port).
    static func host(_ peer: String) -> String {
        guard let colon = peer.lastIndex(of: ":") else { return peer }
        return "/" + peer[..<colon].filter { $0 != "[" && $0 != "]" }
    }

    private func offsetCommit(_ request: KafkaGroups.OffsetCommitRequest, header: KafkaRequestHeader, peer: ConnectionPeer) -> EventLoopFuture<
        ConnectionAnswer
    > {
        let version = header.apiVersion
        @Sendable func answerAll(_ code: KafkaErrorCode) -> ConnectionAnswer {
            let response = KafkaGroups.OffsetCommitResponse(
                topics: request.topics.map { topic in
                    KafkaTopic(name: topic.name, topic.entries.map { KafkaGroups.OffsetCommitResponse.PartitionError(index: $0.index, errorCode: code.rawValue) })
                })
            return Self.answer(header) { response.write(to: &$0, version: version) }
        }
        let principal = principal(peer)
        guard allows(principal, .read, .group(request.groupID), peer: peer, api: .offsetCommit) else {
            return peer.eventLoop.makeSucceededFuture(answerAll(.groupAuthorizationFailed))
        }
        guard request.topics.allSatisfy({ allows(principal, .read, .topic($0.name), peer: peer, api: .offsetCommit) }) else {
            return peer.eventLoop.makeSucceededFuture(answerAll(.topicAuthorizationFailed))
        }
        let (code, reason) = dispatcher.groups.kafkaCheckCommit(group: request.groupID, memberID: request.memberID, generation: request.generationID)
        guard code == .none else {
            if let reason, let held = dispatcher.logLimiter.allow("kafka-commit:" + request.groupID) {
                dispatcher.logger.info("group \(request.groupID): refused a Kafka commit from \(peer.description): \(reason)\(held)")
            }
            return peer.eventLoop.makeSucceededFuture(answerAll(code))
        }
        // Each partition is checked on its own (Kafka answers per partition): metadata over
        // the limit, a topic or partition that does not exist, an offset past the log end.
        // The rest are committed together.
        var refusals: [TopicPartition: KafkaErrorCode] = [:]
        var commits: [OffsetCommit] = []
        for topic in request.topics {
            for entry in topic.entries {
                let key = TopicPartition(topic: topic.name, partition: entry.index)
                if (entry.metadata?.utf8.count ?? 0) > Limits.offsetMetadataBytesMax {
                    refusals[key] = .offsetMetadataTooLarge
                } else if let offsets = try? dispatcher.storage.offsets(topic: topic.name, partition: entry.index) {
                    if entry.offset > offsets.nextOffset { refusals[key] = .offsetOutOfRange } else {
                        commits.append(OffsetCommit(group: request.groupID, topic: topic.name, partition: entry.index, offset: entry.offset, metadata: entry.metadata ?? ""))
                    }
                } else {
                    refusals[key] = .unknownTopicOrPartition
                }
            }
        }
        let refused = refusals
        @Sendable func answered(_ code: KafkaErrorCode) -> ConnectionAnswer {
            let response = KafkaGroups.OffsetCommitResponse(
                topics: request.topics.map { topic in
                    KafkaTopic(
                        name: topic.name,
                        topic.entries.map {
                            KafkaGroups.OffsetCommitResponse.PartitionError(
                                index: $0.index, errorCode: (refused[TopicPartition(topic: topic.name, partition: $0.index)] ?? code).rawValue)
                        })
                })
            return Self.answer(header) { response.write(to: &$0, version: version) }
        }
        guard !commits.isEmpty else { return peer.eventLoop.makeSucceededFuture(answered(.none)) }
        let promise = peer.eventLoop.makePromise(of: ConnectionAnswer.self)
        let groups = dispatcher.groups
        let group = request.groupID
        let eventLoop = peer.eventLoop
        dispatcher.storage.commitOffsets(commits) { result in
            switch result {
            case .success: promise.succeed(answered(.none))
            case .failure(let error):
                // As for a native commit: a failed one must not leave a group counted with no
                // offsets; on the event loop (the writer's thread must not open a read transaction).
                eventLoop.execute {
                    groups.commitFailed(group)
                    promise.succeed(answered(KafkaErrorCode(error.code)))
                }
            }
        }
        return promise.futureResult
    }

    private func offsetFetch(_ request: KafkaGroups.OffsetFetchRequest, header: KafkaRequestHeader, peer: ConnectionPeer) -> EventLoopFuture<ConnectionAnswer> {
        let version = header.apiVersion
        let response: KafkaGroups.OffsetFetchResponse
        do {
            guard allows(principal(peer), .describe, .group(request.groupID), peer: peer, api: .offsetFetch) else {
                throw MillraceError(.notAuthorized, "group \(request.groupID)")
            }
            let stored = try dispatcher.storage.committedOffsets(group: request.groupID)
            var byKey: [TopicPartition: CommittedOffset] = [:]
            for offset in stored { byKey[TopicPartition(topic: offset.topic, partition: offset.partition)] = offset }
            let principal = principal(peer)
            let topics = (request.topics
                ?? Dictionary(grouping: stored, by: \.topic).sorted { $0.key < $1.key }.map { KafkaTopic(name: $0.key, $0.value.map(\.partition).sorted()) })
                .filter { dispatcher.allows(principal, .describe, .topic($0.name)) }
            response = KafkaGroups.OffsetFetchResponse(
                topics: topics.map { topic in
                    KafkaTopic(
                        name: topic.name,
                        topic.entries.map { partition in
                            let found = byKey[TopicPartition(topic: topic.name, partition: partition)]
                            return KafkaGroups.FetchedOffset(index: partition, offset: found?.offset ?? -1, metadata: found?.metadata ?? "")
                        })
                })
        } catch {
            let code = KafkaErrorCode((error as? MillraceError)?.code ?? .unexpected, on: .group).rawValue
            response = KafkaGroups.OffsetFetchResponse(topics: [], errorCode: code)
        }
        return peer.eventLoop.makeSucceededFuture(Self.answer(header) { response.write(to: &$0, version: version) })
    }

    private func describe(_ name: String) -> KafkaGroups.DescribedGroup {
        if let kafka = dispatcher.groups.describeKafka(name) { return kafka }
        // A native group, or one of offsets alone: its members have no Kafka metadata.
        guard let live = dispatcher.groups.snapshot(name) else {
            return KafkaGroups.DescribedGroup(groupID: name, state: "Empty", protocolType: "consumer", protocolData: "", members: [])
        }
        return KafkaGroups.DescribedGroup(
            groupID: name, state: "Stable", protocolType: "millrace", protocolData: "broker-assigned",
            members: live.assignment.keys.sorted().map { KafkaGroups.DescribedMember(memberID: $0, clientID: "", clientHost: "", metadata: [], assignment: []) })
    }
}
