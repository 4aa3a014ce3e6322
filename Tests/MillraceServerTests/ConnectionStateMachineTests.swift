import MillraceFormat
import TestSupport
import Testing

@testable import MillraceServer

/// The connection's state machine driven by scripted events, with no channel: each event's
/// actions are what the handler would carry out. Frames and responses are strings here; the
/// machine never looks inside them.
@Suite struct ConnectionStateMachineTests {
    typealias Machine = ConnectionStateMachine<String, String>

    static func budget(connectionResponse: Int = 1_000, connectionRequest: Int = 1_000, broker: Int = 10_000) -> MemoryBudget {
        MemoryBudget(
            limits: .init(
                connectionRequestBytesMax: connectionRequest, connectionResponseBytesMax: connectionResponse, requestBytesMax: broker,
                responseBytesMax: broker))
    }

    static func machine(
        inFlightMax: Int = 8, perTurn: Int = 64, memory: MemoryBudget = budget(), clock: ManualClock = ManualClock()
    ) -> Machine {
        Machine(
            configuration: .init(inFlightRequestsMax: inFlightMax, stalledWriteMs: 60_000, stalledWriteUnderPressureMs: 5_000, dispatchesPerTurn: perTurn),
            memory: memory, clock: clock, keep: { $0 + "*" })
    }

    @Test func answersGoOutInRequestOrderWhateverOrderTheyComeIn() {
        var machine = Self.machine()
        #expect(machine.frameRead("a", bytes: 10) == [.scheduleTurnEnd, .dispatch("a", sequence: 0)])
        #expect(machine.dispatched() == [])
        #expect(machine.frameRead("b", bytes: 10) == [.dispatch("b", sequence: 1)])
        #expect(machine.dispatched() == [])
        #expect(machine.frameRead("c", bytes: 10) == [.dispatch("c", sequence: 2)])
        #expect(machine.dispatched() == [])
        #expect(machine.responseReady(sequence: 2, "C", bytes: 5) == [])
        #expect(machine.responseReady(sequence: 1, "B", bytes: 5) == [])
        #expect(machine.responseReady(sequence: 0, "A", bytes: 5) == [.write("A", bytes: 5), .write("B", bytes: 5), .write("C", bytes: 5), .flush])
        #expect(machine.inFlight == 0)
    }

    @Test func pastTheInFlightLimitFramesWaitAndReadingPauses() {
        var machine = Self.machine(inFlightMax: 2)
        _ = machine.frameRead("a", bytes: 10)
        _ = machine.dispatched()
        #expect(machine.frameRead("b", bytes: 10) == [.dispatch("b", sequence: 1)])
        #expect(machine.dispatched() == [.pauseReading])
        // Read before the pause took effect: held, undecoded, in its own storage.
        #expect(machine.frameRead("c", bytes: 10) == [])
        #expect(machine.heldCount == 1)
        #expect(machine.responseReady(sequence: 0, "A", bytes: 5) == [.write("A", bytes: 5), .flush, .dispatch("c*", sequence: 2)])
        #expect(machine.dispatched() == [])
        #expect(machine.responseReady(sequence: 1, "B", bytes: 5) == [.write("B", bytes: 5), .flush, .resumeReading])
    }

    @Test func oneTurnStartsAtMostItsShareOfRequests() {
        var machine = Self.machine(perTurn: 2)
        #expect(machine.frameRead("a", bytes: 1) == [.scheduleTurnEnd, .dispatch("a", sequence: 0)])
        _ = machine.dispatched()
        #expect(machine.frameRead("b", bytes: 1) == [.dispatch("b", sequence: 1)])
        _ = machine.dispatched()
        #expect(machine.frameRead("c", bytes: 1) == [.pauseReading])
        #expect(machine.turnEnded() == [.scheduleTurnEnd, .dispatch("c*", sequence: 2)])
        #expect(machine.dispatched() == [.resumeReading])
    }

