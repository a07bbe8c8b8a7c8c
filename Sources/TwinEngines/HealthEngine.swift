import Synchronization
import TwinCore

/// Health from the readings as they arrive: per sensor a learned normal (per operating mode:
/// running or idle), a fast level, hourly means for trends, sensor-fault checks (stuck, spikes,
/// dropouts, an offset at standstill, a sensor off on its own the way no machine fault moves
/// it) and streaming anomaly detection on the residuals. Scores are computed from that state on
/// demand; nothing here knows the simulator.
public final class HealthEngine: Sendable {
    public struct Options: Sendable {
        /// Time constant of the learned normal once warmed up.
        public var normalTimeConstant: Nanos = 7 * Time.day
        /// Readings (per mode) before the normal is trusted.
        public var warmup = 120
        /// And the time they must span: a day, so daily load cycles are part of the normal.
        public var warmupSpan: Nanos = Time.day
        /// |z| at which a sensor anomaly opens, and below which it closes.
        public var anomalyOpen = 4.0
        public var anomalyClose = 2.5
        /// Identical readings in a row that make a sensor "stuck".
        public var stuckAfter = 30
        /// After a start or stop, temperatures take a while to settle: no judging, no learning.
        public var settle: Nanos = 45 * Time.minute
        /// How long a sensor must read off on its own, the way no machine fault moves it,
        /// before it is called drifted (see `SensorState.offAlone`); nil turns the check off.
        public var loneOffHold: Nanos? = 2 * Time.hour
        public init() {}
    }

    struct Normal {
        var mean = 0.0
        var absDev = 0.0
        var n = 0
        var since: Nanos = 0
        var warm = false
    }

    struct SensorState {
        /// The smallest spread a normal is given: 1 % of the nominal range (an idle sensor
        /// reading 0.0 with the odd 0.1 is not a spike).
        var floor = 1e-9
        var normals = [Normal(), Normal()]
        var fast = Double.nan
        /// The operating mode of the latest reading (0 running, 1 idle); the fast level starts
        /// over when it changes (a machine that just stopped is not "far above its idle normal").
        var mode = 0
        var modeSince: Nanos = 0
        var last = Double.nan
        var lastTime: Nanos = 0
        var identical = 0
        /// The longest run of identical readings seen while learning: some sensors (a belt
        /// speed at a fixed setpoint) repeat naturally.
        var longestRun = 0
        /// Set by a reading far off while the level was normal; a spike if the next one is back.
        var spikeCandidate: Nanos?
        var spikes: [Nanos] = []
        /// Hourly means of the last 48 hours, newest last (NaN where none).
        var hourly = [Float](repeating: .nan, count: 48)
        var hourStart: Nanos = 0
        var hourSum = 0.0
        var hourCount = 0
        var z = 0.0
        var anomalyStart: Nanos?
        var anomalyPeak = 0.0
        /// Set while the sensor reads off its idle normal with the machine idle (settled): a
        /// machine fault acts under load, so a reading off while the machine stands is the
        /// instrument's (a standstill check). The offset then.
        var offAtRest: Double?
        /// Which way machine faults move the quantity (`FaultDirection.of(unit:)`).
        var faultDirection = FaultDirection.either
        /// Since when the sensor has read off what the device's other sensors say, on its own
        /// and against `faultDirection` (`checkOffAlone`), and, once that held `loneOffHold`,
        /// its offset from its running normal: the instrument's fault, even on a machine that
        /// never stands.
        var offAloneSince: Nanos?
        var offAlone: Double?
        /// The same evidence over hours, for a drift too slow to stand out from one reading
        /// vector: the hourly means of that residual (counted while the others read normal),
        /// newest last, NaN for hours it was not judged; the current hour's sum and count.
        var loneHours = [Float](repeating: .nan, count: HealthEngine.loneEvidenceHours)
        var loneHourStart: Nanos = 0
        var loneSum = 0.0
        var loneCount = 0
        /// The verdict stands on the hours' evidence (and clears only when that fades).
        var offAloneOverHours = false

        /// Forgets the learned normals, and the lone-offset verdict measured against them.
        mutating func learnAnew() {
            normals = [Normal(), Normal()]
            offAloneSince = nil
            offAlone = nil
            loneHours = [Float](repeating: .nan, count: HealthEngine.loneEvidenceHours)
            loneHourStart = 0
            loneSum = 0
            loneCount = 0
            offAloneOverHours = false
        }
    }

    struct DeviceMemory {
        var sensors: [SensorState]
        var anomalies: [Anomaly] = []
        var multivariateStart: Nanos?
        var multivariatePeak = 0.0
        /// The sensors that drove the open multivariate anomaly at its peak (by their share of
        /// the Mahalanobis distance); empty for the RMS detector used until the covariance is
        /// learned.
        var multivariateDrivers: [Int] = []
        var multivariateDetector = "multivariate_rms"
        var covariance = ResidualCovariance(sensors: 0)
        var scores: [(time: Nanos, score: Double)] = []
        var interval: Nanos = 0

