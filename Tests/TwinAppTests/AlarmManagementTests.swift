import Logging
import Synchronization
import Testing
import TwinApp
import TwinCore
@testable import TwinEngines

/// ISA-18.2 alarm management as policies: shelving, suppression during maintenance,
/// chattering, and the report on a constructed history. In-memory store, hand-moved clock.
@Suite struct AlarmManagementTests {
    let clock = ManualClock()
    let store = MemoryAlertStore()
    let logger = Logger(label: "test")
    static let press = Device(id: "press-1", type: "press", sensors: [SensorSpec(name: "force", unit: "kN", nominalMin: 0, nominalMax: 800, alarmHigh: 950)])
    let overLimit = HealthEngine.Factor(subject: "force", description: "force 990 kN is above its alarm limit 950 kN", penalty: 60, value: 990, unit: "kN", kind: .limit)

    func subject(_ factors: [HealthEngine.Factor]) -> AlertBook.Subject {
        let levels = factors.filter { $0.kind == .limit }.map { HealthEngine.Level(sensor: $0.subject, value: $0.value ?? 0, sensorFault: false) }
        let verdict = HealthEngine.Verdict(score: 40, components: [], factors: factors, summary: HealthSummary(score: 40, headline: ""), levels: levels)
        return .init(device: Self.press, state: .running, verdict: verdict, outlook: nil)
    }

    /// Opens the force alert (it must hold 30 s) and returns it.
    func open(_ book: AlertBook) throws -> Alert {
        _ = book.evaluate([subject([overLimit])])
        clock.advance(by: 30 * Time.second)
        _ = book.evaluate([subject([overLimit])])
        return try #require(book.list(devices: [], states: [.open], minimum: nil).first)
    }