    @Test func requestAndResponseBytesCountAgainstTheSharedBudget() {
        let memory = Self.budget(connectionResponse: 100)
        var machine = Self.machine(memory: memory)
        _ = machine.frameRead("a", bytes: 40)
        _ = machine.dispatched()
        #expect(memory.usage == .init(requestBytes: 40, responseBytes: 0))
        // A response over this connection's limit: it is written, and reading pauses until the
        // socket takes it.
        #expect(machine.responseReady(sequence: 0, "A", bytes: 150) == [.write("A", bytes: 150), .flush, .pauseReading])
        #expect(memory.usage == .init(requestBytes: 0, responseBytes: 150))
        #expect(machine.fetchAllowance == 0)
        #expect(machine.writeCompleted(bytes: 150) == [.resumeReading])
        #expect(memory.usage == .init())
        #expect(machine.fetchAllowance >= 100)
    }

    @Test func pastTheBrokerLimitOnlyConnectionsHoldingBytesStop() {
        let memory = Self.budget(connectionResponse: 1_000, broker: 100)
        var flooding = Self.machine(memory: memory)
        var reading = Self.machine(memory: memory)
        _ = flooding.frameRead("a", bytes: 10)
        _ = flooding.dispatched()
        #expect(flooding.responseReady(sequence: 0, "A", bytes: 150) == [.write("A", bytes: 150), .flush, .waitForBudget, .pauseReading])
        // Another connection, holding nothing, is served.
        #expect(reading.frameRead("x", bytes: 10) == [.scheduleTurnEnd, .dispatch("x", sequence: 0)])
        #expect(reading.dispatched() == [])
        #expect(reading.responseReady(sequence: 0, "X", bytes: 10) == [.write("X", bytes: 10), .flush, .waitForBudget, .pauseReading])
        #expect(reading.writeCompleted(bytes: 10) == [.resumeReading])
        // The flooding one reads again once its bytes are gone.
        #expect(flooding.writeCompleted(bytes: 150) == [.resumeReading])
        #expect(flooding.budgetAvailable() == [])
        #expect(memory.usage == .init())
    }

    @Test func aPeerThatNeverReadsIsClosedAfterTheStalledWriteLimit() {
        let clock = ManualClock()
        let memory = Self.budget()
        var machine = Self.machine(memory: memory, clock: clock)
        _ = machine.frameRead("a", bytes: 10)
        _ = machine.dispatched()
        _ = machine.responseReady(sequence: 0, "A", bytes: 300)
        clock.advance(by: .seconds(59))
        #expect(machine.tick(idleMs: 600_000, underPressure: false) == [])
        clock.advance(by: .seconds(2))
        #expect(machine.tick(idleMs: 600_000, underPressure: false) == [.close(.stalledWrite(bytes: 300, stalledMs: 61_000, underPressure: false))])
        #expect(machine.state == .closing)
        #expect(machine.tick(idleMs: 600_000, underPressure: false) == [])
        #expect(machine.channelInactive() == [.cancelWaiting])
        // The write handed to the channel fails and gives its bytes back.
        #expect(machine.writeCompleted(bytes: 300) == [])
        #expect(memory.usage == .init())
    }

    @Test func underMemoryPressureTheShorterStalledLimitApplies() {
        let clock = ManualClock()
        var machine = Self.machine(clock: clock)
        _ = machine.frameRead("a", bytes: 10)
        _ = machine.dispatched()
        _ = machine.responseReady(sequence: 0, "A", bytes: 300)
        clock.advance(by: .seconds(6))
        #expect(machine.tick(idleMs: 600_000, underPressure: false) == [])
        #expect(machine.tick(idleMs: 600_000, underPressure: true) == [.close(.stalledWrite(bytes: 300, stalledMs: 6_000, underPressure: true))])
    }

