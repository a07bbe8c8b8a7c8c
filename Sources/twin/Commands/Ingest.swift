import ArgumentParser
import Foundation
import GRPCCore
import Proto
import SwiftProtobuf
import Synchronization
import TwinClient
import TwinCore

/// `twin ingest FILE.csv`: streams readings through Ingest in batches.
struct Ingest: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send readings from a CSV file (Ingest).",
        discussion: """
            Columns: device,sensor,time,value (a header line is optional). time is RFC 3339 \
            (2026-11-29T06:30:00Z, fractions and offsets allowed) or Unix seconds. Readings go in \
            batches over one stream; each batch is accepted whole or not at all. On a bad row twin \
            stops, names the line, and says how many readings before it were accepted (exit 4).
            """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: "CSV file, or - for standard input.") var file: String
    @Option(help: "Readings per batch (1–100000).") var batchSize: Int = 5_000

    func validate() throws {
        if !(1...100_000).contains(batchSize) { throw ValidationError("--batch-size must be from 1 to 100000") }
    }

    /// A bad line found while reading the file.
    struct BadLine: Error {
        var line: Int
        var reason: String
    }

    /// What the producer saw, shared with the response handler.
    final class Progress: Sendable {
        struct State {
            var sent = 0
            var badLine: BadLine?
            /// First line number of every batch sent, to name lines in server errors.
            var batchLines: [[Int32]] = []
        }

        let state = Mutex(State())
    }

    func run() async throws {
        try await Self.send(global: global, file: file, batchSize: batchSize, importHistory: false)
    }

    /// Streams the file's readings over one Ingest call (`importHistory`: as a history import).
    static func send(global: GlobalOptions, file: String, batchSize: Int, importHistory: Bool) async throws {
        let verb = importHistory ? "import" : "ingest"
        let address = try global.address()
        let credentials = try global.credentials(address)
        let input: FileHandle
        if file == "-" {
            input = FileHandle.standardInput
        } else if let handle = FileHandle(forReadingAtPath: file) {
            input = handle
        } else {
            Terminal.err("twin: cannot read \(file): \(String(cString: strerror(errno)))")
            throw ExitCode(TwinExitCode.invalidArgument)
        }
        let fileSize = file == "-" ? 0 : ((try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? 0)
        let progress = Progress()
        let showProgress = Terminal.stderrIsTTY
        let totalBytes = max(1, fileSize)
        let batchSize = batchSize
        let started = Date()

        let result: Result<Twin_V1_IngestResponse, any Error> = await {
            do {
                return .success(try await global.connect(address, credentials: credentials) { client in
                    let twin = Twin_V1_TwinService.Client(wrapping: client)
                    let request = StreamingClientRequest<Twin_V1_IngestRequest> { writer in
                        var batch = Twin_V1_IngestRequest()
                        batch.importHistory = importHistory
                        var lines: [Int32] = []
                        var bytesDone = 0
                        func flush() async throws {
                            if batch.readings.isEmpty { return }
                            try await writer.write(batch)
                            let sent = progress.state.withLock { s in
                                s.sent += batch.readings.count
                                s.batchLines.append(lines)
                                return s.sent
                            }
                            if showProgress { Self.drawProgress(sent: sent, fraction: Double(bytesDone) / Double(totalBytes), started: started) }
                            batch.readings.removeAll(keepingCapacity: true)
                            lines.removeAll(keepingCapacity: true)
                        }
                        var lineNumber = 0
                        // Read in 4 MiB pieces and parse bytes: the file never has to fit in memory.
                        var carry: [UInt8] = []
                        var eof = false
                        while !eof {
                            var chunk = carry
                            let piece = input.readData(ofLength: 4 << 20)
                            if piece.isEmpty { eof = true } else { chunk.append(contentsOf: piece) }
                            var offset = 0
                            var failed: (Int, String)?
                            var full = false
                            // Whole lines only (the last one too at the end of the file); parsing
                            // stops when the batch is full, it is sent, and parsing goes on.
                            repeat {
                                full = false
                                offset = chunk.withUnsafeBufferPointer { buf -> Int in
                                    var start = offset
                                    while start < buf.count {
                                        if batch.readings.count >= batchSize { full = true; break }
                                        guard let end = buf[start...].firstIndex(of: 10) ?? (eof ? buf.count : nil) else { break }
                                        lineNumber += 1
                                        let line = UnsafeBufferPointer(rebasing: buf[start..<end])
                                        start = end + 1
                                        switch CSVReading.parse(bytes: line, first: lineNumber == 1) {
                                        case .skip: continue
                                        case .reading(let reading):
                                            batch.readings.append(reading)
                                            lines.append(Int32(lineNumber))
                                        case .failure(let reason):
                                            failed = (lineNumber, reason)
                                            return start
                                        }
                                    }
                                    return min(start, buf.count)
                                }
                                if full { try await flush() }
                            } while full && failed == nil
                            bytesDone += offset
                            carry = Array(chunk[offset...])
                            if let (line, reason) = failed {
                                try await flush()
                                progress.state.withLock { $0.badLine = BadLine(line: line, reason: reason) }
                                return
                            }
                        }
                        try await flush()
                    }
                    return try await twin.ingest(request: request)
                })
            } catch {
                return .failure(error)
            }
        }()
        if showProgress { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        let elapsed = Date().timeIntervalSince(started)

        switch result {
        case .success(let response):
            let bad = progress.state.withLock { $0.badLine }
            let rate = elapsed > 0 ? Double(response.acceptedReadings) / elapsed : 0
            let summary = "accepted \(response.acceptedReadings) readings in \(response.acceptedBatches) batches (\(Format.number(rate)) readings/s)"
            if let bad {
                Terminal.err("twin: \(file) line \(bad.line): \(bad.reason); stopped there, \(summary)")
                throw ExitCode(TwinExitCode.invalidArgument)
            }
            if global.output == .json {
                Terminal.out(Format.json(["accepted_readings": response.acceptedReadings, "accepted_batches": response.acceptedBatches]))
            } else {
                Terminal.out("\(verb): \(summary)")
            }
        case .failure(let error):
            if let rpc = error as? RPCError, rpc.twinReason == .readingInvalid,
               let line = progress.state.withLock({ Self.line(for: rpc.twinMetadata, batches: $0.batchLines) }) {
                Terminal.err("twin: \(file) line \(line): rejected by twind: \(rpc.message)")
                throw ExitCode(TwinExitCode.invalidArgument)
            }
            throw fail(error, address: address)
        }
    }

    /// Maps a READING_INVALID error's `batch` and `reading` to the CSV line it came from.
    static func line(for metadata: [String: String], batches: [[Int32]]) -> Int? {
        guard let b = metadata["batch"].flatMap({ Int($0) }), let r = metadata["reading"].flatMap({ Int($0) }),
              b >= 0, r >= 0, b < batches.count, r < batches[b].count
        else { return nil }
        return Int(batches[b][r])
    }

    static func drawProgress(sent: Int, fraction: Double, started: Date) {
        let width = 30
        let filled = Int(min(1, fraction) * Double(width))
        let rate = Double(sent) / max(0.001, Date().timeIntervalSince(started))
        let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
        FileHandle.standardError.write(Data("\r\(bar) \(Int(fraction * 100))%  \(sent) readings  \(Format.number(rate))/s".utf8))
    }
}

/// One CSV row: `device,sensor,time,value`.
enum CSVReading {
    enum Parsed {
        case skip
        case reading(Twin_V1_Reading)
        case failure(String)
    }

    /// One line's bytes (without the newline): blank lines, `#` comments and a `device,…` header
    /// on the first line are skipped.
    static func parse(bytes raw: UnsafeBufferPointer<UInt8>, first: Bool) -> Parsed {
        func isSpace(_ b: UInt8) -> Bool { b == 32 || b == 9 || b == 13 }
        var lo = 0, hi = raw.count
        while lo < hi, isSpace(raw[lo]) { lo += 1 }
        while hi > lo, isSpace(raw[hi - 1]) { hi -= 1 }
        if lo == hi || raw[lo] == 35 { return .skip }
        let line = UnsafeBufferPointer(rebasing: raw[lo..<hi])
        // Split on commas, trimming each field.
        var fields: [UnsafeBufferPointer<UInt8>] = []
        fields.reserveCapacity(4)
        var start = 0
        for i in 0...line.count where i == line.count || line[i] == 44 {
            var a = start, b = i
            while a < b, isSpace(line[a]) { a += 1 }
            while b > a, isSpace(line[b - 1]) { b -= 1 }
            fields.append(UnsafeBufferPointer(rebasing: line[a..<b]))
            start = i + 1
            if fields.count > 4 { break }
        }
        if first, let f = fields.first, f.count >= 6, String(decoding: f, as: UTF8.self).lowercased().hasPrefix("device") { return .skip }
        guard fields.count == 4 else { return .failure("expected 4 columns (device,sensor,time,value), found \(fields.count)") }
        guard let time = parseTime(bytes: fields[2]) else {
            return .failure("time '\(String(decoding: fields[2], as: UTF8.self).prefix(40))' is not RFC 3339 (2026-11-29T06:30:00Z) or Unix seconds")
        }
        guard let value = number(fields[3]) else {
            return .failure("value '\(String(decoding: fields[3], as: UTF8.self).prefix(40))' is not a number")
        }
        var reading = Twin_V1_Reading()
        reading.deviceID = String(decoding: fields[0], as: UTF8.self)
        reading.sensor = String(decoding: fields[1], as: UTF8.self)
        reading.time = Google_Protobuf_Timestamp(seconds: Int64(floorDiv(time, Time.second)), nanos: Int32(time - floorDiv(time, Time.second) * Time.second))
        reading.value = value
        return .reading(reading)
    }

    static func floorDiv(_ a: Nanos, _ b: Nanos) -> Nanos { a >= 0 ? a / b : -((-a + b - 1) / b) }

    /// A decimal number (strtod on a bounded copy; nil unless the whole field is the number).
    static func number(_ f: UnsafeBufferPointer<UInt8>) -> Double? {
        guard !f.isEmpty, f.count < 64 else { return nil }
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: f.count + 1) { buf -> Double? in
            for i in 0..<f.count { buf[i] = CChar(bitPattern: f[i]) }
            buf[f.count] = 0
            var end: UnsafeMutablePointer<CChar>?
            let v = strtod(buf.baseAddress!, &end)
            guard end == buf.baseAddress! + f.count else { return nil }
            return v
        }
    }

    /// Unix seconds (with a fraction) or RFC 3339, from bytes.
    static func parseTime(bytes f: UnsafeBufferPointer<UInt8>) -> Nanos? {
        // Plain seconds[.fraction]: digits only, the common case of exports.
        var seconds: Int64 = 0, i = 0, negative = false
        if i < f.count, f[i] == 45 { negative = true; i += 1 }
        let digitsStart = i
        while i < f.count, f[i] >= 48, f[i] <= 57, i - digitsStart < 12 { seconds = seconds * 10 + Int64(f[i] - 48); i += 1 }
        if i > digitsStart, i == f.count || f[i] == 46 {
            var frac: Nanos = 0, scale: Nanos = 100_000_000
            if i < f.count {
                i += 1
                while i < f.count, f[i] >= 48, f[i] <= 57 { frac += Nanos(f[i] - 48) * scale; scale /= 10; i += 1 }
            }
            if i == f.count {
                let t = seconds * Time.second + frac
                return negative ? -t : t
            }
        }
        return parseTime(String(decoding: f, as: UTF8.self))
    }

    /// RFC 3339 (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`) or Unix seconds, as nanoseconds.
    static func parseTime(_ text: String) -> Nanos? {
        if let seconds = Double(text), !text.contains("-") || text.hasPrefix("-") {
            return seconds.isFinite ? Nanos(seconds * 1e9) : nil
        }
        let b = Array(text.utf8)
        func num(_ from: Int, _ count: Int) -> Int? {
            guard from + count <= b.count else { return nil }
            var v = 0
            for i in from..<(from + count) {
                guard b[i] >= 48 && b[i] <= 57 else { return nil }
                v = v * 10 + Int(b[i] - 48)
            }
            return v
        }
        guard b.count >= 20, let y = num(0, 4), b[4] == 45, let mo = num(5, 2), b[7] == 45, let d = num(8, 2),
              b[10] == 84 || b[10] == 116 || b[10] == 32, let h = num(11, 2), b[13] == 58, let mi = num(14, 2), b[16] == 58,
              let s = num(17, 2), (1...12).contains(mo), (1...31).contains(d), h < 24, mi < 60, s < 61
        else { return nil }
        var i = 19
        var frac: Nanos = 0
        if i < b.count && b[i] == 46 {
            i += 1
            var scale: Nanos = 100_000_000
            while i < b.count, b[i] >= 48 && b[i] <= 57 {
                frac += Nanos(b[i] - 48) * scale
                scale /= 10
                i += 1
            }
        }
        var offset = 0
        if i < b.count && (b[i] == 90 || b[i] == 122) {
            i += 1
        } else if i + 6 == b.count, b[i] == 43 || b[i] == 45, let oh = num(i + 1, 2), b[i + 3] == 58, let om = num(i + 4, 2) {
            offset = (oh * 60 + om) * 60 * (b[i] == 43 ? 1 : -1)
            i += 6
        } else {
            return nil
        }
        guard i == b.count else { return nil }
        // Days from the civil date (Howard Hinnant's algorithm).
        let yy = mo <= 2 ? y - 1 : y
        let era = (yy >= 0 ? yy : yy - 399) / 400
        let yoe = yy - era * 400
        let doy = (153 * (mo > 2 ? mo - 3 : mo + 9) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146_097 + doe - 719_468
        let seconds = days * 86_400 + h * 3600 + mi * 60 + s - offset
        return Nanos(seconds) * Time.second + frac
    }
}

/// `twin import FILE.csv`: brings in history older than the late window (Ingest with
/// import_history), with a progress bar.
struct Import: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Import history from a CSV file: readings of any age within the raw retention, in any order (Ingest with import_history).",
        discussion: """
            Same columns as twin ingest: device,sensor,time,value. Imported readings are stored in \
            their place; they raise no alerts for the past and move the live state only where they \
            are newer than it. Needs an operator or admin login.
            """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: "CSV file, or - for standard input.") var file: String
    @Option(help: "Readings per batch (1–100000).") var batchSize: Int = 50_000

    func validate() throws {
        if !(1...100_000).contains(batchSize) { throw ValidationError("--batch-size must be from 1 to 100000") }
    }

    func run() async throws {
        try await Ingest.send(global: global, file: file, batchSize: batchSize, importHistory: true)
    }
}
