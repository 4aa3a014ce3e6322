import TestSupport
import Testing

/// `eventually` with a poller kept waiting. In a full run the suites beside a test block the
/// cooperative pool's threads: a poller that got no thread for its 60 s was told "no", though
/// what it waited for had long happened (HTTPListenerTests).
@Suite struct EventuallyTests {
    @Test func aPollerKeptWaitingPastTheLimitLooksAgainBeforeAnswering() async throws {
        var looks = 0
        let held = try await eventually(limitSeconds: 0.01) {
            looks += 1
            guard looks > 1 else {
                // Away for longer than the whole limit, as a task is while no thread is free for it.
                try await Task.sleep(nanoseconds: 50_000_000)
                return false
            }
            return true
        }
        #expect(held)
        #expect(looks == 2)
    }

    @Test func aConditionThatNeverHoldsIsAnsweredNoAfterItsLooks() async throws {
        var looks = 0
        #expect(try await !eventually(limitSeconds: 0.05) { looks += 1; return false })
        #expect(looks == 10)
    }
}