    @Test func writeProgressKeepsAStalledCheckAway() {
        let clock = ManualClock()
        var machine = Self.machine(clock: clock)
        _ = machine.frameRead("a", bytes: 10)
        _ = machine.dispatched()
        _ = machine.responseReady(sequence: 0, "A", bytes: 300)
        _ = machine.frameRead("b", bytes: 10)
        _ = machine.dispatched()
        _ = machine.responseReady(sequence: 1, "B", bytes: 300)
        clock.advance(by: .seconds(50))
        _ = machine.writeCompleted(bytes: 300)
        clock.advance(by: .seconds(50))
        #expect(machine.tick(idleMs: 600_000, underPressure: false) == [])
    }

    @Test func anIdleConnectionIsClosedButNotOneWithARequestInFlight() {
        let clock = ManualClock()
        var machine = Self.machine(clock: clock)
        _ = machine.frameRead("a", bytes: 10)
        _ = machine.dispatched()
        clock.advance(by: .seconds(700))
        // A long poll in flight is not idleness.
        #expect(machine.tick(idleMs: 600_000, underPressure: false) == [])
        _ = machine.responseReady(sequence: 0, "A", bytes: 10)
        _ = machine.writeCompleted(bytes: 10)
        clock.advance(by: .seconds(600))
        #expect(machine.tick(idleMs: 600_000, underPressure: false) == [])
        clock.advance(by: .seconds(1))
        #expect(machine.tick(idleMs: 600_000, underPressure: false) == [.close(.idle(idleMs: 601_000))])
    }

    @Test func closingGivesBackTheBytesOfRequestsStillWaitingAtOnce() {
        let memory = Self.budget()
        var machine = Self.machine(inFlightMax: 2, memory: memory)
        _ = machine.frameRead("fetch", bytes: 60)
        _ = machine.dispatched()
        _ = machine.frameRead("fetch2", bytes: 70)
        _ = machine.dispatched()
        _ = machine.frameRead("held", bytes: 80)
        #expect(memory.usage.requestBytes == 210)
        #expect(machine.channelInactive() == [.cancelWaiting])
        #expect(memory.usage == .init())
        #expect(machine.inFlight == 0)
        // The cancelled long polls answer into the closed connection: dropped, nothing counted twice.
        #expect(machine.responseReady(sequence: 0, "", bytes: 0) == [])
        #expect(machine.responseReady(sequence: 1, "", bytes: 0) == [])
        #expect(memory.usage == .init())
        #expect(machine.channelInactive() == [])
    }

    @Test func drainAnswersEverythingReadThenEndsTheOutput() {
        var machine = Self.machine(inFlightMax: 1)
        _ = machine.frameRead("a", bytes: 10)
        #expect(machine.dispatched() == [.pauseReading])
        _ = machine.frameRead("b", bytes: 10)
        // Held past the limit; draining dispatches it anyway.
        #expect(machine.drain() == [.answerWaiting, .dispatch("b*", sequence: 1)])
        #expect(machine.dispatched() == [])
        #expect(machine.drain() == [])
        #expect(machine.responseReady(sequence: 0, "A", bytes: 5) == [.write("A", bytes: 5), .flush])
        #expect(machine.responseReady(sequence: 1, "B", bytes: 5) == [.write("B", bytes: 5), .flush, .closeOutput])
        #expect(machine.state == .drained)
        #expect(machine.frameRead("late", bytes: 10) == [])
    }

    @Test func drainWithNothingInFlightEndsTheOutputAtOnce() {
        var machine = Self.machine()
        #expect(machine.drain() == [.answerWaiting, .pauseReading, .closeOutput])
    }

