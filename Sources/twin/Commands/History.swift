import ArgumentParser
import Foundation
import GRPCCore
import Proto
import SwiftProtobuf
import TwinCore

/// `twin history`: a sensor's past, as a chart in the terminal or numbers to export.
struct History: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show sensor history (GetHistory): a chart, or the numbers with -o json / -o csv.",
        discussion: """
            The chart draws, per time bucket, the band from min to max (░) and the mean (█). \
            -o json prints one object per point; -o csv a header and one row per point. Without \
            --step or --points, json and csv export raw readings; the chart always downsamples to \
            its width.

            Examples:
              twin history pump-001 bearing_temp --since 24h
              twin history pump-001 --since 30d --points 500 -o csv > pump-001.csv
            """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Device id.") var device: String
    @Argument(help: "Sensors (default: all of the device's).") var sensors: [String] = []
    @Option(help: "How far back from --to, e.g. 1h, 24h, 30d.") var since = "24h"
    @Option(help: "Start (ISO 8601, e.g. 2026-11-28T00:00:00Z); overrides --since.") var from: String?
    @Option(help: "End (ISO 8601); default now.") var to: String?
    @Option(help: "Bucket width, e.g. 1m, 1h.") var step: String?
    @Option(help: "At most this many buckets (the server picks the step).") var points: Int?
    @Option(help: "Value of each bucket in json/csv: mean, min, max, last, count.") var aggregate = "mean"
    @Option(help: "Chart height in rows.") var height = 12

    static let aggregates: [String: Twin_V1_Aggregate] = ["mean": .mean, "min": .min, "max": .max, "last": .last, "count": .count]

    func validate() throws {
        if DurationText.parse(since) == nil { throw ValidationError("--since '\(since)' is not a duration like 24h") }
        if let from, Self.parseTime(from) == nil { throw ValidationError("--from '\(from)' is not an ISO 8601 time like 2026-11-28T00:00:00Z") }
        if let to, Self.parseTime(to) == nil { throw ValidationError("--to '\(to)' is not an ISO 8601 time like 2026-11-28T00:00:00Z") }
        if let step, DurationText.parse(step) == nil { throw ValidationError("--step '\(step)' is not a duration like 5m") }
        if let points, !(1...100_000).contains(points) { throw ValidationError("--points must be from 1 to 100000") }
        if Self.aggregates[aggregate] == nil { throw ValidationError("--aggregate must be one of mean, min, max, last, count") }
        if !(3...100).contains(height) { throw ValidationError("--height must be from 3 to 100") }
    }

    static func parseTime(_ text: String) -> Date? {
        (try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text)) ?? (try? Date.ISO8601FormatStyle().parse(text))
    }

    func run() async throws {
        let chart = global.output == .table
        let width = max(20, Terminal.width - 12)
        var request = Twin_V1_GetHistoryRequest()
        request.deviceID = device
        request.sensors = sensors
        let end = to.flatMap(Self.parseTime) ?? Date()
        request.to = Google_Protobuf_Timestamp(date: end)
        request.from = Google_Protobuf_Timestamp(date: from.flatMap(Self.parseTime) ?? end.addingTimeInterval(-Double(DurationText.parse(since)!) / 1e9))
        if let step, let nanos = DurationText.parse(step) {
            request.step = .init(nanos: nanos)
        } else if let points {
            request.maxPoints = Int32(points)
        } else if chart {
            request.maxPoints = Int32(width)
        }
        request.aggregate = Self.aggregates[aggregate]!
        // Packed columns: a fraction of the bytes and of the time to build and parse.
        request.columnar = true
        var response = try await global.run { client in
            try await Twin_V1_TwinService.Client(wrapping: client).getHistory(request)
        }
        for k in response.series.indices where response.series[k].hasColumns {
            response.series[k].points = Self.points(response.series[k].columns)
            response.series[k].clearColumns()
        }
        let bucketed = response.hasStep && (response.step.seconds > 0 || response.step.nanos > 0)
        switch global.output {
        case .json:
            for series in response.series {
                for p in series.points {
                    var object: [String: Any] = ["device": response.deviceID, "sensor": series.sensor, "time": Format.time(p.time), "value": p.value]
                    if bucketed {
                        object["min"] = p.min
                        object["max"] = p.max
                        object["mean"] = p.mean
                        object["count"] = p.count
                        object["last"] = p.last
                    }
                    Terminal.out(Format.json(object))
                }
            }
        case .csv:
            Terminal.out(bucketed ? "device,sensor,time,value,min,max,mean,count,last" : "device,sensor,time,value")
            for series in response.series {
                for p in series.points {
                    var fields = [response.deviceID, series.sensor, Format.time(p.time), "\(p.value)"].map(Format.csv)
                    if bucketed { fields += ["\(p.min)", "\(p.max)", "\(p.mean)", "\(p.count)", "\(p.last)"] }
                    Terminal.out(fields.joined(separator: ","))
                }
            }
        case .table:
            let span = Format.time(request.from) + " → " + Format.time(request.to)
            for series in response.series {
                Terminal.out(Self.chart(series, device: response.deviceID, span: span, step: bucketed ? response.step : nil, width: width, height: height))
            }
        }
    }

    /// A columnar series as points (buckets when the columns carry min/max).
    static func points(_ c: Twin_V1_HistoryColumns) -> [Twin_V1_HistoryPoint] {
        let n = min(c.timeDeltas.count, c.values.count)
        let buckets = c.min.count >= n && c.max.count >= n && c.mean.count >= n && c.count.count >= n && c.last.count >= n
        var time: Int64 = 0
        return (0..<n).map { i in
            var p = Twin_V1_HistoryPoint()
            time &+= c.timeDeltas[i]
            p.time = Google_Protobuf_Timestamp(seconds: time / Time.second, nanos: Int32(time % Time.second))
            p.value = c.values[i]
            if buckets {
                p.min = c.min[i]
                p.max = c.max[i]
                p.mean = c.mean[i]
                p.count = c.count[i]
                p.last = c.last[i]
            }
            return p
        }
    }

    /// The min–max band and the mean of each bucket, newest on the right.
    static func chart(_ series: Twin_V1_SensorSeries, device: String, span: String, step: Google_Protobuf_Duration?, width: Int, height: Int) -> String {
        let unit = series.unit.isEmpty ? "" : " (\(series.unit))"
        let stepText = step.map { " · buckets of " + DurationText.format($0.seconds * Time.second + Nanos($0.nanos)) } ?? ""
        var lines = ["\(device) \(series.sensor)\(unit) · \(span)\(stepText)"]
        let points = series.points
        if points.isEmpty {
            lines.append("  no readings in this range")
            return lines.joined(separator: "\n") + "\n"
        }
        let lows = points.map { step == nil ? $0.value : $0.min }
        let highs = points.map { step == nil ? $0.value : $0.max }
        let means = points.map { step == nil ? $0.value : $0.mean }
        var low = lows.min()!
        var high = highs.max()!
        if high - low < 1e-9 { low -= 1; high += 1 }
        // Columns map to time, not to point index, so gaps show as gaps.
        let first = Double(points.first!.time.seconds), last = Double(points.last!.time.seconds)
        let columns = min(width, max(1, points.count))
        func column(_ p: Twin_V1_HistoryPoint) -> Int {
            last > first ? Int((Double(p.time.seconds) - first) / (last - first) * Double(columns - 1)) : 0
        }
        func row(_ v: Double) -> Int { Int(((high - v) / (high - low) * Double(height - 1)).rounded()) }
        var grid = Array(repeating: Array(repeating: Character(" "), count: columns), count: height)
        for (k, p) in points.enumerated() {
            let c = column(p)
            for r in row(highs[k])...row(lows[k]) where grid[r][c] != "█" { grid[r][c] = "░" }
        }
        for (k, p) in points.enumerated() { grid[row(means[k])][column(p)] = "█" }
        for r in 0..<height {
            let label = r == 0 ? Format.number(high) : r == height - 1 ? Format.number(low) : r == height / 2 ? Format.number((high + low) / 2) : ""
            lines.append(label.padding(toLength: 9, withPad: " ", startingAt: 0) + "┤" + String(grid[r]))
        }
        let left = Format.time(points.first!.time), right = Format.time(points.last!.time)
        let gap = max(1, columns + 10 - left.count - right.count)
        lines.append(String(repeating: " ", count: 9) + "└" + String(repeating: "─", count: columns))
        lines.append(String(repeating: " ", count: 10) + left + String(repeating: " ", count: max(1, gap - 10)) + right)
        let mean = points.reduce(0.0) { $0 + (step == nil ? $1.value : $1.mean * Double($1.count)) }
            / Double(step == nil ? points.count : max(1, points.reduce(0) { $0 + Int($1.count) }))
        lines.append("          min \(Format.number(lows.min()!))  mean \(Format.number(mean))  max \(Format.number(highs.max()!))  last \(Format.number(step == nil ? points.last!.value : points.last!.last))")
        return lines.joined(separator: "\n") + "\n"
    }
}
