import Logging
import MillraceFormat
import MillraceWire

/// Consumes one topic or several as a member of a group, fit to run as a service:
///
/// - joins, and reads the partitions the broker assigns from the group's committed offsets;
/// - heartbeats and commits in the background (every `heartbeatInterval` and
///   `commitInterval`), however long the caller takes per record;
/// - on a rebalance commits what it has before giving partitions up, tells the caller
///   (`onRebalance`) and drops buffered records of partitions it no longer owns;
/// - after a lost connection or a broker restart reconnects with backoff, rejoins and
///   resumes from the group's commits;
/// - `close()` commits what was marked and leaves the group, so the others take the
///   partitions at once. Call it always (the CLI does on Ctrl-C and SIGTERM).
///
/// What is committed is what was *marked*, and a record is marked only once the caller is
/// done with it — at least once, never lost by a crash:
///
/// - with `autoCommit` (the default) a record is marked when the caller asks for the next
///   one, so `for try await record in consumer { try await post(record) }` commits only
///   records it has posted; a crash (or a `break` on an error) leaves the last one to be
///   read again;
/// - `commit(_:)` marks a record at once: call it after processing the last record before
///   `close()`, or turn `autoCommit` off and call it for each record when processing happens
///   elsewhere (another task, a batch).
public final class GroupConsumer: AsyncSequence, Sendable {
    /// A record of the member's partitions.
    public typealias Element = ConsumedRecord

    /// Where a partition starts when the group has committed nothing for it.
    public enum ResetPolicy: Sendable { case earliest, latest }

    /// A change in what this member owns, told to `onRebalance`.
    public enum Rebalance: Sendable, Equatable {
        case assigned([TopicPartition])
        case revoked([TopicPartition])
    }

    /// How a group member behaves: where it starts without commits, its session, how often it commits.
    public struct Configuration: Sendable {
        /// Where to start a partition with no commit, or whose commit retention removed.
        public var resetPolicy: ResetPolicy = .earliest
        /// Finish once every assigned partition reaches the log end as it was when read.
        public var stopAtEnd = false
        /// The broker drops a member silent for this long and gives its partitions to the others.
        public var sessionTimeoutMs: Int32 = 10_000
        /// Default: a third of the session timeout, at most one second.
        public var heartbeatInterval: Duration?
        /// How often marked records are committed in the background.
        public var commitInterval: Duration = .seconds(5)
        /// Mark each record for commit when the caller asks for the next one (it is done
        /// with the one before). Off: only `commit(_:)` marks.
        public var autoCommit = true
        /// Longest long poll of one fetch; also how soon a rebalance is noticed while idle.
        public var maxWaitMs: Int32 = 500
        /// Sleeps between heartbeats, commits and reconnects; tests pass a clock they drive.
        public var clock: any Clock<Duration> = ContinuousClock()
        /// Told of partitions revoked (before they go) and assigned.
        public var onRebalance: (@Sendable (Rebalance) -> Void)?

        public init() {}
    }

    struct State {
        var memberID = ""
        var generation: Int32 = -1
        var assignment: [TopicPartition] = []
        /// Per partition, the offset to commit next (one past the last record marked).
        var marked: [TopicPartition: Int64] = [:]
        /// Per partition, what this member last committed.
        var committed: [TopicPartition: Int64] = [:]
        /// Per partition, one past the last record handed out (to go on from after a
        /// rebalance that kept the partition).
        var positions: [TopicPartition: Int64] = [:]
        var warnings: [String] = []
        /// A failure the background session could not recover from; `next()` throws it.
        var failure: MillraceError?
        var session: Task<Void, Never>?
        var started = false
        var closed = false
    }

    /// The client it talks through.
    public let client: MillraceClient
    /// The group's name.
    public let group: String
    /// The topics it reads (at least one).
    public let topics: [String]
    /// The first of its topics.
    public var topic: String { topics.first ?? "" }
    /// Its settings.
    public let configuration: Configuration
    let state = Locked(State())
    /// Serialises the group protocol calls (join, heartbeat, commit, leave).
    let membership = AsyncMutex()

