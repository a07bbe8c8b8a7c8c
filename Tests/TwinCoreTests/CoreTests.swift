import Testing
@testable import TwinCore

@Suite struct DurationTextTests {
    @Test(arguments: [
        ("5s", 5 * Time.second), ("250ms", 250 * Time.millisecond), ("30d", 30 * Time.day),
        ("1h30m", 90 * Time.minute), ("2", 2 * Time.second), ("1.5h", 90 * Time.minute),
    ])
    func parses(text: String, nanos: Nanos) {
        #expect(DurationText.parse(text) == nanos)
    }

    @Test(arguments: ["", "abc", "5x", "-3s", "s5", "1h-2m"])
    func rejects(text: String) {
        #expect(DurationText.parse(text) == nil)
    }

    @Test func formats() {
        #expect(DurationText.format(450 * Time.millisecond) == "450ms")
        #expect(DurationText.format(200 * Time.minute) == "3h20m")
        #expect(DurationText.format(2 * Time.day + 4 * Time.hour) == "2d4h")
    }
}

@Suite struct NetworkAddressTests {
    @Test func parsesEveryForm() throws {
        #expect(try NetworkAddress.parse("127.0.0.1:8946") == .tcp(host: "127.0.0.1", port: 8946))
        #expect(try NetworkAddress.parse("[::1]:0") == .tcp(host: "::1", port: 0))
        #expect(try NetworkAddress.parse("unix:/run/twin/twind.sock") == .unix(path: "/run/twin/twind.sock"))
        #expect(try NetworkAddress.parse("unix:///tmp/x.sock") == .unix(path: "/tmp/x.sock"))
        #expect(NetworkAddress.tcp(host: "::1", port: 5).description == "[::1]:5")
    }

    @Test(arguments: ["localhost", "host:99999", ":80", "unix:", "host:port"])
    func rejectsWithAReason(text: String) {
        #expect(throws: TwinError.self) { try NetworkAddress.parse(text) }
    }
}

@Suite struct DeviceValidationTests {
    let sensor = SensorSpec(name: "flow", unit: "m³/h", nominalMin: 0, nominalMax: 100)

    @Test func acceptsAGoodDevice() throws {
        try Device(id: "pump-1", type: "pump", sensors: [sensor]).validate()
    }

    @Test func namesWhatIsWrong() {
        func message(_ d: Device) -> String? {
            do { try d.validate(); return nil } catch { return error.message }
        }
        #expect(message(Device(id: "bad id!", type: "pump", sensors: [sensor]))?.contains("device id") == true)
        #expect(message(Device(id: "p", type: "", sensors: [sensor]))?.contains("type is required") == true)
        #expect(message(Device(id: "p", type: "pump", sensors: []))?.contains("at least one sensor") == true)
        #expect(message(Device(id: "p", type: "pump", sensors: [sensor, sensor]))?.contains("listed twice") == true)
        var inverted = sensor
        inverted.nominalMin = 200
        #expect(message(Device(id: "p", type: "pump", sensors: [inverted]))?.contains("nominal_min") == true)
    }
}

@Suite struct SampleDevicesTests {
    @Test func distinctDevicesInFirstSeenOrderWithinTheRegistry() {
        let samples = [3, 1, 3, 3, 0, 1, 7, -1, 2].map { Sample(device: Int32($0), sensor: 0, time: 0, value: 0) }
        #expect(Sample.devices(samples, below: 4) == [3, 1, 0, 2])
        #expect(Sample.devices([], below: 4).isEmpty)
        #expect(Sample.devices(samples, below: 0).isEmpty)
    }
}
