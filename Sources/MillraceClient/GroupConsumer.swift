import MillraceFormat
import MillraceWire

/// Consumes a topic as a member of a group: joins, reads the partitions the broker assigns
/// from the group's committed offsets, heartbeats between reads, follows rebalances, and
/// commits what it has handed out (`commit()`, or every `autoCommitRecords`).
public struct GroupConsumer: AsyncSequence, Sendable {
    public typealias Element = ConsumedRecord

    public enum ResetPolicy: Sendable { case earliest, latest }

    public let client: MillraceClient
    let group: String
    let topic: String
    let whenNoCommit: ResetPolicy
    let stopAtEnd: Bool
    let sessionTimeoutMs: Int32
    let autoCommitRecords: Int?

    public init(
        client: MillraceClient, group: String, topic: String, whenNoCommit: ResetPolicy = .earliest, stopAtEnd: Bool,
        sessionTimeoutMs: Int32 = 10_000, autoCommitRecords: Int? = nil
    ) {
        self.client = client
        self.group = group
        self.topic = topic
        self.whenNoCommit = whenNoCommit
        self.stopAtEnd = stopAtEnd
        self.sessionTimeoutMs = sessionTimeoutMs
        self.autoCommitRecords = autoCommitRecords
    }

    public func makeAsyncIterator() -> Iterator { Iterator(consumer: self) }

    public struct Iterator: AsyncIteratorProtocol {
        let consumer: GroupConsumer
        public private(set) var memberID = ""
        public private(set) var generation: Int32 = -1
        public private(set) var assignment: [Int32] = []
        /// Things a person should know, such as records skipped because retention removed them.
        public private(set) var warnings: [String] = []
        private var reader: Consumer.Iterator?
        private var pending: [ConsumedRecord] = []
        private var pendingIndex = 0
        /// Per partition, one past the last record handed out.
        private var handedOut: [Int32: Int64] = [:]
        private var sinceCommit = 0
        private var lastHeartbeat = 0.0

        init(consumer: GroupConsumer) { self.consumer = consumer }

        public mutating func next() async throws -> ConsumedRecord? {
            if generation < 0 { try await join() }
            // A heartbeat that is due (or forced by a refused commit) comes before any more
            // records: a member that lost partitions must not hand out what it no longer owns.
            try await heartbeatIfDue()
            while pendingIndex == pending.count {
                // Polls are short, so a member with nothing to read still keeps its session.
                try await heartbeatIfDue()
                try Task.checkCancellation()
                guard var current = reader else { return nil }
                let chunk = try await current.nextChunk()
                reader = current
                guard let chunk else { return nil }
                pending = chunk
                pendingIndex = 0
            }
            let record = pending[pendingIndex]
            pendingIndex += 1
            handedOut[record.partition] = record.offset + 1
            sinceCommit += 1
            if let every = consumer.autoCommitRecords, sinceCommit >= every {
                do {
                    try await commit()
                } catch let error as MillraceError where error.code == .staleGeneration || error.code == .unknownMember {
                    // The group moved on: learn the new assignment at once. Records since
                    // the last commit will be read again by their new owner (at least once).
                    lastHeartbeat = 0
                }
            }
            return record
        }

        /// Commits, for each partition, one past the last record handed out.
        public mutating func commit() async throws {
            guard generation >= 0, !handedOut.isEmpty else { return }
            let offsets = handedOut.sorted { $0.key < $1.key }.map { OffsetEntry(partition: $0.key, offset: $0.value) }
            try await consumer.client.commitOffsets(
                group: consumer.group, memberID: memberID, generation: generation, topic: consumer.topic, offsets: offsets)
            sinceCommit = 0
        }

        /// Leaves the group so the others take the partitions at once.
        public mutating func leave() async {
            guard generation >= 0 else { return }
            _ = try? await consumer.client.send(.leaveGroup(GroupMemberRequest(group: consumer.group, memberID: memberID, generation: generation)))
            generation = -1
        }

        private mutating func join() async throws {
            let body = try await consumer.client.send(
                .joinGroup(JoinGroupRequest(group: consumer.group, memberID: memberID, sessionTimeoutMs: consumer.sessionTimeoutMs, topics: [consumer.topic])))
            guard case .joinGroup(let joined) = body else { throw MillraceClient.unexpectedBody }
            memberID = joined.memberID
            try await adopt(joined)
        }

        private mutating func heartbeatIfDue() async throws {
            let now = SystemClock().nowMilliseconds()
            guard Double(now) - lastHeartbeat >= Double(consumer.sessionTimeoutMs) / 3 else { return }
            lastHeartbeat = Double(now)
            do {
                let body = try await consumer.client.send(.heartbeat(GroupMemberRequest(group: consumer.group, memberID: memberID, generation: generation)))
                guard case .heartbeat(let beat) = body else { throw MillraceClient.unexpectedBody }
                if beat.rebalanced { try await adopt(beat) }
            } catch let error as MillraceError where error.code == .unknownMember {
                try await join()
            }
        }

        /// Starts reading a (new) assignment from the group's committed offsets.
        private mutating func adopt(_ assigned: GroupAssignmentResponse) async throws {
            generation = assigned.generation
            assignment = assigned.assignment.first { $0.topic == consumer.topic }?.entries.map(\.partition) ?? []
            lastHeartbeat = Double(SystemClock().nowMilliseconds())
            handedOut = handedOut.filter { assignment.contains($0.key) }
            guard !assignment.isEmpty else {
                // Nothing to read this generation: keep heartbeating (reader with no partitions).
                pending = []
                pendingIndex = 0
                reader = consumer.stopAtEnd ? nil : Consumer(client: consumer.client, topic: consumer.topic, positions: [:], stopAtEnd: false, maxWaitMs: 200).makeAsyncIterator()
                return
            }
            let committed = try await consumer.client.committedOffsets(group: consumer.group, topic: consumer.topic, partitions: assignment)
            let starts = try await consumer.client.listOffsets(consumer.topic, partitions: assignment, timestamp: ListOffsetsPartition.earliest)
            let ends = try await consumer.client.listOffsets(consumer.topic, partitions: assignment, timestamp: ListOffsetsPartition.latest)
            var positions: [Int32: Int64] = [:]
            for (index, partition) in assignment.enumerated() {
                let done = handedOut[partition] ?? committed[index].offset
                let start = starts[index].offset
                if done < 0 {
                    positions[partition] = consumer.whenNoCommit == .earliest ? start : ends[index].offset
                } else if done < start {
                    let skipped = start - done
                    warnings.append(
                        "\(consumer.topic)/\(partition): committed offset \(done) was removed by retention; resuming at \(start), \(skipped) records skipped")
                    positions[partition] = start
                } else {
                    positions[partition] = done
                }
            }
            pending = []
            pendingIndex = 0
            let maxWaitMs = Swift.min(500, consumer.sessionTimeoutMs / 4)
            reader = Consumer(client: consumer.client, topic: consumer.topic, positions: positions, stopAtEnd: consumer.stopAtEnd, maxWaitMs: maxWaitMs)
                .makeAsyncIterator()
        }
    }
}