    public convenience init(client: MillraceClient, group: String, topic: String, configuration: Configuration = Configuration()) {
        self.init(client: client, group: group, topics: [topic], configuration: configuration)
    }

    /// A member reading several topics: the broker assigns their partitions among the
    /// group's members together, and records of all of them come out of one sequence (each
    /// names its `topic`), fetched in one request per poll.
    public init(client: MillraceClient, group: String, topics: [String], configuration: Configuration = Configuration()) {
        self.client = client
        self.group = group
        var seen = Set<String>()
        self.topics = topics.filter { seen.insert($0).inserted }
        self.configuration = configuration
    }

    /// This member's id (empty until it has joined).
    public var memberID: String { state.withLock { $0.memberID } }
    /// The group generation it is in (-1 when not in the group).
    public var generation: Int32 { state.withLock { $0.generation } }
    /// The partitions it owns now.
    public var assignment: [TopicPartition] { state.withLock { $0.assignment } }
    /// Things a person should know, such as records skipped because retention removed them.
    public var warnings: [String] { state.withLock { $0.warnings } }

    /// Marks `record` as processed: its offset + 1 is committed with the next commit.
    public func commit(_ record: ConsumedRecord) {
        state.withLock { state in
            let place = TopicPartition(topic: record.topic, partition: record.partition)
            guard state.assignment.contains(place) else { return }
            state.marked[place] = Swift.max(state.marked[place] ?? 0, record.offset + 1)
        }
    }

    /// Commits what is marked now, rather than at the next interval.
    public func commitNow() async throws {
        try await membership.run { try await self.commitMarked() }
    }

    /// Stops the background session, commits what is marked and leaves the group. Safe to
    /// call more than once; errors are logged, not thrown, so it always gets to the leave.
    public func close() async {
        let session = state.withLock { state -> Task<Void, Never>? in
            guard !state.closed else { return nil }
            state.closed = true
            return state.session
        }
        session?.cancel()
        await session?.value
        await membership.run {
            guard self.generation >= 0 else { return }
            do {
                try await self.commitMarked()
            } catch {
                self.client.logger.warning("group \(self.group): final commit failed: \(Self.message(error))")
            }
            let request = GroupMemberRequest(group: self.group, memberID: self.memberID, generation: self.generation)
            do {
                _ = try await self.client.request(.leaveGroup(request)).get()
            } catch {
                self.client.logger.warning("group \(self.group): could not leave the group (\(Self.message(error))); the broker drops the member when its session expires")
            }
            self.state.withLock { $0.generation = -1 }
        }
    }

    public func makeAsyncIterator() -> Iterator { Iterator(consumer: self) }

    // MARK: The background session

    /// A third of the session, at most a second: a member waiting for partitions that another
    /// is releasing learns of them at its next heartbeat.
    var heartbeatInterval: Duration {
        configuration.heartbeatInterval ?? .milliseconds(Swift.min(Int64(configuration.sessionTimeoutMs) / 3, 1_000))
    }

    /// Joins (until it has) and starts the background session (once). A join that fails
    /// leaves nothing started: the next call tries again.
    func start() async throws {
        if state.withLock({ $0.session != nil || $0.closed }) { return }
        try await membership.run {
            if self.generation < 0 { try await self.join() }
        }
        state.withLock { state in
            guard state.session == nil, !state.closed else { return }
            state.session = Task { await self.runSession() }
        }
    }

