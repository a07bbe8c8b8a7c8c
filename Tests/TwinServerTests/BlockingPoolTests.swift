import Foundation
import Testing
import TwinCore
@testable import TwinServer

@Suite struct BlockingPoolTests {
    @Test func refusesBeyondItsQueueWithResourceExhausted() async throws {
        let pool = BlockingPool(name: "test pool", workers: 1, queueLimit: 1)
        let gate = DispatchSemaphore(value: 0)
        async let first: Int = pool.run { gate.wait(); return 1 }
        // Wait (bounded) until the first job holds the worker.
        let deadline = ContinuousClock.now + .seconds(10)
        while pool.load < 1 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(1)) }
        async let second: Int = pool.run { 2 }
        while pool.load < 2 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(1)) }
        do {
            _ = try await pool.run { 3 }
            Issue.record("a third job was taken")
        } catch {
            #expect(error.code == .resourceExhausted && error.reason == .serverBusy && error.retryAfter != nil)
        }
        gate.signal()
        #expect(try await first == 1)
        #expect(try await second == 2)
        #expect(pool.load == 0)
    }
}