        /// One reading of sensor `si`, its state updated in place (a copy of the 180-byte state,
        /// or a swap out of the table and back, cost a memmove per reading and copied `normals`
        /// on write).
        @inline(__always)
        mutating func observe(sensor si: Int, _ sample: Sample, mode: TwinCore.DeviceState.Mode, options: Options, warmup: Int, tau: Double) {
            Self.observe(&sensors[si], si, sample, mode: mode, interval: &interval, anomalies: &anomalies, options: options, warmup: warmup, tau: tau)
        }

        @inline(__always)
        static func observe(
            _ st: inout SensorState, _ si: Int, _ sample: Sample, mode: TwinCore.DeviceState.Mode, interval: inout Nanos, anomalies: inout [Anomaly],
            options: Options, warmup: Int, tau: Double
        ) {
            let x = sample.value
            if st.lastTime > 0 && sample.time > st.lastTime {
                let dt = sample.time - st.lastTime
                interval = interval == 0 ? dt : (interval * 7 + dt) / 8
            }
            // Hourly means (in time order; late readings join the current hour).
            let hour = sample.time - sample.time % Time.hour
            if hour > st.hourStart {
                if st.hourCount > 0 {
                    closeHour(Float(st.hourSum / Double(st.hourCount)), hours: st.hourStart == 0 ? 1 : (hour - st.hourStart) / Time.hour, in: &st.hourly)
                }
                st.hourStart = hour
                st.hourSum = 0
                st.hourCount = 0
            }
            st.hourSum += x
            st.hourCount += 1
            // Stuck: the same value again and again while the machine runs.
            st.identical = x == st.last && mode == .running ? st.identical + 1 : 0
            // Residual from the learned normal for this mode.
            let m = mode == .idle ? 1 : 0
            if m != st.mode {
                st.mode = m
                st.modeSince = sample.time
                st.fast = .nan
                st.anomalyStart = nil
            }
            let settled = sample.time - st.modeSince >= options.settle
            var normal = st.normals[m]
            if normal.n == 0 { normal.since = sample.time }
            if !normal.warm && normal.n >= warmup && sample.time - normal.since >= options.warmupSpan { normal.warm = true }
            if !normal.warm && mode == .running { st.longestRun = Swift.max(st.longestRun, st.identical) }
            let sigma = Swift.max(normal.absDev * 1.2533, st.floor)
            let z = normal.warm ? (x - normal.mean) / sigma : 0
            // A lone reading far off that the next one does not confirm is a spike.
            if let candidate = st.spikeCandidate {
                if abs(z) < 3 { st.spikes.append(candidate) }
                st.spikeCandidate = nil
            } else if abs(z) > 8 && !st.fast.isNaN && abs(st.fast - normal.mean) / sigma < 3 {
                st.spikeCandidate = sample.time
            }
            st.spikes.removeAll { sample.time - $0 > Time.hour }
            // A spike waiting for confirmation does not move the level.
            if st.spikeCandidate == nil { st.fast = st.fast.isNaN ? x : st.fast + 0.2 * (x - st.fast) }
            st.z = normal.warm && settled ? (st.fast - normal.mean) / sigma : 0
            // Only for a sensor that rests at a steady value (its idle spread a tenth of its
            // running spread or less): a temperature at rest follows the weather instead.
            if m == 1 && normal.warm && settled && st.normals[0].warm && normal.absDev <= 0.1 * st.normals[0].absDev {
                if abs(st.z) >= options.anomalyOpen {
                    st.offAtRest = st.fast - normal.mean
                } else if abs(st.z) < options.anomalyClose {
                    st.offAtRest = nil
                }
            }
            // Learn while warming up (a plain average over the first day), then slowly, and
            // not from readings far off (an anomaly must not become the normal).
            // Nor from a sensor found drifting: its normal must stay what the instrument read
            // before.
            if mode != .stopped && settled && (!normal.warm || abs(z) < 4) && st.offAlone == nil {
                let alpha = !normal.warm ? 1 / Double(normal.n + 1) : Swift.min(1, Double(Swift.max(interval, Time.second)) / tau)
                normal.mean += alpha * (x - normal.mean)
                normal.absDev += (normal.n == 0 ? 1 : alpha) * (abs(x - normal.mean) - normal.absDev)
                normal.n += 1
                }
            st.normals[m] = normal
            st.last = x
            st.lastTime = sample.time
            // Streaming anomalies on the smoothed residual.
            if st.anomalyStart == nil, abs(st.z) >= options.anomalyOpen, st.identical < options.stuckAfter {
                st.anomalyStart = sample.time
                st.anomalyPeak = abs(st.z)
            } else if let start = st.anomalyStart {
                st.anomalyPeak = Swift.max(st.anomalyPeak, abs(st.z))
                if abs(st.z) < options.anomalyClose {
                    anomalies.append(Anomaly(
                        id: "\(sample.device)-\(si)-\(start)", sensors: [], score: st.anomalyPeak / options.anomalyOpen, start: start,
                        end: sample.time, detector: "residual_ewma", description: "", subject: .sensor(si)))
                    if anomalies.count > 200 { anomalies.removeFirst() }
                    st.anomalyStart = nil
                }
            }
        }
    }

