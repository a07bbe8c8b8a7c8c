import Foundation
import TwinApp
import TwinCore
import TwinEngines
import Yams

/// A fleet file: the plant's devices as YAML (`.yaml`/`.yml`) or JSON, instead of the default
/// simulated plant. The same keys either way:
///
/// ```yaml
/// devices:
///   - id: pump-101
///     type: pump
///     line: line-1
///   - id: press-1
///     type: press
///     simulate: false
///     sensors:
///       - {name: force, unit: kN, nominal_min: 0, nominal_max: 800, alarm_high: 950}
/// ```
/// ```json
/// {"devices": [
///   {"id": "pump-101", "type": "pump", "name": "Feed pump", "site": "plant-b", "line": "line-1",
///    "simulate": true},
///   {"id": "press-1", "type": "press", "sensors": [
///     {"name": "force", "unit": "kN", "nominal_min": 0, "nominal_max": 800, "alarm_high": 950}]}
/// ]}
/// ```
/// A device of a type the simulator knows may leave `sensors` out and set `simulate` to have the
/// simulator drive it; any other device is fed through Ingest.
enum FleetFile {
    struct File: Decodable { var devices: [Entry] }

    struct Entry: Decodable {
        var id: String
        var type: String
        var name: String?
        var site: String?
        var line: String?
        var labels: [String: String]?
        var simulate: Bool?
        var sensors: [Sensor]?
    }

    struct Sensor: Decodable {
        var name: String
        var unit: String?
        var nominalMin: Double?
        var nominalMax: Double?
        var alarmLow: Double?
        var alarmHigh: Double?
        var description: String?
    }

    static var decoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return decoder
    }

    static func load(path: String) throws(TwinError) -> [Device] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .invalidArgument("fleet file \(path) cannot be read")
        }
        let file: File
        do {
            if path.hasSuffix(".yaml") || path.hasSuffix(".yml") {
                // YAML keys are snake_case like the JSON ones; map them onto the Swift names.
                let tree = try Yams.load(yaml: String(decoding: data, as: UTF8.self))
                let json = try JSONSerialization.data(withJSONObject: tree ?? [:])
                file = try decoder.decode(File.self, from: json)
            } else {
                file = try decoder.decode(File.self, from: data)
            }
        } catch {
            throw .invalidArgument("fleet file \(path) is not valid: \(error)")
        }
        var seen = Set<String>()
        return try file.devices.enumerated().map { (n, entry) throws(TwinError) -> Device in
            let simulate = entry.simulate ?? (entry.sensors == nil)
            let catalogType = MachineCatalog.type(named: entry.type)
            if simulate && catalogType == nil {
                throw .invalidArgument(
                    "fleet file \(path), device \(n) '\(entry.id)': the simulator has no type '\(entry.type)' (it knows: \(MachineCatalog.all.map(\.name).joined(separator: ", "))); list its sensors and set \"simulate\": false")
            }
            let sensors: [SensorSpec]
            if simulate, let type = catalogType {
                sensors = type.sensors.map(\.spec)
            } else {
                sensors = (entry.sensors ?? []).map {
                    SensorSpec(
                        name: $0.name, unit: $0.unit ?? "", nominalMin: $0.nominalMin ?? -Double.greatestFiniteMagnitude,
                        nominalMax: $0.nominalMax ?? Double.greatestFiniteMagnitude, alarmLow: $0.alarmLow,
                        alarmHigh: $0.alarmHigh, description: $0.description ?? "")
                }
            }
            let device = Device(
                id: entry.id, name: entry.name ?? entry.id, type: entry.type, site: entry.site ?? "",
                line: entry.line ?? "", sensors: sensors, labels: entry.labels ?? [:], simulated: simulate)
            do throws(TwinError) { try device.validate() } catch {
                throw .invalidArgument("fleet file \(path), device \(n): \(error.message)")
            }
            if !seen.insert(device.id).inserted {
                throw .invalidArgument("fleet file \(path): device '\(device.id)' is listed twice")
            }
            return device
        }
    }
}