    @Test func aProtocolErrorIsAnsweredAfterTheRequestsBeforeItThenCloses() {
        let memory = Self.budget()
        var machine = Self.machine(memory: memory)
        _ = machine.frameRead("a", bytes: 10)
        _ = machine.dispatched()
        _ = machine.frameRead("bad", bytes: 10)
        #expect(machine.responseReady(sequence: 1, "E", bytes: 5, thenClose: true) == [])
        #expect(machine.dispatched() == [.pauseReading])
        #expect(machine.frameRead("after", bytes: 10) == [])
        #expect(machine.responseReady(sequence: 0, "A", bytes: 5) == [.write("A", bytes: 5), .write("E", bytes: 5), .flush, .close(.protocolError)])
        #expect(machine.state == .closing)
        #expect(machine.channelInactive() == [.cancelWaiting])
        _ = machine.writeCompleted(bytes: 10)
        #expect(memory.usage == .init())
    }

    @Test func anUnusableStreamIsAnsweredOnceWithNoRequestBytes() {
        var machine = Self.machine()
        #expect(machine.frameRead("unusable", bytes: 0) == [.scheduleTurnEnd, .dispatch("unusable", sequence: 0)])
        #expect(machine.responseReady(sequence: 0, "E", bytes: 5, thenClose: true) == [.write("E", bytes: 5), .flush, .close(.protocolError)])
        #expect(machine.dispatched() == [])
    }

    @Test func aWriteBufferThatIsFullPausesReading() {
        var machine = Self.machine()
        #expect(machine.writabilityChanged(isWritable: false) == [.pauseReading])
        #expect(machine.frameRead("a", bytes: 10) == [.scheduleTurnEnd, .dispatch("a", sequence: 0)])
        #expect(machine.dispatched() == [])
        #expect(machine.writabilityChanged(isWritable: true) == [.resumeReading])
    }

    /// Once closed, closing or drained, no event makes the machine read, dispatch or write.
    @Test func everyEventAfterTheEndDoesNothing() {
        func ended(_ end: (inout Machine) -> Void) -> Machine {
            var machine = Self.machine()
            _ = machine.frameRead("a", bytes: 10)
            _ = machine.dispatched()
            _ = machine.responseReady(sequence: 0, "A", bytes: 5)
            end(&machine)
            return machine
        }
        let machines: [(String, Machine)] = [
            ("closed", ended { _ = $0.channelInactive() }),
            ("closing", ended { _ = $0.tick(idleMs: -1, underPressure: false) }),
        ]
        for (name, var machine) in machines {
            #expect(machine.frameRead("b", bytes: 10) == [], "\(name)")
            #expect(machine.dispatched() == [], "\(name)")
            #expect(machine.responseReady(sequence: 1, "B", bytes: 5) == [], "\(name)")
            #expect(machine.writeCompleted(bytes: 0) == [], "\(name)")
            #expect(machine.writabilityChanged(isWritable: false) == [], "\(name)")
            #expect(machine.turnEnded() == [], "\(name)")
            #expect(machine.budgetAvailable() == [], "\(name)")
            #expect(machine.drain() == [], "\(name)")
            #expect(machine.tick(idleMs: -1, underPressure: true) == [], "\(name)")
            #expect(machine.isAnswering == false, "\(name)")
        }
    }

    /// Drained: every event but the tick does nothing (an idle drained connection is closed).
    @Test func everyEventWhenDrainedDoesNothingButTheTick() {
        let clock = ManualClock()
        var machine = Self.machine(clock: clock)
        #expect(machine.drain() == [.answerWaiting, .pauseReading, .closeOutput])
        #expect(machine.frameRead("late", bytes: 10) == [])
        #expect(machine.dispatched() == [])
        #expect(machine.responseReady(sequence: 0, "A", bytes: 5) == [])
        #expect(machine.writeCompleted(bytes: 0) == [])
        #expect(machine.writabilityChanged(isWritable: false) == [])
        #expect(machine.turnEnded() == [])
        #expect(machine.budgetAvailable() == [])
        #expect(machine.drain() == [])
        #expect(machine.isAnswering == false)
        clock.advance(by: .seconds(601))
        #expect(machine.tick(idleMs: 600_000, underPressure: false) == [.close(.idle(idleMs: 601_000))])
        #expect(machine.channelInactive() == [.cancelWaiting])
    }