    /// An anomaly found while readings arrived.
    public struct Anomaly: Sendable, Equatable {
        public var id: String
        public var sensors: [String]
        public var score: Double
        public var start: Nanos
        public var end: Nanos?
        public var detector: String
        public var description: String
        /// Whom it is about while the engine keeps it: one sensor (by index) or the device as a
        /// whole; `sensors` is filled in with names when it is read out.
        enum Subject: Sendable, Equatable { case sensor(Int), device, sensors([Int]) }
        var subject: Subject = .device
    }

    public let options: Options
    let devices = Mutex<[DeviceMemory]>([])
    let specs = Mutex<[[SensorSpec]]>([])

    public init(options: Options = Options()) {
        self.options = options
    }

    /// Registers or redefines a device's sensors (learning restarts for it).
    public func bind(device index: Int32, sensors: [SensorSpec]) {
        specs.withLock { s in
            while s.count <= Int(index) { s.append([]) }
            s[Int(index)] = sensors
        }
        devices.withLock { d in
            while d.count <= Int(index) { d.append(DeviceMemory(sensors: [])) }
            var memory = DeviceMemory(sensors: sensors.map { spec in
                var st = SensorState()
                st.floor = Swift.max(0.02 * (spec.nominalMax - spec.nominalMin), 1e-9)
                st.faultDirection = FaultDirection.of(unit: spec.unit)
                return st
            })
            memory.covariance = ResidualCovariance(sensors: sensors.count)
            d[Int(index)] = memory
        }
    }

    /// After a repair the machine's normal is learned again.
    public func relearn(device index: Int32) {
        devices.withLock { d in
            guard Int(index) < d.count else { return }
            for k in d[Int(index)].sensors.indices { d[Int(index)].sensors[k].learnAnew() }
            d[Int(index)].covariance = ResidualCovariance(sensors: d[Int(index)].sensors.count)
        }
    }

    /// After a sensor is serviced (recalibrated, replaced) its normals are learned anew: what
    /// it was learned from may hold the fault, and a standstill offset no longer stands.
    public func serviced(device index: Int32, sensor name: String) {
        guard let k = specs.withLock({ Int(index) < $0.count ? $0[Int(index)].firstIndex { $0.name == name } : nil }) else { return }
        devices.withLock { d in
            guard Int(index) < d.count, k < d[Int(index)].sensors.count else { return }
            d[Int(index)].sensors[k].learnAnew()
            d[Int(index)].sensors[k].offAtRest = nil
        }
    }

    /// Takes in readings; `running(i)` says whether device i is under load (idle, failed and
    /// offline devices do not teach the running normal).
    public func observe(_ samples: [Sample], modes: [Int32: TwinCore.DeviceState.Mode]) {
        let warmup = options.warmup, tau = Double(options.normalTimeConstant)
        devices.withLock { d in
            // Modes by device index: a dictionary lookup per reading cost more than the rest.
            var modeOf = [TwinCore.DeviceState.Mode](repeating: .running, count: d.count)
            for (device, mode) in modes where device >= 0 && Int(device) < d.count { modeOf[Int(device)] = mode }
            for sample in samples {
                let di = Int(sample.device), si = Int(sample.sensor)
                guard di >= 0, si >= 0, di < d.count, si < d[di].sensors.count else { continue }
                d[di].observe(sensor: si, sample, mode: modeOf[di], options: options, warmup: warmup, tau: tau)
            }
            // Across a device's sensors: off together, or off the way they usually move together.
            for di in Sample.devices(samples, below: d.count) {
                let zs = d[di].sensors.map(\.z)
                guard zs.count >= 2 else { continue }
                let time = d[di].sensors.map(\.lastTime).max() ?? 0
                // Learned from normal running only: every sensor judged (warm, settled, running)
                // and none far off, no multivariate anomaly open.
                let judged = d[di].sensors.allSatisfy { $0.mode == 0 && $0.normals[0].warm && $0.z != 0 }
                var statistic: Double, shares: [Double] = []
                if d[di].covariance.ready(warmup: warmup, span: options.warmupSpan, now: time) {
                    // The covariance is that of normal running: a device idle, starting or
                    // stopping is not measured against it.
                    guard judged else { continue }
                    let pz = d[di].covariance.product(zs)
                    let (d2, s) = d[di].covariance.distance(zs, pz: pz)
                    statistic = (Swift.max(0, d2) / Double(zs.count)).squareRoot()
                    shares = s
                    if let hold = options.loneOffHold { Self.checkOffAlone(&d[di], zs: zs, pz: pz, d2: d2, time: time, hold: hold) }
                } else {
                    statistic = (zs.reduce(0) { $0 + $1 * $1 } / Double(zs.count)).squareRoot()
                }
                if judged && d[di].multivariateStart == nil && zs.allSatisfy({ abs($0) < 4 }) && statistic < 2.5 {
                    let alpha = Swift.min(1, Double(Swift.max(d[di].interval, Time.second)) / tau)
                    d[di].covariance.learn(zs, time: time, alpha: alpha, warm: d[di].covariance.n >= warmup)
                }
                let opens = shares.isEmpty ? statistic >= 2.5 && zs.filter({ abs($0) >= 2 }).count >= 2 : statistic >= Self.mahalanobisOpen
                if d[di].multivariateStart == nil, opens {
                    d[di].multivariateStart = time
                    d[di].multivariatePeak = statistic
                    d[di].multivariateDetector = shares.isEmpty ? "multivariate_rms" : "multivariate_mahalanobis"
                    d[di].multivariateDrivers = Self.drivers(shares)
                } else if let start = d[di].multivariateStart {
                    if statistic > d[di].multivariatePeak {
                        d[di].multivariatePeak = statistic
                        if !shares.isEmpty { d[di].multivariateDrivers = Self.drivers(shares) }
                    }
                    if statistic < (shares.isEmpty ? 1.5 : Self.mahalanobisClose) {
                        let drivers = d[di].multivariateDrivers
                        d[di].anomalies.append(Anomaly(
                            id: "\(di)-mv-\(start)", sensors: [], score: d[di].multivariatePeak / 2.5, start: start, end: time,
                            detector: d[di].multivariateDetector, description: "", subject: drivers.isEmpty ? .device : .sensors(drivers)))
                        if d[di].anomalies.count > 200 { d[di].anomalies.removeFirst() }
                        d[di].multivariateStart = nil
                    }
                }
            }
        }
    }

