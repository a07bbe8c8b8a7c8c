import ArgumentParser
import Dispatch
import Foundation
import GRPCCore
import Proto
import TwinClient
import TwinCore

/// `twin watch`: the plant live. A table redrawn in place on a terminal; NDJSON otherwise.
struct Watch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Watch the plant live (StreamUpdates).",
        discussion: """
            On a terminal: a table redrawn in place, like top. Piped, or with -o json: one JSON \
            object per device update and line: {"device","type","state","time","values":{sensor: \
            value},"version","skipped"}. Reconnects with backoff if twind restarts; Ctrl-C exits.
            """)

    @OptionGroup var global: GlobalOptions
    @Option(help: "Only this device (repeatable).") var device: [String] = []
    @Option(help: "Only devices of this type (repeatable).") var type: [String] = []
    @Option(help: "Only these sensors (repeatable).") var sensor: [String] = []
    @Option(help: "Exit after this many device updates (the initial snapshot counts).") var count: Int?

    func validate() throws {
        if let count, count < 1 { throw ValidationError("--count must be at least 1") }
    }

    func run() async throws {
        let address = try global.address()
        let credentials = try global.credentials(address)
        let table = global.output == .table && Terminal.stdoutIsTTY
        let view = LiveTable(server: "\(address)")
        let signals = SignalHandler.install(table: table)
        defer { _ = signals }
        var received = 0
        var backoff = 0.5
        var request = Twin_V1_StreamUpdatesRequest()
        request.deviceIds = device
        request.types = type
        request.sensors = sensor

        while true {
            do {
                let done = try await global.connect(address, credentials: credentials) { client in
                    let twin = Twin_V1_TwinService.Client(wrapping: client)
                    if table {
                        var listing = Twin_V1_ListDevicesRequest()
                        listing.pageSize = 10_000
                        view.setDevices(try await twin.listDevices(listing).devices)
                    }
                    return try await twin.streamUpdates(request) { response in
                        var seen = 0
                        for try await message in response.messages {
                            switch message.update {
                            case .devices(let batch):
                                for update in batch.updates {
                                    seen += 1
                                    if table { view.update(update) } else { Terminal.out(Self.json(update)) }
                                    if let count, seen >= count { return (seen, true) }
                                }
                                if table { view.redraw(throttled: true) }
                            case .syncComplete:
                                if table { view.redraw(throttled: false) }
                            default:
                                break
                            }
                        }
                        return (seen, false)
                    }
                }
                received += done.0
                if done.1 { break }
                backoff = 0.5
                Terminal.err("twin: the stream ended; reconnecting")
            } catch let error as RPCError where error.twinReason == .tokenExpired {
                // The stream outlived its token: the next connection refreshes it.
                continue
            } catch let error as RPCError where error.code == .unavailable {
                let why = error.twinReason == .shuttingDown ? "twind is shutting down" : "cannot reach twind at \(address)"
                Terminal.err("twin: \(why); reconnecting in \(Format.number(backoff))s")
                try? await Task.sleep(for: .milliseconds(Int(backoff * 1000)))
                backoff = min(backoff * 2, 10)
            } catch {
                if table { Terminal.raw(LiveTable.showCursor) }
                throw fail(error, address: address)
            }
        }
        if table { Terminal.raw(LiveTable.showCursor) }
        _ = received
    }

    static func json(_ update: Twin_V1_DeviceUpdate) -> String {
        let s = update.snapshot
        var values: [String: Double] = [:]
        for v in s.values { values[v.sensor] = v.value }
        var object: [String: Any] = [
            "device": s.deviceID, "type": s.type, "state": Format.stateKey(s.state), "values": values,
            "version": s.version, "skipped": update.skipped,
        ]
        let stale = s.values.filter(\.stale).map(\.sensor)
        if !stale.isEmpty { object["stale"] = stale }
        if s.hasTime { object["time"] = Format.time(s.time) }
        if s.hasHealth { object["health"] = s.health.score }
        return Format.json(object)
    }
}

/// Ctrl-C leaves the terminal as it was and exits 0.
enum SignalHandler {
    static func install(table: Bool) -> [any DispatchSourceSignal] {
        [SIGINT, SIGTERM].map { sig in
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .main)
            source.setEventHandler {
                if table { Terminal.raw(LiveTable.showCursor + "\n") }
                exit(0)
            }
            source.resume()
            return source
        }
    }
}

/// The `top`-like view: latest snapshot per device, redrawn in place.
final class LiveTable: @unchecked Sendable {
    static let showCursor = "\u{1B}[?25h"
    private let lock = NSLock()
    private var devices: [String: Twin_V1_Device] = [:]
    private var snapshots: [String: Twin_V1_DeviceSnapshot] = [:]
    private var lastDraw = Date.distantPast
    let server: String

    init(server: String) { self.server = server }

    func setDevices(_ list: [Twin_V1_Device]) {
        lock.withLock { devices = Dictionary(list.map { ($0.id, $0) }, uniquingKeysWith: { $1 }) }
    }

    func update(_ update: Twin_V1_DeviceUpdate) {
        lock.withLock { snapshots[update.snapshot.deviceID] = update.snapshot }
    }

    func redraw(throttled: Bool) {
        let text: String? = lock.withLock {
            if throttled && Date().timeIntervalSince(lastDraw) < 0.25 { return nil }
            lastDraw = Date()
            return render(width: Terminal.width)
        }
        if let text { Terminal.raw("\u{1B}[?25l\u{1B}[H\u{1B}[2J" + text) }
    }

    private func render(width: Int) -> String {
        let ordered = snapshots.values.sorted { $0.deviceID < $1.deviceID }
        var counts: [String: Int] = [:]
        for s in ordered { counts[Format.state(s.state), default: 0] += 1 }
        let summary = counts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
        let now = Date().formatted(date: .omitted, time: .standard)
        var lines = ["twin watch — \(server) — \(now) — \(ordered.count) devices: \(summary)", ""]
        let rows = ordered.map { s -> [String] in
            let units = Dictionary((devices[s.deviceID]?.sensors ?? []).map { ($0.name, $0.unit) }, uniquingKeysWith: { $1 })
            let readings = s.values.map { "\($0.sensor) \(Format.number($0.value))\(units[$0.sensor].map { " " + $0 } ?? "")\($0.stale ? " (stale)" : "")" }
                .joined(separator: "  ")
            let health = s.hasHealth ? Format.number(s.health.score) : "-"
            return [s.deviceID, s.type, Format.state(s.state), health, s.openAlerts > 0 ? "\(s.openAlerts)" : "-", readings]
        }
        for line in Format.table(["DEVICE", "TYPE", "STATE", "HEALTH", "ALERTS", "READINGS"], rows).split(separator: "\n") {
            lines.append(String(line.prefix(width)))
        }
        lines.append("")
        lines.append("Ctrl-C to quit")
        return lines.joined(separator: "\n") + "\n"
    }
}
