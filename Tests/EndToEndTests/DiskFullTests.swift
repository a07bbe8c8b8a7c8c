import Foundation
import GRPCCore
import Proto
import Testing
import TwinClient
import TwinCore

/// The store's disk fills up under a stream of batches (here: a file-size limit set on the
/// running twind with prlimit, so that writes fail with EFBIG as on a full disk). The stream
/// ends with UNAVAILABLE naming the first batch not stored, twind keeps serving, and every
/// batch it acknowledged is in the history.
@Suite(.serialized, .timeLimit(.minutes(3))) struct DiskFullTests {
    @Test func aFullDiskEndsTheStreamAndLosesNothingAcknowledged() async throws {
        let fleet = try CLITests.fleetFile()
        let d = try await TwindProcess.start(["--simulator", "off", "--fleet", fleet])
        defer { d.child.signal(SIGKILL) }
        let parts = d.address.split(separator: ":")
        let address = NetworkAddress.tcp(host: String(parts[0]), port: Int(parts[1])!)
        let token = try await d.token()
        let base = (Time.now() / Time.second - 3_600) * Time.second
        // The files may grow by about 1 MB from here.
        let used = try FileManager.default.contentsOfDirectory(atPath: d.directory).map { name in
            ((try? FileManager.default.attributesOfItem(atPath: d.directory + "/" + name)[.size] as? Int) ?? 0) ?? 0
        }.max() ?? 0
        let limit = try Child("/usr/bin/prlimit", ["--pid", "\(d.child.process.processIdentifier)", "--fsize=\(used + 1_000_000)"])
        #expect(await limit.wait() == 0, "\(limit.stderr.text)")

        let perBatch = 2_000
        let batches = (0..<400).map { batch in
            var request = Twin_V1_IngestRequest()
            request.readings = (batch * perBatch..<(batch + 1) * perBatch).map { StoreEndToEndTests.reading($0, base: base) }
            return request
        }
        var failure: RPCError?
        do {
            _ = try await TwinConnection.with(address, bearer: token) { client in
                try await Twin_V1_TwinService.Client(wrapping: client).ingest(request: StreamingClientRequest { try await $0.write(contentsOf: batches) })
            }
        } catch let error as RPCError {
            failure = error
        }
        let error = try #require(failure, "400 batches of 2,000 readings fit under the limit")
        #expect(error.code == .unavailable, "\(error)")
        #expect(error.twinReason == .storeUnavailable)
        let accepted = try #require(Int(error.twinMetadata["accepted_batches"] ?? ""))
        #expect(error.twinMetadata["batch"] == "\(accepted)")
        #expect(accepted > 0)

        // Still serving, and everything acknowledged is there.
        #expect(d.child.process.isRunning)
        let times = try await StoreEndToEndTests.history(d.address, token: token, from: base - Time.second, to: base + Time.hour)
        #expect(times.count >= accepted * perBatch, "\(times.count) readings for \(accepted) batches acknowledged")
    }
}