    /// "Sensors that should move together": a sensor off on its own, the way no machine fault
    /// moves it (a vibration or temperature reading low, a speed high, a supply voltage either
    /// way). Its residual given the others, standardized (c = (Pz)ⱼ/√Pⱼⱼ), is ≥ 4 against the
    /// fault direction, it explains more of the distance than any other sensor, and the others'
    /// distance without it (D² − c², per sensor) is < 1.5². Held `hold`, it is called a drift;
    /// the verdict holds until c < 1.5 (or the sensor is serviced). A machine fault that shows
    /// on one sensor first (a bearing wearing: vibration up) is left to the machine.
    ///
    /// A slow drift (a few degrees a day) rarely reaches c ≥ 4 before it is found and fixed,
    /// and c wanders with the load. So the same evidence is also weighed over hours: the mean
    /// of c over the last `loneEvidenceHours` hours (c counted while the others read normal,
    /// else at most 0; not its own level, which swings with the load: a temperature drifted
    /// low still reads above its running mean at full load), with at least
    /// `loneEvidenceJudged` of them judged, ≥ `loneEvidenceCalled` calls it a drift; that
    /// verdict holds until the mean falls below `loneEvidenceCleared`.
    static func checkOffAlone(_ dev: inout DeviceMemory, zs: [Double], pz: [Double], d2: Double, time: Nanos, hold: Nanos) {
        guard dev.sensors.contains(where: { $0.faultDirection != .either }) else { return }
        let k = zs.count
        // Two sensors that move together explain each other's offset: only the one that
        // explains most of the distance is the suspect.
        let conditionals = (0..<k).map { dev.covariance.conditional(pz: pz, $0) }
        let suspect = conditionals.indices.max { abs(conditionals[$0]) < abs(conditionals[$1]) }
        for j in 0..<k {
            // How far it reads against the way faults move it, and whether its own level does too.
            let c: Double, against: Bool
            switch dev.sensors[j].faultDirection {
            case .either: continue
            case .rises: (c, against) = (-conditionals[j], zs[j] < 0)
            case .falls: (c, against) = (conditionals[j], zs[j] > 0)
            case .unmoved: (c, against) = (abs(conditionals[j]), zs[j] * conditionals[j] > 0)
            }
            let rest = Swift.max(0, d2 - c * c) / Double(k - 1)
            // A normal learned anew (after a service or a repair) is rough for days, while the
            // covariance holds the old one's: no verdict until it has a week behind it.
            let seasoned = time - dev.sensors[j].normals[0].since >= 7 * Time.day
            if seasoned { weigh(&dev.sensors[j], c: rest < 1.5 * 1.5 ? c : Swift.min(c, 0), time: time) }
            if j == suspect && seasoned && c >= 4 && against && rest < 1.5 * 1.5 {
                let since = dev.sensors[j].offAloneSince ?? time
                dev.sensors[j].offAloneSince = since
                if time - since >= hold { dev.sensors[j].offAlone = dev.sensors[j].fast - dev.sensors[j].normals[0].mean }
            } else if c < (dev.sensors[j].offAlone == nil ? 2.5 : 1.5) && !dev.sensors[j].offAloneOverHours {
                // Once called, it holds until the sensor reads in line again (or is serviced).
                dev.sensors[j].offAloneSince = nil
                dev.sensors[j].offAlone = nil
            }
            // The offset shown is the current one: the normal stops learning while it holds.
            if dev.sensors[j].offAlone != nil { dev.sensors[j].offAlone = dev.sensors[j].fast - dev.sensors[j].normals[0].mean }
        }
    }