    private func runSession() async {
        let clock = configuration.clock
        var timers = SessionTimers(heartbeatInterval: heartbeatInterval, commitInterval: configuration.commitInterval)
        var backoff: Backoff?
        while !Task.isCancelled {
            let wait = timers.untilNext
            do {
                try await clock.sleep(for: wait)
            } catch {
                return  // cancelled
            }
            let due = timers.elapse(wait)
            do {
                try await membership.run {
                    if due.heartbeat { try await self.heartbeat() }
                    if due.commit { try await self.commitMarked() }
                }
                timers.done(due)
                if let done = backoff {
                    client.logger.notice("group \(group): back in touch with \(client.host):\(client.port) after \(done.attempts) attempt\(done.attempts == 1 ? "" : "s")")
                    backoff = nil
                }
            } catch let error as MillraceError where error.code.isReconnectable {
                var retry = backoff ?? Backoff(min: client.configuration.reconnectBackoffMin, max: client.configuration.reconnectBackoffMax)
                if backoff == nil {
                    client.logger.warning("group \(group): lost the broker at \(client.host):\(client.port) (\(error.message)); reconnecting")
                }
                timers.retry(due, after: retry.next())
                backoff = retry
            } catch is CancellationError {
                return
            } catch let error as MillraceError where Self.isMembershipChurn(error.code) {
                // A commit refused twice while the group was moving (say, the broker restarted
                // twice in a row): the next heartbeat learns the membership; what was not
                // committed is read again, never skipped.
                client.logger.notice("group \(group): \(error.message); checking membership at the next heartbeat")
                timers.retry(due, after: heartbeatInterval)
            } catch {
                let failure = error as? MillraceError ?? MillraceError(.unexpected, "\(error)")
                state.withLock { $0.failure = failure }
                return
            }
        }
    }

    /// Joins (or rejoins after the broker forgot this member) and adopts the assignment.
    private func join() async throws {
        guard !topics.isEmpty else { throw MillraceError(.invalidRequest, "group \(group): a member needs at least one topic to read") }
        let request = JoinGroupRequest(group: group, memberID: memberID, sessionTimeoutMs: configuration.sessionTimeoutMs, topics: topics)
        guard case .joinGroup(let joined) = try await client.request(.joinGroup(request)).get() else { throw MillraceClient.unexpectedBody }
        adopt(joined)
    }

    private func heartbeat(committingFirst: Bool = true) async throws {
        let (memberID, generation) = state.withLock { ($0.memberID, $0.generation) }
        do {
            let body = try await client.request(.heartbeat(GroupMemberRequest(group: group, memberID: memberID, generation: generation))).get()
            guard case .heartbeat(let beat) = body else { throw MillraceClient.unexpectedBody }
            guard beat.rebalanced else { return }
            // Before giving partitions up: commit what was processed in the old generation
            // (the broker accepts it from the generation just before its current one).
            if committingFirst {
                do {
                    try await commitMarked()
                } catch let error as MillraceError where !error.code.isReconnectable {
                    client.logger.warning("group \(group): commit before the rebalance failed (\(error.message)); those records will be read again")
                }
            }
            let movedOn = beat.generation != generation
            adopt(beat)
            if movedOn {
                // Tell the broker at once that this member is at the new generation: the
                // partitions it gave up are released to their new owner.
                let body = try await client.request(.heartbeat(GroupMemberRequest(group: group, memberID: beat.memberID, generation: beat.generation))).get()
                if case .heartbeat(let next) = body, next.rebalanced { adopt(next) }
            }
        } catch let error as MillraceError where error.code == .unknownMember {
            // The broker restarted or our session expired: marks for partitions we may no
            // longer own cannot be committed; their new owner reads them again.
            if !memberID.isEmpty { client.logger.notice("group \(group): the broker no longer knows member \(memberID); joining again") }
            state.withLock { $0.memberID = "" }
            try await join()
        }
    }

    /// Takes a new generation's assignment: drops what was revoked, tells the caller.
    private func adopt(_ assigned: GroupAssignmentResponse) {
        let partitions = assigned.assignment.filter { topics.contains($0.topic) }
            .flatMap { topic in topic.entries.map { TopicPartition(topic: topic.topic, partition: $0.partition) } }.sorted()
        let (revoked, gained) = state.withLock { state -> ([TopicPartition], [TopicPartition]) in
            let before = Set(state.assignment)
            let after = Set(partitions)
            state.memberID = assigned.memberID
            state.generation = assigned.generation
            state.assignment = partitions
            state.marked = state.marked.filter { after.contains($0.key) }
            state.committed = state.committed.filter { after.contains($0.key) }
            state.positions = state.positions.filter { after.contains($0.key) }
            return (before.subtracting(after).sorted(), after.subtracting(before).sorted())
        }
        if !revoked.isEmpty { configuration.onRebalance?(.revoked(revoked)) }
        if !gained.isEmpty { configuration.onRebalance?(.assigned(gained)) }
    }

