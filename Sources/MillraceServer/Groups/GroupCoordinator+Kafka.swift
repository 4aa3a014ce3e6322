import MillraceFormat
import MillraceKafka
import MillraceWire
import NIOCore

/// A Kafka member's requests that wait for its group's rebalance.
struct KafkaWaiters {
    var joins: [String: EventLoopPromise<KafkaGroupStateMachine.JoinAnswer>] = [:]
    var syncs: [String: EventLoopPromise<KafkaGroupStateMachine.SyncAnswer>] = [:]
}

/// Kafka's group protocol in the same coordinator as the native one: one namespace (a name
/// live in one protocol is refused to the other, with a message naming it), one census
/// against `groupsMax`, one store of committed offsets, one expiry tick.
extension GroupCoordinator {
    /// Kafka's session timeout bounds: Kafka's brokers' lower one (6 s), and the native
    /// groups' upper one (5 min; Kafka's is 30): a member whose client is gone holds its
    /// place, and its metadata, at most that long.
    static let kafkaSessionTimeoutRangeMs: ClosedRange<Int64> = 6_000...300_000
    /// Bytes of protocol metadata and assignments one Kafka group may hold for its members
    /// (a consumer's subscription is tens of bytes; one listing 1,000 owned partitions a few
    /// KiB), and all Kafka groups together: past either, a join is refused
    /// (GROUP_MAX_SIZE_REACHED, with a log line), so invented members cannot grow the broker.
    static let kafkaGroupBytesMax = 4 << 20
    static let kafkaGroupsBytesMax = 64 << 20
    /// A rebalance waits at most this long for members to join again.
    static let kafkaRebalanceTimeoutMaxMs: Int64 = 300_000

    /// Answers to complete once the lock is released.
    private struct Completions {
        var joins: [(EventLoopPromise<KafkaGroupStateMachine.JoinAnswer>, KafkaGroupStateMachine.JoinAnswer)] = []
        var syncs: [(EventLoopPromise<KafkaGroupStateMachine.SyncAnswer>, KafkaGroupStateMachine.SyncAnswer)] = []

        func run() {
            for (promise, answer) in joins { promise.succeed(answer) }
            for (promise, answer) in syncs { promise.succeed(answer) }
        }
    }

    /// Hands each answer to the request waiting for it; returns the asker's own if it is among them.
    private static func route(
        _ answers: KafkaGroupStateMachine.Answers, group: String, state: inout State, into completions: inout Completions
    ) {
        var waiting = state.kafkaWaiting[group] ?? KafkaWaiters()
        for answer in answers.joins {
            if let promise = waiting.joins.removeValue(forKey: answer.memberID) { completions.joins.append((promise, answer)) }
        }
        for answer in answers.syncs {
            if let promise = waiting.syncs.removeValue(forKey: answer.memberID) { completions.syncs.append((promise, answer)) }
        }
        state.kafkaWaiting[group] = waiting.joins.isEmpty && waiting.syncs.isEmpty ? nil : waiting
    }

    /// Stores `group`, or drops it when its last member has gone.
    private static func keep(_ group: KafkaGroupStateMachine, state: inout State) {
        if group.isEmpty {
            state.kafkaGroups[group.group] = nil
            state.census.membersGone(group.group)
        } else {
            state.kafkaGroups[group.group] = group
        }
    }