    /// Closes an hour in a ring of hourly values (newest last): its value, then NaN for the
    /// hours since with nothing, `hours` (≥ 1) in all, at most the ring's length.
    @inline(__always)
    static func closeHour(_ value: Float, hours: Int64, in ring: inout [Float]) {
        let gap = Int(Swift.min(Int64(ring.count), Swift.max(1, hours)))
        ring.removeFirst(gap)
        ring.append(value)
        ring.append(contentsOf: repeatElement(Float.nan, count: gap - 1))
    }

    /// Hours of evidence behind a slow drift's verdict (`checkOffAlone`).
    static let loneEvidenceHours = 12
    static let loneEvidenceJudged = 10
    static let loneEvidenceCalled = 2.0
    static let loneEvidenceCleared = 1.0

    /// Adds one residual to the sensor's hourly evidence; when an hour closes, weighs the last
    /// `loneEvidenceHours`.
    static func weigh(_ st: inout SensorState, c: Double, time: Nanos) {
        let hour = time - time % Time.hour
        if hour > st.loneHourStart {
            if st.loneHourStart > 0 {
                closeHour(st.loneCount > 0 ? Float(st.loneSum / Double(st.loneCount)) : .nan, hours: (hour - st.loneHourStart) / Time.hour, in: &st.loneHours)
                let judged = st.loneHours.filter { !$0.isNaN }
                let mean = judged.isEmpty ? 0 : Double(judged.reduce(0, +)) / Double(judged.count)
                if judged.count >= loneEvidenceJudged && mean >= loneEvidenceCalled {
                    st.offAloneOverHours = true
                    st.offAloneSince = st.offAloneSince ?? time
                    st.offAlone = st.fast - st.normals[0].mean
                } else if st.offAloneOverHours && (judged.count < loneEvidenceJudged || mean < loneEvidenceCleared) {
                    st.offAloneOverHours = false
                    st.offAloneSince = nil
                    st.offAlone = nil
                }
            }
            st.loneHourStart = hour
            st.loneSum = 0
            st.loneCount = 0
        }
        st.loneSum += c
        st.loneCount += 1
    }

    /// Why a change of a reading (its sign) is not the machine's condition, when it goes the
    /// way no machine fault moves it; nil when a fault could move it so.
    static func againstFaults(_ direction: FaultDirection, change: Double, unit: String) -> String? {
        switch direction {
        case .rises where change < 0: "machine faults raise a \(unit) reading, never lower it: the duty or the sensor, not the machine's condition"
        case .falls where change > 0: "machine faults lower a \(unit) reading, never raise it: the duty or the sensor, not the machine's condition"
        case .unmoved where change != 0: "machine faults do not move a \(unit) reading: the supply or the sensor, not the machine's condition"
        default: nil
        }
    }

    /// Which way machine faults move a quantity.
    @_spi(Benchmarks) public enum FaultDirection: Sendable {
        /// Faults only raise it: vibration and temperatures (friction, wear, imbalance and poor
        /// cooling add energy).
        case rises
        /// Faults only lower it: shaft speed (a load or friction slows a machine).
        case falls
        /// Faults do not move it: a supply voltage.
        case unmoved
        /// Either way: pressure and flow fall with a leak and rise with a blockage; a motor's
        /// current rises with friction and falls when a pump runs dry; anything else.
        case either

        /// From the unit.
        public static func of(unit: String) -> FaultDirection {
            let u = String(unit.lowercased().filter { $0 != " " })
            if ["mm/s", "in/s", "ips", "g", "m/s²", "m/s2", "µm", "um", "mil", "mils", "°c", "°f", "degc", "degf", "k"].contains(u) { return .rises }
            if ["rpm", "1/min", "min⁻¹", "r/min"].contains(u) { return .falls }
            if ["v", "kv", "vac"].contains(u) { return .unmoved }
            return .either
        }
    }

    /// The Mahalanobis distance per sensor (√(D²/k)) at which a multivariate anomaly opens,
    /// and below which it closes.
    static let mahalanobisOpen = 2.5
    static let mahalanobisClose = 1.5

    /// The sensors behind a Mahalanobis distance: the largest shares, strongest first, until
    /// they make 80 % of it (at most three).
    static func drivers(_ shares: [Double]) -> [Int] {
        let total = shares.reduce(0) { $0 + Swift.max(0, $1) }
        guard total > 0 else { return [] }
        var result: [Int] = [], sum = 0.0
        for (i, v) in shares.enumerated().sorted(by: { $0.element > $1.element }) where v > 0 && result.count < 3 && sum < 0.8 * total {
            result.append(i)
            sum += v
        }
        return result
    }