    /// Commits every marked offset of an owned partition that moved since the last commit.
    /// A commit refused because the group moved on is retried, once the new assignment is
    /// known, for the partitions still owned.
    private func commitMarked() async throws {
        for attempt in 0..<2 {
            let (memberID, generation, offsets) = state.withLock { state in
                (
                    state.memberID, state.generation,
                    state.marked.filter { state.committed[$0.key] != $0.value && state.assignment.contains($0.key) }.sorted { $0.key < $1.key }
                )
            }
            guard generation >= 0, !offsets.isEmpty else { return }
            let byTopic = Dictionary(grouping: offsets, by: \.key.topic)
            let request = OffsetCommitRequest(
                group: group, memberID: memberID, generation: generation,
                topics: byTopic.keys.sorted().map { topic in
                    TopicEntries(topic: topic, (byTopic[topic] ?? []).map { OffsetEntry(partition: $0.key.partition, offset: $0.value) })
                })
            do {
                _ = try await client.request(.offsetCommit(request)).get()
                state.withLock { state in for (partition, offset) in offsets { state.committed[partition] = offset } }
                return
            } catch let error as MillraceError where attempt == 0 && (error.code == .staleGeneration || error.code == .invalidRequest || error.code == .unknownMember) {
                // Learn the new assignment (rejoining if the broker forgot this member), then
                // commit what is still ours.
                try await heartbeat(committingFirst: false)
            }
        }
    }

    /// Refusals that mean the group moved on under this member (a rebalance, a broker that
    /// restarted and forgot it): rejoining answers them.
    static func isMembershipChurn(_ code: ErrorCode) -> Bool {
        code == .unknownMember || code == .staleGeneration || code == .invalidRequest
    }

    static func message(_ error: any Error) -> String { (error as? MillraceError)?.message ?? "\(error)" }

    // MARK: Reading

    /// Reads the member's partitions; joins on the first `next()`.
    ///
    /// A follower (`stopAtEnd` off) rides through a lost broker in any phase — joining,
    /// looking up commits and log ends, fetching, rejoining after a restart: it says so once,
    /// backs off on the configured clock and goes on where it was. A consumer that stops at
    /// the end fails instead, as `Consumer` does.
    public struct Iterator: AsyncIteratorProtocol {
        let consumer: GroupConsumer
        private var reader: Consumer.Iterator?
        /// The membership (member id, generation) and assignment the reader was set up for.
        private var readerMembership: (memberID: String, generation: Int32)?
        private var readerAssignment: [TopicPartition] = []
        /// Heartbeats sent while waiting with nothing assigned (stop-at-end only).
        private var emptyHeartbeats = 0
        private var pending: [ConsumedRecord] = []
        private var pendingIndex = 0
        /// The record handed out last: with `autoCommit` it is marked when the next is asked
        /// for, that is once the caller is done with it.
        private var handedOut: ConsumedRecord?
        /// The broker was away: check membership (rejoining if it forgot this member) before
        /// reading on.
        private var checkMembership = false

        init(consumer: GroupConsumer) { self.consumer = consumer }

        private enum Step {
            case record(ConsumedRecord)
            case end
            case again
        }

