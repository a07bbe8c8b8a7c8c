import Testing
import TwinApp
import TwinCore

/// When access tokens stop being good before they expire, as a policy: a test clock, no daemon.
@Suite struct SessionRulesTests {
    let clock = ManualClock()
    var rules: SessionRules { SessionRules(clock: clock, accessTTL: 15 * Time.minute) }

    func token(_ user: String = "olga", session: String? = "s1", id: String = "t1", issuedAgo: Nanos = Time.minute) -> SessionRules.Token {
        let now = clock.now()
        return .init(username: user, issuedAt: now - issuedAgo, expiresAt: now - issuedAgo + 15 * Time.minute, session: session, tokenID: id)
    }

    func reason(_ body: () throws -> Void) -> TwinError.Reason? {
        do { try body(); return nil } catch { return (error as? TwinError)?.reason ?? .notFound }
    }

    @Test func aLoggedOutSessionIsRefusedAtOnceAndOnlyIt() {
        let rules = self.rules
        let mine = token(session: "s1"), other = token(session: "s2", id: "t2")
        #expect(reason { try rules.recheck(mine) } == nil)
        rules.end(sessions: ["s1"])
        #expect(reason { try rules.recheck(mine) } == .sessionEnded)
        #expect(reason { try rules.recheck(other) } == nil)
        // A token from before sessions were named ends on its own id.
        let unnamed = token(session: nil, id: "t3")
        rules.end(sessions: [SessionRules.tokenKey("t3")])
        #expect(reason { try rules.checkNotRevoked(unnamed) } == .sessionEnded)
    }

    @Test func anAccountChangeRefusesTokensIssuedBeforeItNotAfter() {
        let rules = self.rules
        let before = token("olga")
        let someoneElse = token("ivan")
        clock.advance(by: Time.second)
        let cutoff = rules.endAccount("olga")
        #expect(cutoff == clock.now())
        #expect(reason { try rules.recheck(before) } == .sessionEnded)
        #expect(reason { try rules.recheck(someoneElse) } == nil)
        clock.advance(by: Time.second)
        #expect(reason { try rules.recheck(token("olga", issuedAgo: 0)) } == nil)
    }

    @Test func cutOffsSavedBeforeARestartStillHold() {
        let old = token("olga")
        let restarted = SessionRules(clock: clock, accessTTL: 15 * Time.minute, cutoffs: ["olga": clock.now()])
        #expect(reason { try restarted.recheck(old) } == .sessionEnded)
    }

    @Test func anExpiredTokenIsRefusedByRecheck() {
        let rules = self.rules
        let t = token(issuedAgo: 0)
        clock.advance(by: 15 * Time.minute - 1)
        #expect(reason { try rules.recheck(t) } == nil)
        clock.advance(by: 1)
        #expect(reason { try rules.recheck(t) } == .tokenExpired)
    }

    @Test func endedSessionsAreForgottenAfterATokenLifetime() {
        let rules = self.rules
        rules.end(sessions: ["a", "b"])
        #expect(rules.endedCount == 2)
        clock.advance(by: 15 * Time.minute + 1)
        rules.end(sessions: ["c"])
        #expect(rules.endedCount == 1)
    }

    @Test func changesWakeOpenStreamsOnce() async {
        let rules = self.rules
        let changes = rules.changed.subscribe()
        #expect(rules.changed.count == 1)
        rules.end(sessions: ["s1"])
        rules.endAccount("olga")
        var iterator = changes.makeAsyncIterator()
        // Two changes before the stream looked: one wake-up is waiting, and the stream checks again.
        #expect(await iterator.next() != nil)
    }
}