    // MARK: Scores

    /// One reason a score is what it is.
    public struct Factor: Sendable, Equatable {
        public var subject: String
        public var description: String
        public var penalty: Double
        public var value: Double?
        public var expected: Double?
        public var trendPerDay: Double?
        public var unit: String
        /// True when it is the sensor that is at fault, not the machine.
        public var sensorFault: Bool = false
        public var kind: Kind
        /// A deviation or trend the way no machine fault moves the reading (told by its unit:
        /// a vibration or temperature low, a speed high, a supply voltage off): the duty, the
        /// supply or the instrument, not the machine's condition. It weighs on the score as a
        /// sensor fault does and leads to no machine action.
        public var againstFaults = false

        /// Evidence about the machine's own condition.
        public var blamesMachine: Bool { !sensorFault && !againstFaults && kind != .prediction }

        /// What a factor is about. Sensor faults (stuck, spikes, dropout, drift) blame the sensor.
        public enum Kind: String, Sendable, CaseIterable {
            case stuck, spikes, dropout, drift, deviation, limit, trend, prediction
        }
    }

    public struct Verdict: Sendable {
        public var score: Double
        public var components: [(name: String, score: Double)]
        public var factors: [Factor]
        public var summary: HealthSummary
        /// Each reporting sensor's smoothed level now (what limits are judged on), and whether
        /// the sensor itself looks faulty (then its level says nothing about the machine).
        public var levels: [Level] = []

        /// A verdict made elsewhere (benchmarks and tools that feed the alert book directly).
        public init(score: Double, factors: [Factor], summary: HealthSummary, levels: [Level]) {
            self.score = score
            self.components = []
            self.factors = factors
            self.summary = summary
            self.levels = levels
        }

        init(score: Double, components: [(name: String, score: Double)], factors: [Factor], summary: HealthSummary, levels: [Level] = []) {
            self.score = score
            self.components = components
            self.factors = factors
            self.summary = summary
            self.levels = levels
        }
    }

    public struct Level: Sendable, Equatable {
        public var sensor: String
        public var value: Double
        public var sensorFault: Bool
        public init(sensor: String, value: Double, sensorFault: Bool) {
            self.sensor = sensor
            self.value = value
            self.sensorFault = sensorFault
        }
    }