    func kafkaJoin(_ request: KafkaGroups.JoinRequest, clientID: String, clientHost: String, on eventLoop: any EventLoop) -> EventLoopFuture<
        KafkaGroupStateMachine.JoinAnswer
    > {
        let refuse = { (code: KafkaErrorCode) in eventLoop.makeSucceededFuture(KafkaGroupStateMachine.JoinAnswer(memberID: request.memberID, error: code)) }
        guard !request.groupID.isEmpty else { return refuse(.invalidRequest) }
        guard Self.kafkaSessionTimeoutRangeMs.contains(Int64(request.sessionTimeoutMs)) else { return refuse(.invalidSessionTimeout) }
        let now = clock.nowMilliseconds()
        let promise = eventLoop.makePromise(of: KafkaGroupStateMachine.JoinAnswer.self)
        var completions = Completions()
        let outcome = state.withLock { state -> (refused: (KafkaErrorCode, String)?, memberID: String, members: Int, generation: Int32) in
            if let native = state.groups[request.groupID] {
                let count = native.members.count
                return (
                    (.inconsistentGroupProtocol, "it is a native Millrace group with \(count) live member\(count == 1 ? "" : "s") (assignment by the broker); a Kafka consumer cannot join it until they leave, or use another group name"),
                    request.memberID, 0, 0
                )
            }
            let existing = state.kafkaGroups[request.groupID]
            if let live = existing, live.members[request.memberID] == nil, live.members.count >= Limits.groupMembersMax {
                return ((.groupMaxSizeReached, "it has \(Limits.groupMembersMax) members (groupMembersMax)"), request.memberID, 0, 0)
            }
            let adding = request.protocols.reduce(0) { $0 + $1.metadata.count + $1.name.utf8.count }
            let before = existing?.bytesHeld ?? 0
            let replacing = existing?.members[request.memberID].map { $0.protocols.reduce(0) { $0 + $1.metadata.count + $1.name.utf8.count } } ?? 0
            if before - replacing + adding > Self.kafkaGroupBytesMax {
                return (
                    (.groupMaxSizeReached, "its members' metadata would take \(before - replacing + adding) bytes; a group holds at most \(Self.kafkaGroupBytesMax)"),
                    request.memberID, 0, 0
                )
            }
            if state.kafkaBytesHeld - replacing + adding > Self.kafkaGroupsBytesMax {
                return (
                    (.groupMaxSizeReached, "Kafka groups' members' metadata would take \(state.kafkaBytesHeld - replacing + adding) bytes; the broker holds at most \(Self.kafkaGroupsBytesMax)"),
                    request.memberID, 0, 0
                )
            }
            if state.census.join(request.groupID) == .refused {
                return ((.throttlingQuotaExceeded, Self.tooManyGroups(state.census).message), request.memberID, 0, 0)
            }
            var group = state.kafkaGroups[request.groupID] ?? KafkaGroupStateMachine(group: request.groupID)
            let (memberID, answers) = group.join(
                memberID: request.memberID, clientID: clientID, clientHost: clientHost, protocolType: request.protocolType,
                protocols: request.protocols.map { ($0.name, $0.metadata) }, sessionTimeoutMs: Int64(request.sessionTimeoutMs),
                rebalanceTimeoutMs: min(Int64(max(request.rebalanceTimeoutMs, request.sessionTimeoutMs)), Self.kafkaRebalanceTimeoutMaxMs), nowMs: now)
            state.kafkaBytesHeld += group.bytesHeld - before
            Self.keep(group, state: &state)
            // The asker waits unless its answer is already here. A join it sent before and
            // still waits for is answered now: only the newest is kept.
            if let own = answers.joins.first(where: { $0.memberID == memberID || ($0.memberID.isEmpty && memberID.isEmpty) }) {
                completions.joins.append((promise, own))
            } else {
                if let replaced = state.kafkaWaiting[request.groupID]?.joins[memberID] {
                    completions.joins.append((replaced, .init(memberID: memberID, error: .rebalanceInProgress)))
                }
                state.kafkaWaiting[request.groupID, default: KafkaWaiters()].joins[memberID] = promise
            }
            Self.route(answers, group: request.groupID, state: &state, into: &completions)
            return (nil, memberID, group.members.count, group.generation)
        }
        completions.run()
        if let (code, reason) = outcome.refused {
            note("kafka-join-refused", request.groupID, "group \(request.groupID): refused a Kafka consumer (client \(clientID) at \(clientHost)): \(reason)")
            promise.succeed(KafkaGroupStateMachine.JoinAnswer(memberID: request.memberID, error: code))
        } else {
            note(
                "kafka-join", request.groupID,
                "group \(request.groupID): Kafka member \(outcome.memberID) (client \(clientID) at \(clientHost)) joined; \(outcome.members) member\(outcome.members == 1 ? "" : "s")")
        }
        return promise.futureResult
    }

    func kafkaSync(_ request: KafkaGroups.SyncRequest, on eventLoop: any EventLoop) -> EventLoopFuture<KafkaGroupStateMachine.SyncAnswer> {
        let now = clock.nowMilliseconds()
        let promise = eventLoop.makePromise(of: KafkaGroupStateMachine.SyncAnswer.self)
        var completions = Completions()
        state.withLock { state in
            guard var group = state.kafkaGroups[request.groupID] else {
                completions.syncs.append((promise, .init(memberID: request.memberID, error: .unknownMemberID)))
                return
            }
            var assignments: [String: [UInt8]] = [:]
            for item in request.assignments { assignments[item.memberID] = item.assignment }
            let before = group.bytesHeld
            let answers = group.sync(memberID: request.memberID, generation: request.generationID, assignments: assignments, nowMs: now)
            state.kafkaBytesHeld += group.bytesHeld - before
            Self.keep(group, state: &state)
            if let own = answers.syncs.first(where: { $0.memberID == request.memberID }), group.members[request.memberID]?.awaitingSync != true {
                completions.syncs.append((promise, own))
                var rest = answers
                rest.syncs.removeAll { $0.memberID == request.memberID }
                Self.route(rest, group: request.groupID, state: &state, into: &completions)
            } else {
                if let replaced = state.kafkaWaiting[request.groupID]?.syncs[request.memberID] {
                    completions.syncs.append((replaced, .init(memberID: request.memberID, error: .rebalanceInProgress)))
                }
                state.kafkaWaiting[request.groupID, default: KafkaWaiters()].syncs[request.memberID] = promise
                Self.route(answers, group: request.groupID, state: &state, into: &completions)
            }
        }
        completions.run()
        return promise.futureResult
    }

    func kafkaHeartbeat(_ request: KafkaMembership.Heartbeat) -> KafkaErrorCode {
        let now = clock.nowMilliseconds()
        return state.withLock { state in
            guard var group = state.kafkaGroups[request.groupID] else { return .unknownMemberID }
            let code = group.heartbeat(memberID: request.memberID, generation: request.generationID, nowMs: now)
            state.kafkaGroups[request.groupID] = group
            return code
        }
    }

