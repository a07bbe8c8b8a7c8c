import Testing
import TwinCore
@testable import TwinApp

/// Conflation: a subscriber that does not read holds one entry per device, never a queue.
@Suite struct BusTests {
    @Test func slowSubscriberGetsLatestPerDeviceWithSkipCounts() throws {
        let bus = UpdateBus()
        bus.registryChanged(identities: [("a", "pump"), ("b", "fan"), ("c", "pump")])
        let all = try bus.subscribe(filter: .init(), heartbeat: Time.minute, now: 0)
        let pumps = try bus.subscribe(filter: .init(types: ["pump"]), heartbeat: Time.minute, now: 0)
        for _ in 0..<1000 { bus.publish([0, 1, 2]) }
        guard case .updates(let taken) = all.take(now: 1) else {
            Issue.record("expected updates")
            return
        }
        #expect(taken.map(\.device).sorted() == [0, 1, 2])
        #expect(taken.allSatisfy { $0.skipped == 999 })
        guard case .updates(let pumpUpdates) = pumps.take(now: 1) else {
            Issue.record("expected updates")
            return
        }
        #expect(pumpUpdates.map(\.device).sorted() == [0, 2])
        guard case .nothing = all.take(now: 2) else {
            Issue.record("nothing should be pending after a take")
            return
        }
    }

    /// Found by the libFuzzer harness (scripts/fuzz): a device changing type (or a new device)
    /// while a filtered subscriber has marks pending trapped twind with an index out of range.
    @Test func aTypeChangeUnderAFilteredSubscriberIsReEvaluatedNotACrash() throws {
        let bus = UpdateBus()
        bus.registryChanged(identities: [("a", "pump"), ("b", "fan")])
        let pumps = try bus.subscribe(filter: .init(types: ["pump"]), heartbeat: Time.minute, now: 0)
        bus.publish([0, 1])
        // b becomes a pump (same number of devices): the filter is evaluated again.
        bus.registryChanged(identities: [("a", "pump"), ("b", "pump")])
        bus.publish([1])
        // And c arrives.
        bus.registryChanged(identities: [("a", "pump"), ("b", "pump"), ("c", "pump")])
        bus.publish([2])
        guard case .updates(let taken) = pumps.take(now: 1) else {
            Issue.record("expected updates")
            return
        }
        #expect(taken.map(\.device).sorted() == [0, 1, 2])
    }

    @Test func shutdownClosesAndRefusesNewSubscribers() throws {
        let bus = UpdateBus()
        let sub = try bus.subscribe(filter: .init(), heartbeat: Time.minute, now: 0)
        bus.shutdown()
        #expect(sub.closeReason == .shuttingDown)
        #expect(throws: TwinError.self) { try bus.subscribe(filter: .init(), heartbeat: Time.minute, now: 0) }
    }

    @Test func heartbeatIsDueAfterTheInterval() throws {
        let bus = UpdateBus()
        let sub = try bus.subscribe(filter: .init(), heartbeat: Time.second, now: 0)
        bus.heartbeat(now: Time.second / 2)
        guard case .nothing = sub.take(now: Time.second / 2) else {
            Issue.record("no heartbeat before the interval")
            return
        }
        bus.heartbeat(now: Time.second)
        guard case .heartbeat = sub.take(now: Time.second) else {
            Issue.record("heartbeat due")
            return
        }
    }

    /// Alerts reach only subscribers whose filter matches the device, come before device
    /// updates, and a subscriber that never reads keeps at most `alertBacklog` of them (newest).
    @Test func alertsFollowTheFilterAndTheirBacklogIsBounded() throws {
        let bus = UpdateBus()
        bus.registryChanged(identities: [("a", "pump"), ("b", "fan")])
        let fans = try bus.subscribe(filter: .init(types: ["fan"]), heartbeat: Time.minute, now: 0)
        let devB = try bus.subscribe(filter: .init(deviceIDs: ["b"]), heartbeat: Time.minute, now: 0)
        let pumps = try bus.subscribe(filter: .init(types: ["pump"]), heartbeat: Time.minute, now: 0)
        bus.publish([1])
        let total = UpdateBus.Subscription.alertBacklog + 5
        bus.publishAlerts((0..<total).map { n in
            Alert(id: "al-\(n)", deviceID: "b", rule: "high", sensor: "speed", severity: .warning, message: "m", value: 1, at: Int64(n))
        })
        for sub in [fans, devB] {
            guard case .alerts(let alerts) = sub.take(now: 1) else {
                Issue.record("alerts come first")
                return
            }
            #expect(alerts.count == UpdateBus.Subscription.alertBacklog)
            #expect(alerts.first?.id == "al-5" && alerts.last?.id == "al-\(total - 1)")
            guard case .updates(let taken) = sub.take(now: 2) else {
                Issue.record("then the device update")
                return
            }
            #expect(taken.map(\.device) == [1])
        }
        guard case .nothing = pumps.take(now: 1) else {
            Issue.record("a pump subscriber hears nothing about a fan")
            return
        }
    }

    /// Taking resets the skip counts: a device published once after a take is sent unskipped.
    @Test func skipCountsStartAgainAfterATake() throws {
        let bus = UpdateBus()
        bus.registryChanged(identities: [("a", "pump")])
        let sub = try bus.subscribe(filter: .init(), heartbeat: Time.minute, now: 0)
        bus.publish([0])
        bus.publish([0])
        guard case .updates(let first) = sub.take(now: 1) else {
            Issue.record("expected updates")
            return
        }
        #expect(first.map(\.skipped) == [1])
        bus.publish([0])
        guard case .updates(let second) = sub.take(now: 2) else {
            Issue.record("expected updates")
            return
        }
        #expect(second.map(\.skipped) == [0])
    }
}