    /// The health of a device now, given its operating state and failure outlook (p24, p7d).
    public func score(device index: Int32, state: TwinCore.DeviceState, outlook: (within24h: Double, within7d: Double, lead: String?)?, now: Nanos) -> Verdict? {
        guard let sensors = specs.withLock({ Int(index) < $0.count ? $0[Int(index)] : nil }) else { return nil }
        return devices.withLock { d -> Verdict? in
            guard Int(index) < d.count else { return nil }
            let dev = d[Int(index)]
            var factors: [Factor] = []
            var components: [(String, Double)] = []
            var levels: [Level] = []
            let newest = dev.sensors.map(\.lastTime).max() ?? 0
            for (k, spec) in sensors.enumerated() where k < dev.sensors.count {
                let st = dev.sensors[k]
                var mine: [Factor] = []
                let unit = spec.unit.isEmpty ? "" : " \(spec.unit)"
                func f(_ v: Double) -> String { abs(v) >= 100 ? String(format: "%.0f", v) : String(format: "%.1f", v) }
                if st.lastTime == 0 { continue }
                // Sensor faults first: they explain odd readings without blaming the machine.
                if st.identical >= Swift.max(options.stuckAfter, 3 * st.longestRun + 1) && state.mode == .running && st.normals[0].warm {
                    mine.append(Factor(subject: spec.name, description: "\(spec.name) has reported exactly \(f(st.last))\(unit) \(st.identical + 1) times in a row: the sensor looks stuck", penalty: 30, value: st.last, unit: spec.unit, sensorFault: true, kind: .stuck))
                } else if st.spikes.count >= 3 {
                    mine.append(Factor(subject: spec.name, description: "\(spec.name) jumped to implausible values \(st.spikes.count) times in the last hour and came straight back: a faulty sensor or wiring", penalty: 15, unit: spec.unit, sensorFault: true, kind: .spikes))
                }
                if mine.isEmpty, let offset = st.offAtRest {
                    mine.append(Factor(subject: spec.name, description: "\(spec.name) read \(f(abs(offset)))\(unit) \(offset > 0 ? "above" : "below") its idle level while the machine stood: a machine fault shows under load, so the sensor has drifted or lost its calibration", penalty: 20, value: st.fast, unit: spec.unit, sensorFault: true, kind: .drift))
                }
                if mine.isEmpty, let offset = st.offAlone {
                    let why = st.faultDirection == .unmoved
                        ? "machine faults do not move a \(spec.unit) reading" : "machine faults \(offset > 0 ? "lower" : "raise") a \(spec.unit) reading, never \(offset > 0 ? "raise" : "lower") it"
                    mine.append(Factor(subject: spec.name, description: "\(spec.name) reads \(f(abs(offset)))\(unit) \(offset > 0 ? "above" : "below") its normal while the device's other sensors read normal: \(why), so the sensor has drifted or lost its calibration", penalty: 20, value: st.fast, unit: spec.unit, sensorFault: true, kind: .drift))
                }
                if dev.interval > 0, newest - st.lastTime > 5 * dev.interval, state != .offline {
                    mine.append(Factor(subject: spec.name, description: "\(spec.name) has sent nothing for \(DurationText.format(newest - st.lastTime)) while the device's other sensors report: a dropout", penalty: 20, unit: spec.unit, sensorFault: true, kind: .dropout))
                }
                let normal = st.normals[st.mode]
                let sensorFault = !mine.isEmpty
                if !st.fast.isNaN { levels.append(Level(sensor: spec.name, value: st.fast, sensorFault: sensorFault)) }
                // Deviation from the learned normal for this load.
                if !sensorFault, normal.warm, abs(st.z) > 3 {
                    let penalty = Swift.min(50, (abs(st.z) - 3) * 8)
                    let direction = st.fast > normal.mean ? "above" : "below"
                    let why = Self.againstFaults(st.faultDirection, change: st.fast - normal.mean, unit: spec.unit)
                    mine.append(Factor(subject: spec.name, description: "\(spec.name) \(f(st.fast))\(unit), \(f(abs(st.fast - normal.mean)))\(unit) \(direction) its normal (\(f(normal.mean))\(unit)) for this load" + (why.map { ": \($0)" } ?? ""), penalty: penalty, value: st.fast, expected: normal.mean, unit: spec.unit, kind: .deviation, againstFaults: why != nil))
                }
                // Limits.
                let span = Swift.max(spec.nominalMax - spec.nominalMin, 1e-9)
                if !sensorFault, !st.fast.isNaN {
                    if let high = spec.alarmHigh, st.fast >= high {
                        mine.append(Factor(subject: spec.name, description: "\(spec.name) \(f(st.fast))\(unit) is above its alarm limit \(f(high))\(unit)", penalty: 60, value: st.fast, unit: spec.unit, kind: .limit))
                    } else if let low = spec.alarmLow, st.fast <= low {
                        mine.append(Factor(subject: spec.name, description: "\(spec.name) \(f(st.fast))\(unit) is below its alarm limit \(f(low))\(unit)", penalty: 60, value: st.fast, unit: spec.unit, kind: .limit))
                    } else if state != .idle, st.fast > spec.nominalMax || st.fast < spec.nominalMin {
                        let excess = Swift.max(st.fast - spec.nominalMax, spec.nominalMin - st.fast) / span
                        mine.append(Factor(subject: spec.name, description: "\(spec.name) \(f(st.fast))\(unit) is outside its nominal range \(f(spec.nominalMin))–\(f(spec.nominalMax))\(unit)", penalty: Swift.min(30, 10 + 100 * excess), value: st.fast, unit: spec.unit, kind: .limit))
                    }
                }
                // Trend toward a limit (Theil–Sen over the hourly means of the last 24 h).
                if !sensorFault, let trend = Self.trend(st.hourly) {
                    let limitHigh = spec.alarmHigh ?? spec.nominalMax, limitLow = spec.alarmLow ?? spec.nominalMin
                    let significant = trend.low > 0 || trend.high < 0
                    let toward = trend.slope > 0 ? limitHigh - st.fast : st.fast - limitLow
                    // A trend worth telling: the level moves by more than 1.5 normal spreads a
                    // day and has already left its normal in that direction.
                    let sigma = Swift.max(normal.absDev * 1.2533, st.floor)
                    let away = (st.fast - normal.mean) * (trend.slope > 0 ? 1 : -1)
                    if significant, toward > 0, abs(trend.slope) > Swift.max(0.02 * span, 1.5 * sigma), !normal.warm || away > sigma {
                        let days = toward / abs(trend.slope)
                        if days < 7 {
                            let penalty = 25 * (1 - days / 7)
                            let why = Self.againstFaults(st.faultDirection, change: trend.slope, unit: spec.unit)
                            mine.append(Factor(subject: spec.name, description: "\(spec.name) is \(trend.slope > 0 ? "rising" : "falling") \(f(abs(trend.slope)))\(unit)/day; at this rate it reaches \(f(trend.slope > 0 ? limitHigh : limitLow))\(unit) in \(DurationText.format(Nanos(days * Double(Time.day))))" + (why.map { ": \($0)" } ?? ""), penalty: penalty, value: st.fast, trendPerDay: trend.slope, unit: spec.unit, kind: .trend, againstFaults: why != nil))
                        }
                    }
                }
                components.append((spec.name, Swift.max(0, 100 - mine.reduce(0) { $0 + $1.penalty })))
                factors += mine
            }
            if let outlook, outlook.within24h >= 0.2 || outlook.within7d >= 0.4 {
                let penalty = 45 * outlook.within24h + 20 * outlook.within7d
                factors.append(Factor(subject: outlook.lead ?? "machine", description: String(format: "failure predicted: %.0f %% within 24 h, %.0f %% within 7 days", 100 * outlook.within24h, 100 * outlook.within7d) + (outlook.lead.map { ", led by \($0)" } ?? ""), penalty: penalty, unit: "", kind: .prediction))
            }
            factors.sort { $0.penalty > $1.penalty }
            // The worst machine factor counts fully, the others partly; sensor faults weigh less
            // on the machine's score (the machine may be fine).
            var total = 0.0
            for (i, factor) in factors.enumerated() { total += (factor.sensorFault || factor.againstFaults ? 0.4 : 1) * factor.penalty * (i == 0 ? 1 : 0.35) }
            var score = Swift.max(0, Swift.min(100, 100 - total))
            var headline = factors.first?.description ?? "all sensors within their normal"
            if state == .failed {
                score = 0
                headline = "failed: out of service"
            }
            return Verdict(score: score, components: components, factors: factors, summary: HealthSummary(score: score.rounded(), headline: headline), levels: levels)
        }
    }

