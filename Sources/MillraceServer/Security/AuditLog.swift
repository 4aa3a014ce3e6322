import Dispatch
import Logging
import MillraceFormat
import MillraceSchema
import MillraceSecurity
import MillraceStorage
import MillraceWire

/// Who did what (docs/SECURITY.md, "What is logged"): every administrative change and every
/// refused request, as one JSON record each in the internal topic `_audit` (appended by the
/// broker alone; read by auditors and administrators) and as a line in the broker's log.
///
/// Records are gathered and appended as one batch a moment after the first of them, so a
/// flood of refusals costs one disk sync per batch, not per refusal; at most `pendingMax`
/// wait, and past that they are counted and the count is logged (never unbounded memory).
final class AuditLog: Sendable {
    static let topic = "_audit"
    static let pendingMax = 10_000
    static let batchRecordsMax = 1_000

    struct Event: Sendable, Equatable {
        var timeMs: Int64
        var principal: String
        var authentication: String
        var peer: String
        var operation: String
        var resource: String
        /// "ok", or the error's name ("not_authorized", …).
        var result: String
        var detail: String

        /// One JSON object; keys sorted, as `millrace audit --json` prints it.
        var json: [UInt8] {
            let fields: [(String, String)] = [
                ("authentication", authentication), ("detail", detail), ("operation", operation), ("peer", peer), ("principal", principal), ("resource", resource),
                ("result", result),
            ]
            let members = fields.map { "\"\($0.0)\":" + JSONValue.quote($0.1) } + ["\"time_ms\":\(timeMs)"]
            return Array(("{" + members.joined(separator: ",") + "}").utf8)
        }
    }

    /// Refusals recorded one by one per principal and peer address: a burst of 50, then 10 a
    /// second; beyond that they are counted, and the next one recorded says how many were
    /// (a peer asking for 1,000 forbidden topics a time must not fill the disk).
    static let refusalBurst = 50.0
    static let refusalsPerSecond = 10.0

    private struct Budget {
        var tokens: Double
        var atMs: Int64
        var suppressed: Int
    }

    private struct State {
        var budgets: [String: Budget] = [:]
        var pending: [(event: Event, then: (@Sendable () -> Void)?)] = []
        var flushScheduled = false
        var dropped = 0
        /// Appends under way, with the callers waiting for them (`flush()`).
        var appending = 0
        var waiters: [@Sendable () -> Void] = []
    }

    private let storage: Storage
    private let clock: any MillraceClock
    private let logger: Logger
    private let logLimiter: LogLimiter
    private let state = Locked(State())
    private let queue = DispatchQueue(label: "millrace.audit")

    init(storage: Storage, clock: any MillraceClock, logger: Logger, logLimiter: LogLimiter) {
        self.storage = storage
        self.clock = clock
        self.logger = logger
        self.logLimiter = logLimiter
    }

    /// Makes the topic when the data directory has none (one partition, kept forever).
    func prepare() async throws {
        guard storage.topicInfo(Self.topic) == nil else { return }
        do {
            _ = try await storage.createTopic(Self.topic, partitions: 1, config: TopicConfig())
        } catch let error as MillraceError where error.code == .topicAlreadyExists {}
    }

    /// Records one event: in the log at once (a refusal rate-limited, as a peer can cause any
    /// number), in `_audit` with the next batch. `then` runs once the record is durable (or
    /// was not written: counted past the budget, or the storage failed): the broker answers
    /// a change or a refusal only then, so a crash cannot lose the record of what a client was
    /// told.
    func record(
        principal: Principal, peer: String, operation: String, resource: String, result: String, detail: String = "", then: (@Sendable () -> Void)? = nil
    ) {
        let now = clock.nowMilliseconds()
        var detail = detail
        if result != "ok" {
            // The budget is per principal and address (a peer's port changes with each connection).
            let key = principal.name + " " + (peer.split(separator: ":").dropLast().joined(separator: ":"))
            let suppressed = state.withLock { state -> Int? in
                var budget = state.budgets[key] ?? Budget(tokens: Self.refusalBurst, atMs: now, suppressed: 0)
                budget.tokens = min(Self.refusalBurst, budget.tokens + Double(now - budget.atMs) / 1_000 * Self.refusalsPerSecond)
                budget.atMs = now
                guard budget.tokens >= 1 else {
                    budget.suppressed += 1
                    state.budgets[key] = budget
                    return nil
                }
                budget.tokens -= 1
                let held = budget.suppressed
                budget.suppressed = 0
                state.budgets[key] = budget
                if state.budgets.count > Self.pendingMax { state.budgets = state.budgets.filter { $0.value.suppressed > 0 || $0.value.tokens < Self.refusalBurst } }
                return held
            }
            guard let suppressed else {
                then?()
                return
            }
            if suppressed > 0 { detail += (detail.isEmpty ? "" : "; ") + "\(suppressed) more refusals of this principal from this address before this one were counted, not recorded one by one" }
        }
        let event = Event(
            timeMs: now, principal: principal.name, authentication: principal.authentication.rawValue, peer: peer, operation: operation,
            resource: resource, result: result, detail: detail)
        let line = "audit: \(event.principal) from \(peer): \(operation) \(resource): \(result)\(detail.isEmpty ? "" : " (\(detail))")"
        if result == "ok" {
            logger.notice("\(LogText.printable(line, max: 2_048))")
        } else if let held = logLimiter.allow("audit-refusal " + principal.name) {
            logger.notice("\(LogText.printable(line, max: 2_048))\(held)")
        }
        let (queued, schedule) = state.withLock { state -> (Bool, Bool) in
            guard state.pending.count < Self.pendingMax else {
                state.dropped += 1
                return (false, false)
            }
            state.pending.append((event, then))
            defer { state.flushScheduled = true }
            return (true, !state.flushScheduled)
        }
        guard queued else {
            then?()
            return
        }
        // Waiting callers: a short gather, so a burst shares one sync; none: a longer one.
        if schedule { queue.asyncAfter(deadline: .now() + .milliseconds(then == nil ? 50 : 2)) { [self] in appendPending() } }
    }

