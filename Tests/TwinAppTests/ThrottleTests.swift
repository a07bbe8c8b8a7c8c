import Testing
import TwinApp
import TwinCore

/// The password-check throttle as a policy: a test clock, no daemon.
@Suite struct ThrottleTests {
    let start: Nanos = 1_800_000_000 * Time.second

    func attempt(_ t: LoginThrottle, _ user: String, _ address: String, at now: Nanos) -> Bool {
        do { try t.begin(username: user, address: address, now: now); return true } catch { return false }
    }

    @Test func fiveFreeThenWaitsPerAccountAndAddress() {
        let t = LoginThrottle(firstLockout: Time.second)
        for i in 0..<5 { #expect(attempt(t, "admin", "10.0.0.1", at: start + Nanos(i))) }
        #expect(!attempt(t, "admin", "10.0.0.1", at: start + 10))
        // The real admin, from another address, is not locked out by the attacker.
        #expect(attempt(t, "admin", "10.0.0.2", at: start + 11))
        // After the wait, one more try.
        #expect(attempt(t, "admin", "10.0.0.1", at: start + 2 * Time.second))
        #expect(!attempt(t, "admin", "10.0.0.1", at: start + 2 * Time.second + 1))
    }

    @Test func theCountsSurviveARestart() {
        let before = LoginThrottle(firstLockout: Time.minute)
        for i in 0..<5 { #expect(attempt(before, "admin", "10.0.0.1", at: start + Nanos(i))) }
        let v = before.version
        let saved = before.snapshot(now: start + 10)
        #expect(saved.version == v && saved.entries.count == 3)
        // A new process: the saved counts come back and the lockout holds.
        let after = LoginThrottle(firstLockout: Time.minute)
        after.load(saved.entries, now: start + Time.second)
        #expect(!attempt(after, "admin", "10.0.0.1", at: start + Time.second))
        // Past the window, saved records are dropped rather than loaded.
        let late = LoginThrottle(firstLockout: Time.minute)
        late.load(saved.entries, now: start + LoginThrottle.window + Time.second)
        #expect(late.count == 0)
        // Records from the future (a clock set back) or with foreign keys are not taken.
        let odd = LoginThrottle()
        odd.load([.init(key: "p:x|1.2.3.4", failures: 9, last: start + Time.day), .init(key: "zz", failures: 9, last: start)], now: start)
        #expect(odd.count == 0)
    }

    @Test func aBurstIsCountedBeforeAnyPasswordIsChecked() {
        // Six attempts "at once" (none has finished verifying): the sixth is refused.
        let t = LoginThrottle(firstLockout: Time.minute)
        let results = (0..<6).map { _ in attempt(t, "admin", "10.0.0.1", at: start) }
        #expect(results == [true, true, true, true, true, false])
    }

    @Test func anotherAccountsSuccessDoesNotClearTheAddress() {
        // Spraying: 20 guesses over 8 accounts, with a login to the attacker's own account
        // between bursts of four; the address limit still stops the 21st guess.
        let t = LoginThrottle(firstLockout: Time.minute)
        var now = start
        var guesses = 0
        var refused = false
        for round in 0..<10 {
            for a in 0..<4 {
                now += Time.second
                if attempt(t, "user\((round * 4 + a) % 8)", "10.0.0.9", at: now) { guesses += 1 } else { refused = true }
            }
            now += Time.second
            // Its own logins succeed until the address is held (then they wait too).
            if attempt(t, "mallory", "10.0.0.9", at: now) { t.succeeded(username: "mallory", address: "10.0.0.9") } else { #expect(guesses == 20) }
        }
        #expect(refused && guesses == 20)
    }

    @Test func ipv6CountsByItsSlash64() {
        #expect(LoginThrottle.addressKey("2001:db8:1:2::1") == LoginThrottle.addressKey("2001:db8:1:2:ffff::9"))
        #expect(LoginThrottle.addressKey("2001:db8:1:2::1") != LoginThrottle.addressKey("2001:db8:1:3::1"))
        let t = LoginThrottle(firstLockout: Time.minute)
        var now = start
        for i in 0..<20 {
            now += 1
            #expect(attempt(t, "u\(i)", "2001:db8:1:2::\(i + 1)", at: now))
        }
        #expect(!attempt(t, "u99", "2001:db8:1:2::abcd", at: now + 1))
        #expect(attempt(t, "u99", "2001:db8:9:9::1", at: now + 1))
    }

    @Test func theTableIsBounded() {
        let t = LoginThrottle(firstLockout: Time.second)
        var now = start
        for i in 0..<(LoginThrottle.maxEntries / 3 + 100) {
            now += Time.millisecond
            _ = attempt(t, "u\(i)", "10.\(i >> 16 & 255).\(i >> 8 & 255).\(i & 255)", at: now)
        }
        #expect(t.count <= LoginThrottle.maxEntries)
    }

    @Test func unlockClearsTheAccountFromEveryAddress() {
        let t = LoginThrottle(firstLockout: Time.minute)
        for a in ["10.0.0.1", "10.0.0.2"] { for _ in 0..<6 { _ = attempt(t, "admin", a, at: start) } }
        t.unlock(username: "admin")
        #expect(attempt(t, "admin", "10.0.0.1", at: start + 1) && attempt(t, "admin", "10.0.0.2", at: start + 1))
    }
}

/// The blocking pool: bounded, and refuses beyond its queue.