        public mutating func next() async throws -> ConsumedRecord? {
            if let done = handedOut, consumer.configuration.autoCommit { consumer.commit(done) }
            handedOut = nil
            let client = consumer.client
            var backoff: Backoff?
            while true {
                try Task.checkCancellation()
                do {
                    let step = try await advance()
                    if let done = backoff {
                        client.logger.notice(
                            "group \(consumer.group): back in touch with \(client.host):\(client.port) after \(done.attempts) attempt\(done.attempts == 1 ? "" : "s"); reading on")
                        backoff = nil
                    }
                    switch step {
                    case .record(let record):
                        handedOut = record
                        return record
                    case .end:
                        return nil
                    case .again:
                        continue
                    }
                } catch let error as MillraceError where !consumer.configuration.stopAtEnd && error.code.isReconnectable {
                    if backoff == nil {
                        client.logger.warning("group \(consumer.group): lost the broker at \(client.host):\(client.port) (\(error.message)); reconnecting")
                    }
                    var retry = backoff ?? Backoff(min: client.configuration.reconnectBackoffMin, max: client.configuration.reconnectBackoffMax)
                    try await consumer.configuration.clock.sleep(for: retry.next())
                    backoff = retry
                    checkMembership = true
                }
            }
        }

        /// One step of reading: join, (re)position for a new membership, hand out a buffered
        /// record, or fetch.
        private mutating func advance() async throws -> Step {
            let consumer = self.consumer
            try await consumer.start()
            if checkMembership {
                try await consumer.membership.run { try await consumer.heartbeat() }
                checkMembership = false
            }
            let (failure, membership, assignment) = consumer.state.withLock { ($0.failure, ($0.memberID, $0.generation), $0.assignment) }
            if let failure { throw failure }
            if readerMembership.map({ $0 != membership }) ?? true || assignment != readerAssignment {
                // A new generation (or a new membership after a broker restart): records
                // buffered for the old one are dropped (those of kept partitions are read
                // again from where they stood).
                pending = []
                pendingIndex = 0
                try await startReading(membership: membership, assignment: assignment)
                return .again
            }
            if pendingIndex < pending.count {
                let record = pending[pendingIndex]
                pendingIndex += 1
                let place = TopicPartition(topic: record.topic, partition: record.partition)
                guard assignment.contains(place) else { return .again }
                consumer.state.withLock { $0.positions[place] = record.offset + 1 }
                return .record(record)
            }
            guard var current = reader else {
                // Nothing assigned and stopping at the end: a partition may still be on its
                // way from a member letting it go; give that a few heartbeats.
                if assignment.isEmpty, emptyHeartbeats < 3 {
                    emptyHeartbeats += 1
                    try await consumer.configuration.clock.sleep(for: consumer.heartbeatInterval)
                    try await consumer.membership.run { try await consumer.heartbeat() }
                    return .again
                }
                return .end
            }
            let reconnectsBefore = current.reconnects
            let chunk = try await current.nextChunk()
            reader = current
            pending = chunk ?? []
            pendingIndex = 0
            if current.reconnects != reconnectsBefore {
                // The broker was away (perhaps restarted, forgetting this member): check
                // membership now rather than at the next heartbeat, and rejoin if needed.
                checkMembership = true
                return .again
            }
            return chunk == nil ? .end : .again
        }