    /// Appends what waits, a batch at a time.
    private func appendPending() {
        let (taken, dropped) = state.withLock { state -> ([(event: Event, then: (@Sendable () -> Void)?)], Int) in
            let taken = Array(state.pending.prefix(Self.batchRecordsMax))
            state.pending.removeFirst(taken.count)
            let dropped = state.dropped
            state.dropped = 0
            if state.pending.isEmpty { state.flushScheduled = false }
            if !taken.isEmpty { state.appending += 1 }
            return (taken, dropped)
        }
        if dropped > 0 {
            logger.warning("audit: \(dropped) records were not written to \(Self.topic): more than \(Self.pendingMax) waited at once (the log lines above still name them, rate-limited)")
        }
        let events = taken.map(\.event)
        let thens = taken.compactMap(\.then)
        guard !events.isEmpty else { return finished() }
        let batch: [UInt8]
        do {
            batch = try RecordBatch(timestamp: events[0].timeMs, values: events.map(\.json), keys: events.map { Array($0.principal.utf8) }).encoded()
        } catch {
            logger.error("audit: could not encode \(events.count) records: \(error)")
            for then in thens { then() }
            return finished(more: true)
        }
        storage.append(topic: Self.topic, partition: 0, batch: batch) { [self] result in
            if case .failure(let error) = result {
                logger.error("audit: \(events.count) records could not be written to \(Self.topic): \(error.message)")
            }
            for then in thens { then() }
            finished(more: true)
        }
    }

    private func finished(more: Bool = false) {
        let (again, waiters) = state.withLock { state -> (Bool, [@Sendable () -> Void]) in
            if more { state.appending -= 1 }
            let again = !state.pending.isEmpty
            guard !again, state.appending == 0 else { return (again, []) }
            defer { state.waiters = [] }
            return (again, state.waiters)
        }
        if again { queue.async { [self] in appendPending() } }
        for waiter in waiters { waiter() }
    }

    /// Returns once every event recorded so far is in `_audit` (or failed to be); for tests
    /// and for a stopping broker.
    func flush() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in whenRecorded { continuation.resume() } }
    }

    /// Runs `then` once every event recorded so far is in `_audit` (or failed to be): for
    /// answers that must not go out before their record (a refused login).
    func whenRecorded(_ then: @escaping @Sendable () -> Void) {
        let idle = state.withLock { state -> Bool in
            guard !state.pending.isEmpty || state.appending > 0 else { return true }
            state.waiters.append(then)
            return false
        }
        if idle { return then() }
        queue.asyncAfter(deadline: .now() + .milliseconds(2)) { [self] in appendPending() }
    }
}

/// An audit record written without a broker: a change made offline to a stopped broker's data
/// directory (`millrace user create … --data-dir`), in the same topic and form.
public enum OfflineAudit {
    public static func record(storage: Storage, principal: String, operation: String, resource: String, result: String, detail: String = "") async throws {
        if storage.topicInfo(AuditLog.topic) == nil {
            do {
                _ = try await storage.createTopic(AuditLog.topic, partitions: 1, config: TopicConfig())
            } catch let error as MillraceError where error.code == .topicAlreadyExists {}
        }
        let event = AuditLog.Event(
            timeMs: SystemClock().nowMilliseconds(), principal: principal, authentication: "offline", peer: "this machine", operation: operation,
            resource: resource, result: result, detail: detail)
        _ = try await storage.append(topic: AuditLog.topic, partition: 0, batch: try RecordBatch(timestamp: event.timeMs, values: [event.json]).encoded())
    }
}