    /// Members leave; each gets its own code.
    func kafkaLeave(group name: String, memberIDs: [String]) -> [KafkaErrorCode] {
        let now = clock.nowMilliseconds()
        var completions = Completions()
        let codes = state.withLock { state -> [KafkaErrorCode] in
            guard var group = state.kafkaGroups[name] else { return memberIDs.map { _ in .unknownMemberID } }
            var codes: [KafkaErrorCode] = []
            let before = group.bytesHeld
            defer { state.kafkaBytesHeld += group.bytesHeld - before }
            for id in memberIDs {
                let (found, answers) = group.leave(memberID: id, nowMs: now)
                codes.append(found ? .none : .unknownMemberID)
                Self.route(answers, group: name, state: &state, into: &completions)
            }
            Self.keep(group, state: &state)
            return codes
        }
        completions.run()
        for (id, code) in zip(memberIDs, codes) where code == .none { note("kafka-leave", name, "group \(name): Kafka member \(id) left") }
        return codes
    }

    /// Whether a Kafka OffsetCommit may move the group's offsets (and counts the group).
    func kafkaCheckCommit(group name: String, memberID: String, generation: Int32) -> (KafkaErrorCode, String?) {
        state.withLock { state in
            if let group = state.kafkaGroups[name] {
                let code = group.checkCommit(memberID: memberID, generation: generation)
                if code == .none { _ = state.census.commit(name) }
                return (code, nil)
            }
            // Not a live Kafka group: the native rules (a live native group is its members' own).
            do {
                try Self.checkCommitFencing(OffsetCommitRequest(group: name, memberID: memberID, generation: generation, topics: []), state: &state)
                return (.none, nil)
            } catch let error as MillraceError {
                return (state.groups[name] != nil ? .unknownMemberID : KafkaErrorCode(error.code), error.message)
            } catch {
                return (.unknownServerError, "\(error)")
            }
        }
    }

    /// The broker is stopping: every JoinGroup and SyncGroup still waiting for a rebalance is
    /// answered NOT_COORDINATOR at once (the client looks for the coordinator again and
    /// rejoins once the broker is back), so a graceful stop does not wait for them.
    func releaseKafkaWaiters() {
        var completions = Completions()
        state.withLock { state in
            for (_, waiting) in state.kafkaWaiting {
                for (id, promise) in waiting.joins { completions.joins.append((promise, .init(memberID: id, error: .notCoordinator))) }
                for (id, promise) in waiting.syncs { completions.syncs.append((promise, .init(memberID: id, error: .notCoordinator))) }
            }
            state.kafkaWaiting = [:]
        }
        completions.run()
    }

    /// Expires Kafka members (called from `expire`).
    func expireKafka(nowMs: Int64) -> [(group: String, members: [String], left: Int)] {
        var completions = Completions()
        let expired = state.withLock { state -> [(group: String, members: [String], left: Int)] in
            var expired: [(group: String, members: [String], left: Int)] = []
            for name in Array(state.kafkaGroups.keys) {
                guard var group = state.kafkaGroups[name] else { continue }
                let before = group.bytesHeld
                let (gone, answers) = group.expire(nowMs: nowMs)
                state.kafkaBytesHeld += group.bytesHeld - before
                Self.keep(group, state: &state)
                Self.route(answers, group: name, state: &state, into: &completions)
                if !gone.isEmpty { expired.append((name, gone, group.members.count)) }
            }
            return expired
        }
        completions.run()
        return expired
    }

    /// Kafka groups as DescribeGroups tells them; nil for a name that is not a live Kafka group.
    func describeKafka(_ name: String) -> KafkaGroups.DescribedGroup? {
        state.withLock { state in
            guard let group = state.kafkaGroups[name] else { return nil }
            return KafkaGroups.DescribedGroup(
                groupID: name, state: group.stateName, protocolType: group.protocolType, protocolData: group.protocolName,
                members: group.order.compactMap { id in
                    group.members[id].map { member in
                        KafkaGroups.DescribedMember(
                            memberID: id, clientID: member.clientID, clientHost: member.clientHost,
                            metadata: member.protocols.first { $0.name == group.protocolName }?.metadata ?? [], assignment: member.assignment)
                    }
                })
        }
    }

    /// Each live group's protocol type ("consumer" for Kafka's consumers; "" for native groups).
    func protocolTypes() -> [String: String] {
        state.withLock { state in
            state.groups.mapValues { _ in "" }.merging(state.kafkaGroups.mapValues(\.protocolType)) { native, _ in native }
        }
    }

    /// Members of live Kafka groups with their client ids and hosts, by group.
    func kafkaMembers() -> [String: [(memberID: String, clientID: String, clientHost: String)]] {
        state.withLock { state in
            state.kafkaGroups.mapValues { group in
                group.order.compactMap { id in group.members[id].map { (id, $0.clientID, $0.clientHost) } }
            }
        }
    }
}