        /// Positions for an assignment: where this member was in a partition it kept, else
        /// the group's commit, else (none, or removed by retention) the reset policy.
        private mutating func startReading(membership: (memberID: String, generation: Int32), assignment: [TopicPartition]) async throws {
            defer {
                // Only once the reader stands: a lookup that failed is made again.
                if reader != nil || assignment.isEmpty {
                    readerMembership = membership
                    readerAssignment = assignment
                }
            }
            reader = nil
            let client = consumer.client
            let configuration = consumer.configuration
            guard !assignment.isEmpty else {
                // Nothing to read this generation: idle polls keep noticing rebalances.
                reader = configuration.stopAtEnd
                    ? nil
                    : Consumer(
                        client: client, positions: [:], idleTopic: consumer.topic, stopAtEnd: false, maxWaitMs: configuration.maxWaitMs,
                        clock: configuration.clock)
                        .makeAsyncIterator()
                return
            }
            let known = consumer.state.withLock { $0.positions }
            var positions: [TopicPartition: Int64] = [:]
            var warnings: [String] = []
            for (topic, places) in Dictionary(grouping: assignment, by: \.topic).sorted(by: { $0.key < $1.key }) {
                let partitions = places.map(\.partition)
                let committed = try await client.committedOffsets(group: consumer.group, topic: topic, partitions: partitions)
                let starts = try await client.listOffsets(topic, partitions: partitions, timestamp: ListOffsetsPartition.earliest)
                let ends = try await client.listOffsets(topic, partitions: partitions, timestamp: ListOffsetsPartition.latest)
                for (index, place) in places.enumerated() {
                    let start = starts[index].offset
                    let end = ends[index].offset
                    let reset = configuration.resetPolicy == .earliest ? start : end
                    let done = known[place] ?? committed[index].offset
                    if done < 0 {
                        positions[place] = reset
                    } else if done < start {
                        let skipped = reset - done
                        warnings.append(
                            "\(place): committed offset \(done) was removed by retention; resuming at the \(configuration.resetPolicy == .earliest ? "earliest" : "latest") offset \(reset), \(skipped) records skipped"
                        )
                        positions[place] = reset
                    } else {
                        positions[place] = Swift.min(done, end)
                    }
                }
            }
            if !warnings.isEmpty {
                consumer.state.withLock { $0.warnings.append(contentsOf: warnings) }
                for warning in warnings { client.logger.warning("\(warning)") }
            }
            reader = Consumer(
                client: client, positions: positions, idleTopic: consumer.topic, stopAtEnd: configuration.stopAtEnd, maxWaitMs: configuration.maxWaitMs,
                clock: configuration.clock)
                .makeAsyncIterator()
        }
    }
}

/// A FIFO lock for async code: one holder at a time, in the order they asked.
final class AsyncMutex: Sendable {
    private let state = Locked<(busy: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func run<T: Sendable>(_ body: @Sendable () async throws -> T) async rethrows -> T {
        await acquire()
        do {
            let value = try await body()
            release()
            return value
        } catch {
            release()
            throw error
        }
    }

    private func acquire() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state -> Bool in
                if !state.busy {
                    state.busy = true
                    return true
                }
                state.waiters.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    private func release() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard !state.waiters.isEmpty else {
                state.busy = false
                return nil
            }
            return state.waiters.removeFirst()
        }
        next?.resume()
    }
}

/// When a group member's background session next heartbeats and commits. Pure: the session
/// sleeps for `untilNext`, reports the time with `elapse`, and after running what was due
/// calls `done` or, when the broker could not be reached, `retry` with a backoff delay — so a
/// due commit that failed waits for the backoff too instead of being retried at once.
struct SessionTimers: Sendable, Equatable {
    struct Due: Equatable {
        var heartbeat: Bool
        var commit: Bool
    }

    let heartbeatInterval: Duration
    let commitInterval: Duration
    private(set) var untilHeartbeat: Duration
    private(set) var untilCommit: Duration

    init(heartbeatInterval: Duration, commitInterval: Duration) {
        self.heartbeatInterval = heartbeatInterval
        self.commitInterval = commitInterval
        untilHeartbeat = heartbeatInterval
        untilCommit = commitInterval
    }

    var untilNext: Duration { Swift.max(.zero, Swift.min(untilHeartbeat, untilCommit)) }

    mutating func elapse(_ time: Duration) -> Due {
        untilHeartbeat -= time
        untilCommit -= time
        return Due(heartbeat: untilHeartbeat <= .zero, commit: untilCommit <= .zero)
    }

    mutating func done(_ due: Due) {
        if due.heartbeat { untilHeartbeat = heartbeatInterval }
        if due.commit { untilCommit = commitInterval }
    }

    /// What was due is tried again after `delay` (a heartbeat then in any case: it is how the
    /// member finds out whether the broker still knows it).
    mutating func retry(_ due: Due, after delay: Duration) {
        untilHeartbeat = delay
        if due.commit { untilCommit = delay }
    }
}
