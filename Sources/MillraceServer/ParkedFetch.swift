import MillraceFormat
import MillraceStorage
import MillraceWire
import NIOCore

/// A fetch waiting for `min bytes` (a long poll). It holds no record bytes while it waits:
/// it remembers how many bytes each of its partitions gave it and how many each partition
/// held when it parked, and when a commit moves some of their ends it looks only at those
/// partitions' byte counts (no record is read), on its event loop. Once they have grown
/// enough it reads the answer; at its deadline (`max wait ms`, at most
/// `Limits.fetchWaitMsMax`), or when its connection drains, it answers with what there is;
/// when its connection goes it is cancelled at once.
final class ParkedFetch: Sendable {
    private struct State {
        var done = false
        /// Bytes each partition gave the fetch's first read.
        var seen: [TopicPartition: Int]
        /// Bytes each partition held when the fetch parked, and has grown by since.
        var base: [TopicPartition: Int64] = [:]
        var grown: [TopicPartition: Int] = [:]
        /// Partitions a commit moved since the last count, and whether a count is scheduled.
        var moved: Set<TopicPartition> = []
        var countScheduled = false
        var waiterToken: Int?
        var connectionToken: Int?
        var timeout: Scheduled<Void>?
    }

    private let request: FetchRequest
    private let minBytes: Int
    private let dispatcher: RequestDispatcher
    private let eventLoop: any EventLoop
    private let promise: EventLoopPromise<ResponseBody>
    private let allowed: NIOLoopBound<() -> Int>
    private let waiting: ConnectionWaits?
    private let state: Locked<State>

    private init(
        _ request: FetchRequest, seen: [TopicPartition: Int], minBytes: Int, dispatcher: RequestDispatcher, on eventLoop: any EventLoop,
        responseBytesAllowed: @escaping () -> Int, waiting: ConnectionWaits?
    ) {
        self.request = request
        self.waiting = waiting
        self.minBytes = minBytes
        self.dispatcher = dispatcher
        self.eventLoop = eventLoop
        promise = eventLoop.makePromise(of: ResponseBody.self)
        allowed = NIOLoopBound(responseBytesAllowed, eventLoop: eventLoop)
        state = Locked(State(seen: seen))
    }

    /// Parks `request` (on its connection's event loop) until `minBytes` are there, its
    /// deadline, or its connection goes.
    static func park(
        _ request: FetchRequest, seen: [TopicPartition: Int], minBytes: Int, dispatcher: RequestDispatcher, on eventLoop: any EventLoop,
        responseBytesAllowed: @escaping () -> Int, waiting: ConnectionWaits?
    ) -> EventLoopFuture<ResponseBody> {
        let fetch = ParkedFetch(request, seen: seen, minBytes: minBytes, dispatcher: dispatcher, on: eventLoop, responseBytesAllowed: responseBytesAllowed, waiting: waiting)
        let partitions = request.topics.flatMap { topic in topic.entries.map { TopicPartition(topic: topic.topic, partition: $0.partition) } }
        let waiterToken = dispatcher.waiters.add(partitions) { moved in fetch.moved(moved) }
        // After registering: a commit from now on wakes it, and counts from these.
        var base: [TopicPartition: Int64] = [:]
        for partition in partitions { base[partition] = (try? dispatcher.storage.offsets(topic: partition.topic, partition: partition.partition))?.bytes }
        fetch.state.withLock { $0.base = base }
        let registration = waiting?.add(cancel: { fetch.cancel() }, answerNow: { eventLoop.execute { fetch.finish(force: true) } })
        var connectionToken: Int?
        switch registration {
        case .waiting(let token)?, .answerNow(let token)?: connectionToken = token
        case .gone?, nil: connectionToken = nil
        }
        let timeout = eventLoop.scheduleTask(in: .milliseconds(waitMs(request))) { fetch.finish(force: true) }
        let cancelled = fetch.state.withLock { state in
            state.waiterToken = waiterToken
            state.connectionToken = connectionToken
            state.timeout = timeout
            return state.done
        }
        if cancelled {
            // Cancelled while registering: leave what it registered with.
            dispatcher.waiters.remove(waiterToken)
            timeout.cancel()
        } else if registration == .gone {
            // The connection went before the fetch could register with it.
            fetch.cancel()
        } else if case .answerNow? = registration {
            // The broker is stopping: a fetch read while draining does not wait.
            eventLoop.execute { fetch.finish(force: true) }
        }
        return fetch.promise.futureResult
    }