    /// Trend in unit/day over the last two days: Theil–Sen on 24-hour moving averages, so the
    /// daily load cycle does not pass for a trend.
    static func trend(_ hourly: [Float]) -> (slope: Double, low: Double, high: Double)? {
        var x: [Double] = [], y: [Double] = []
        for end in 23..<hourly.count {
            let window = hourly[(end - 23)...end].filter { !$0.isNaN }
            guard window.count >= 18 else { continue }
            x.append(Double(end) / 24)
            y.append(Double(window.reduce(0, +)) / Double(window.count))
        }
        guard x.count >= 12 else { return nil }
        return Stats.theilSen(x: x, y: y)
    }

    /// Keeps an hourly history of a device's score (7 days).
    public func record(score: Double, device index: Int32, at time: Nanos) {
        devices.withLock { d in
            guard Int(index) < d.count else { return }
            let hour = time - time % Time.hour
            if let last = d[Int(index)].scores.last, last.time == hour { return }
            d[Int(index)].scores.append((hour, score))
            if d[Int(index)].scores.count > 168 { d[Int(index)].scores.removeFirst() }
        }
    }

    public func scoreHistory(device index: Int32, since: Nanos) -> [(time: Nanos, score: Double)] {
        devices.withLock { d in Int(index) < d.count ? d[Int(index)].scores.filter { $0.time >= since } : [] }
    }

    /// Anomalies of a device (closed and still open) within [from, to), sensors named.
    public func anomalies(device index: Int32, from: Nanos, to: Nanos) -> [Anomaly] {
        let names = specs.withLock { Int(index) < $0.count ? $0[Int(index)].map(\.name) : [] }
        return devices.withLock { d -> [Anomaly] in
            guard Int(index) < d.count else { return [] }
            var all = d[Int(index)].anomalies
            for (k, st) in d[Int(index)].sensors.enumerated() {
                if let start = st.anomalyStart {
                    all.append(Anomaly(id: "\(index)-\(k)-\(start)", sensors: [], score: st.anomalyPeak / options.anomalyOpen, start: start, end: nil, detector: "residual_ewma", description: "", subject: .sensor(k)))
                }
            }
            if let start = d[Int(index)].multivariateStart {
                let drivers = d[Int(index)].multivariateDrivers
                all.append(Anomaly(
                    id: "\(index)-mv-\(start)", sensors: [], score: d[Int(index)].multivariatePeak / 2.5, start: start, end: nil,
                    detector: d[Int(index)].multivariateDetector, description: "", subject: drivers.isEmpty ? .device : .sensors(drivers)))
            }
            return all.filter { ($0.end ?? .max) >= from && $0.start < to }.map { a in
                var a = a
                switch a.subject {
                case .device:
                    a.sensors = names
                    a.description = String(format: "sensors of the device off their normal together (RMS z %.1f)", a.score * 2.5)
                case .sensors(let drivers):
                    a.sensors = drivers.filter { $0 < names.count }.map { names[$0] }
                    a.description = String(
                        format: "sensors off the way they usually move together (Mahalanobis distance %.1f per sensor), driven by %@",
                        a.score * 2.5, a.sensors.joined(separator: ", "))
                case .sensor(let k) where k < names.count:
                    a.sensors = [names[k]]
                    a.description = String(format: "%@ off its learned normal (peak z %.1f)", names[k], a.score * options.anomalyOpen)
                case .sensor:
                    break
                }
                return a
            }
        }
    }
}

extension TwinCore.DeviceState {
    /// How the health engine treats a device's readings.
    public enum Mode: Sendable { case running, idle, stopped }

    public var mode: Mode {
        switch self {
        case .running, .warning, .alarm: .running
        case .idle: .idle
        case .failed, .maintenance, .offline: .stopped
        }
    }
}
