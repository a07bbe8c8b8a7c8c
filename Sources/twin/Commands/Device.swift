import ArgumentParser
import GRPCCore
import Proto

/// `twin device ID`: one device, its sensors and their latest values.
struct DeviceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "device", abstract: "Show one device (GetDevice).")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Device id, e.g. pump-001.") var id: String

    func run() async throws {
        let response = try await global.run { client in
            var request = Twin_V1_GetDeviceRequest()
            request.deviceID = id
            return try await Twin_V1_TwinService.Client(wrapping: client).getDevice(request)
        }
        if global.output == .json {
            Terminal.out(Format.protoJSON(response))
            return
        }
        let d = response.device
        let s = response.snapshot
        Terminal.out("""
            \(d.id)  \(d.name)
              type \(d.type)   site \(d.site)   line \(d.line)\(d.simulated ? "   (simulated)" : "")
              state \(response.hasSnapshot ? Format.state(s.state) : "never reported")\(response.hasSnapshot && s.hasTime ? "   as of \(Format.time(s.time))" : "")

            """)
        let latest = Dictionary(s.values.map { ($0.sensor, $0) }, uniquingKeysWith: { $1 })
        Terminal.out(Format.table(
            ["SENSOR", "VALUE", "UNIT", "NOMINAL", "ALARM", "DESCRIPTION"],
            d.sensors.map { sensor in
                let alarm = [sensor.hasAlarmLow ? "<\(Format.number(sensor.alarmLow))" : nil,
                             sensor.hasAlarmHigh ? ">\(Format.number(sensor.alarmHigh))" : nil]
                    .compactMap { $0 }.joined(separator: " ")
                let value = latest[sensor.name].map { Format.number($0.value) + ($0.stale ? " (stale)" : "") } ?? "-"
                return [sensor.name, value, sensor.unit, Format.range(sensor.nominalMin, sensor.nominalMax), alarm.isEmpty ? "-" : alarm,
                        sensor.description_p]
            }))
    }
}