    /// How long `request` may wait: its `max wait ms`, at most `Limits.fetchWaitMsMax`.
    static func waitMs(_ request: FetchRequest) -> Int64 { Int64(max(0, min(request.maxWaitMs, Limits.fetchWaitMsMax))) }

    /// On the writer thread: a commit moved these partitions' ends.
    private func moved(_ partitions: Set<TopicPartition>) {
        let schedule = state.withLock { state -> Bool in
            guard !state.done else { return false }
            state.moved.formUnion(partitions)
            defer { state.countScheduled = true }
            return !state.countScheduled
        }
        if schedule { eventLoop.execute { self.count() } }
    }

    /// On the event loop: how much the moved partitions have grown (their byte counts, no
    /// record read); answers once the bytes seen and grown reach `min bytes`.
    private func count() {
        let moved = state.withLock { state -> Set<TopicPartition> in
            state.countScheduled = false
            defer { state.moved = [] }
            return state.done ? [] : state.moved
        }
        guard !moved.isEmpty else { return }
        var now: [TopicPartition: Int64] = [:]
        for partition in moved {
            now[partition] = (try? dispatcher.storage.offsets(topic: partition.topic, partition: partition.partition))?.bytes
        }
        let total = state.withLock { state -> Int in
            for (partition, bytes) in now {
                guard let base = state.base[partition] else { continue }
                state.grown[partition] = Int(clamping: max(0, bytes - base))
            }
            return state.seen.values.reduce(0, +) + state.grown.values.reduce(0, +)
        }
        if total >= minBytes { finish(force: false) }
    }

    /// On the event loop: reads the answer; gives it unless it is short of `min bytes` and
    /// the deadline has not come (`force`).
    private func finish(force: Bool) {
        guard !state.withLock({ $0.done }) else { return }
        let (results, bytes, counts) = dispatcher.readAll(request, allowed: allowed.value())
        if !force && bytes < minBytes {
            // Less than counted (the room left shrank, or retention took some): wait on,
            // counting again from what this read found.
            let base = state.withLock { $0.base }
            var now: [TopicPartition: Int64] = [:]
            for partition in base.keys {
                now[partition] = (try? dispatcher.storage.offsets(topic: partition.topic, partition: partition.partition))?.bytes
            }
            state.withLock { state in
                state.seen = RequestDispatcher.bytesByPartition(results)
                state.base = now
                state.grown = [:]
            }
            return
        }
        guard end() else { return }
        dispatcher.countFetched(counts)
        promise.succeed(.fetch(results))
    }

    /// The connection went: no answer is wanted; the fetch leaves the waiters at once.
    func cancel() {
        guard end() else { return }
        promise.succeed(.fetch([]))
    }

    /// Marks the fetch done (false if it was) and leaves the waiters, the connection and the timer.
    private func end() -> Bool {
        let taken = state.withLock { state -> (Int?, Int?, Scheduled<Void>?)? in
            guard !state.done else { return nil }
            state.done = true
            defer {
                state.waiterToken = nil
                state.connectionToken = nil
                state.timeout = nil
            }
            return (state.waiterToken, state.connectionToken, state.timeout)
        }
        guard let (waiterToken, connectionToken, timeout) = taken else { return false }
        if let waiterToken { dispatcher.waiters.remove(waiterToken) }
        timeout?.cancel()
        if let connectionToken { waiting?.remove(connectionToken) }
        return true
    }
}