    @Test func aShelvedAlertLeavesTheListAndComesBackByItself() throws {
        let book = try AlertBook(store: store, clock: clock, logger: logger)
        let alert = try open(book)
        let shelved = try book.shelve(alert.id, until: clock.now() + Time.hour, by: "ops", reason: "known, crew on it") { a in
            AuditEntry(time: a.updatedAt, action: .alertShelved, actor: "ops", peer: "", detail: a.id)
        }
        #expect(shelved.shelf?.by == "ops" && shelved.isShelved(at: clock.now()))
        #expect(store.audit.withLock { $0.map(\.kind) } == ["alert.shelved"])
        #expect(book.list(devices: [], states: [.open], minimum: nil, shelved: false).isEmpty)
        #expect(book.list(devices: [], states: [.open], minimum: nil).count == 1)
        #expect(book.escalatable().isEmpty)
        clock.advance(by: Time.hour)
        _ = book.evaluate([subject([overLimit])])
        let back = try #require(book.list(devices: [], states: [.open], minimum: nil, shelved: false).first)
        #expect(back.id == alert.id && back.shelf?.until == nil && back.shelf?.reason == "known, crew on it")
        // Unshelving one that is not shelved, or shelving a resolved one, is a conflict.
        do { _ = try book.shelve(alert.id, until: nil, by: "ops", reason: "") } catch { #expect(error.reason == .alertStateConflict) }
        _ = try book.change(alert.id, to: .resolved, by: "ops", comment: "")
        do { _ = try book.shelve(alert.id, until: clock.now() + Time.hour, by: "ops", reason: "x") } catch { #expect(error.reason == .alertStateConflict) }
    }

    @Test func maintenanceSuppressesNewAlertsAndFreezesOpenOnes() throws {
        let book = try AlertBook(store: store, clock: clock, logger: logger)
        book.suppress(device: "press-1", from: clock.now(), until: clock.now() + 4 * Time.hour)
        #expect(book.isSuppressed("press-1", at: clock.now()))
        for _ in 0..<20 {
            _ = book.evaluate([subject([overLimit])])
            clock.advance(by: 10 * Time.minute)
        }
        #expect(book.list(devices: [], states: [.open, .acknowledged, .resolved], minimum: nil).isEmpty)
        // Over: the condition still holds, so the alert opens (after its hold).
        clock.advance(by: Time.hour)
        #expect(!book.isSuppressed("press-1", at: clock.now()))
        let alert = try open(book)
        // A second maintenance: the open alert is neither updated nor resolved meanwhile.
        book.suppress(device: "press-1", from: clock.now(), until: clock.now() + Time.hour)
        for _ in 0..<5 {
            clock.advance(by: 10 * Time.minute)
            _ = book.evaluate([subject([])])
        }
        #expect(book.list(devices: [], states: [.open], minimum: nil).map(\.id) == [alert.id])
    }

    @Test func anAlertThatKeepsComingBackIsOneAlertMarkedChattering() throws {
        var options = AlertBook.Options()
        options.clearFor = Time.minute
        let book = try AlertBook(store: store, options: options, clock: clock, logger: logger)
        let first = try open(book)
        for _ in 0..<3 {
            // Clear for a minute: resolved; back within 10 minutes: the same alert reopens.
            _ = book.evaluate([subject([])])
            clock.advance(by: Time.minute)
            _ = book.evaluate([subject([])])
            #expect(book.list(devices: [], states: [.resolved], minimum: nil).count == 1)
            clock.advance(by: 2 * Time.minute)
            _ = try open(book)
        }
        let all = book.list(devices: [], states: [.open, .acknowledged, .resolved], minimum: nil)
        #expect(all.map(\.id) == [first.id])
        #expect(all[0].reopened == 3 && all[0].chattering && all[0].state == .open)
        // Back after more than the chatter window: a new alert.
        _ = book.evaluate([subject([])])
        clock.advance(by: Time.minute)
        _ = book.evaluate([subject([])])
        clock.advance(by: 11 * Time.minute)
        _ = try open(book)
        #expect(book.list(devices: [], states: [.open, .acknowledged, .resolved], minimum: nil).count == 2)
    }

    @Test func theReportCountsRatesFloodsTopsStandingAndChattering() {
        let start = clock.now()
        var alerts: [Alert] = []
        func add(_ id: String, device: String, rule: String, at t: Nanos, resolved: Bool = true, reopened: UInt32? = nil) {
            var a = Alert(id: id, deviceID: device, rule: rule, sensor: "", severity: .warning, message: "m", value: nil, at: t)
            if resolved { a.state = .resolved; a.resolvedAt = t + Time.minute; a.updatedAt = t + Time.minute }
            a.reopened = reopened
            alerts.append(a)
        }
        // A flood: 12 alerts within 5 minutes at hour 2; a steady one an hour otherwise.
        for k in 0..<12 { add("f\(k)", device: "pump-\(k % 3)", rule: "flow.low", at: start + 2 * Time.hour + Nanos(k) * 25 * Time.second) }
        for h in 0..<24 where h != 2 { add("s\(h)", device: "fan-1", rule: "vibration.high", at: start + Nanos(h) * Time.hour) }
        // Standing: opened 3 days before the period's end, still open; a chattering one.
        add("old", device: "press-1", rule: "no_data", at: start + 24 * Time.hour - 3 * Time.day, resolved: false)
        add("chat", device: "press-1", rule: "force.high", at: start + 5 * Time.hour, reopened: 4)
        let r = AlertReport(alerts: alerts, from: start, to: start + 24 * Time.hour)
        #expect(r.opened == 12 + 23 + 1)
        #expect(abs(r.perHour - 36.0 / 24) < 1e-9)
        #expect(r.peak10m == 12 && r.peak10mAt == start + 2 * Time.hour)
        #expect(r.floodWindows == 1 && abs(r.floodPercent - 100.0 / 144) < 1e-9)
        #expect(r.topRules.first.map { [$0.name, "\($0.count)"] } == ["vibration.high", "23"])
        #expect(r.topDevices.map(\.name).prefix(2) == ["fan-1", "pump-0"])
        #expect(r.standing.map(\.id) == ["old"])
        #expect(r.chattering.map(\.id) == ["chat"] && r.reopened == 4)
    }
}