    /// Closing after a protocol error: nothing more is read or dispatched, a drain changes
    /// nothing, and the answers before the bad frame still go out.
    @Test func everyEventWhileClosingAfterAProtocolError() {
        var machine = Self.machine()
        _ = machine.frameRead("a", bytes: 10)
        _ = machine.dispatched()
        _ = machine.frameRead("bad", bytes: 10)
        _ = machine.responseReady(sequence: 1, "E", bytes: 5, thenClose: true)
        #expect(machine.dispatched() == [.pauseReading])
        #expect(machine.state == .closingAfter(sequence: 1))
        #expect(machine.frameRead("more", bytes: 10) == [])
        #expect(machine.drain() == [])
        #expect(machine.turnEnded() == [])
        #expect(machine.budgetAvailable() == [])
        #expect(machine.writabilityChanged(isWritable: true) == [])
        #expect(machine.tick(idleMs: 600_000, underPressure: false) == [])
        #expect(machine.isAnswering)
        #expect(machine.responseReady(sequence: 0, "A", bytes: 5) == [.write("A", bytes: 5), .write("E", bytes: 5), .flush, .close(.protocolError)])
    }

    /// Every event in every state, as a table: the state each leads to. Each state is reached
    /// by its own script with request 0 still unanswered (but where a state has none), and
    /// each event is applied to a fresh copy.
    @Test func everyEventInEveryStateLeadsWhereTheTableSays() {
        typealias State = Machine.State
        let states: [(String, (inout Machine) -> Void)] = [
            ("open", { machine in
                _ = machine.frameRead("a", bytes: 10)
                _ = machine.dispatched()
            }),
            ("draining", { machine in
                _ = machine.frameRead("a", bytes: 10)
                _ = machine.dispatched()
                _ = machine.drain()
            }),
            ("drained", { machine in _ = machine.drain() }),
            ("closingAfter", { machine in
                _ = machine.frameRead("a", bytes: 10)
                _ = machine.dispatched()
                _ = machine.frameRead("bad", bytes: 10)
                _ = machine.dispatched()
                _ = machine.responseReady(sequence: 1, "E", bytes: 5, thenClose: true)
            }),
            ("closing", { machine in _ = machine.tick(idleMs: -1, underPressure: false) }),
            ("closed", { machine in _ = machine.channelInactive() }),
        ]
        let events: [(String, (inout Machine) -> [Machine.Action])] = [
            ("frameRead", { $0.frameRead("b", bytes: 10) }),
            ("dispatched", { $0.dispatched() }),
            ("responseReady", { $0.responseReady(sequence: 0, "A", bytes: 5) }),
            ("writeCompleted", { $0.writeCompleted(bytes: 0) }),
            ("writabilityChanged", { $0.writabilityChanged(isWritable: false) }),
            ("turnEnded", { $0.turnEnded() }),
            ("budgetAvailable", { $0.budgetAvailable() }),
            ("tick", { $0.tick(idleMs: -1, underPressure: false) }),
            ("drain", { $0.drain() }),
            ("channelInactive", { $0.channelInactive() }),
        ]
        let same: [String: State] = [
            "open": .open, "draining": .draining, "drained": .drained, "closingAfter": .closingAfter(sequence: 1), "closing": .closing, "closed": .closed,
        ]
        // Where an event moves the machine; every other pair leaves it where it was.
        let moves: [String: State] = [
            "open tick": .open,  // a request in flight: not idle; nothing unwritten: not stalled
            "open drain": .draining,
            "open channelInactive": .closed,
            "draining responseReady": .drained,  // the last answer written: the output ends
            "draining channelInactive": .closed,
            "drained tick": .closing,  // idle, nothing in flight
            "drained channelInactive": .closed,
            "closingAfter responseReady": .closing,  // the answers before the bad frame, then its own, then close
            "closingAfter channelInactive": .closed,
            "closing channelInactive": .closed,
        ]
        // Where nothing may come out at all.
        let silent: Set<String> = ["drained", "closing", "closed"]
        for (stateName, reach) in states {
            var start = Self.machine()
            reach(&start)
            #expect(start.state == same[stateName], "\(stateName) was not reached: \(start.state)")
            for (eventName, apply) in events {
                var machine = start
                let actions = apply(&machine)
                let pair = "\(stateName) \(eventName)"
                #expect(machine.state == moves[pair] ?? same[stateName], "\(pair) led to \(machine.state)")
                let allowed: [Machine.Action] = eventName == "channelInactive" && stateName != "closed" ? [.cancelWaiting] : (stateName == "drained" && eventName == "tick" ? [.close(.idle(idleMs: 0))] : [])
                if silent.contains(stateName) { #expect(actions == allowed, "\(pair) did \(actions)") }
                if machine.state == .closed || machine.state == .closing {
                    #expect(!actions.contains { if case .dispatch = $0 { true } else { false } }, "\(pair) dispatched on its way out")
                }
            }
        }
    }

    /// A seeded random script of every event: the machine never answers out of order, never
    /// holds more in flight than its limit (outside a drain), and gives back every byte.
    @Test func randomScriptsKeepOrderLimitsAndTheBudget() {
        for seed in UInt64(1)...200 {
            var random = SeededGenerator(seed: seed)
            let memory = Self.budget(connectionResponse: 300, connectionRequest: 300, broker: 600)
            let clock = ManualClock()
            var machine = Self.machine(inFlightMax: 3, perTurn: 4, memory: memory, clock: clock)
            var dispatched: [Int] = []
            var unanswered: [Int] = []
            var written: [String] = []
            var handedToSocket: [Int] = []
            var outstanding = false
            func apply(_ actions: [Machine.Action]) {
                for action in actions {
                    switch action {
                    case .dispatch(_, let sequence):
                        #expect(!outstanding, "seed \(seed)")
                        outstanding = true
                        dispatched.append(sequence)
                        unanswered.append(sequence)
                    case .write(let response, let bytes):
                        written.append(response)
                        handedToSocket.append(bytes)
                    case .flush, .pauseReading, .resumeReading, .scheduleTurnEnd, .waitForBudget, .close, .closeOutput, .cancelWaiting, .answerWaiting: break
                    }
                }
            }
            for _ in 0..<200 {
                switch Int.random(in: 0..<10, using: &random) {
                case 0, 1: apply(machine.frameRead("f", bytes: Int.random(in: 0...120, using: &random)))
                case 2 where outstanding:
                    outstanding = false
                    apply(machine.dispatched())
                case 3...4 where !unanswered.isEmpty:
                    let sequence = unanswered.remove(at: Int.random(in: 0..<unanswered.count, using: &random))
                    apply(machine.responseReady(sequence: sequence, "\(sequence)", bytes: Int.random(in: 1...150, using: &random)))
                case 5 where !handedToSocket.isEmpty: apply(machine.writeCompleted(bytes: handedToSocket.removeFirst()))
                case 6: apply(machine.turnEnded())
                case 7: apply(machine.budgetAvailable())
                case 8: apply(machine.writabilityChanged(isWritable: Bool.random(using: &random)))
                case 9:
                    clock.advance(by: .seconds(Int64.random(in: 0...10, using: &random)))
                    apply(machine.tick(idleMs: 30_000, underPressure: memory.isOverBudget))
                default: break
                }
                if machine.state == .open { #expect(machine.inFlight <= 3, "seed \(seed)") }
            }
            #expect(written == written.sorted { Int($0)! < Int($1)! }, "seed \(seed): answers out of order")
            #expect(Set(written).count == written.count, "seed \(seed): an answer written twice")
            _ = machine.channelInactive()
            for bytes in handedToSocket { _ = machine.writeCompleted(bytes: bytes) }
            #expect(memory.usage == .init(), "seed \(seed): bytes kept after close")
        }
    }
}
