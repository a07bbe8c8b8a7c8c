import ArgumentParser
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Proto
import SwiftProtobuf
import TwinCore

/// `twin retrain`: start a training job (admins); `--follow` shows its progress to the end.
struct Retrain: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train new failure-prediction models from the stored history (admins).",
        discussion: "Returns the job id at once; with --follow, shows a progress bar until the job ends and prints the new version's held-out metrics. Exit 0 when the job succeeded, 1 when it failed.")
    @OptionGroup var global: GlobalOptions
    @Flag(help: "Follow the job until it ends.") var follow = false
    @Option(help: "Training window, e.g. 30d (default: all stored history up to 90 days).") var window: String?
    @Flag(help: "Train even with little new data.") var force = false

    func run() async throws {
        var request = Twin_V1_RetrainRequest()
        if let window {
            guard let n = DurationText.parse(window) else { throw ValidationError("--window '\(window)' is not a duration like 30d") }
            request.window = .init(seconds: n / Time.second)
        }
        request.force = force
        let message = request
        let follow = follow
        let json = global.output == .json
        let job = try await global.run { client -> Twin_V1_TrainingJob in
            let models = Twin_V1_ModelService.Client(wrapping: client)
            var job = try await models.retrain(message).job
            if !follow { return job }
            var get = Twin_V1_GetTrainingJobRequest()
            get.jobID = job.id
            let tty = Terminal.stderrIsTTY && !json
            while job.state == .queued || job.state == .running {
                if tty { Models.bar(job) }
                try await Task.sleep(for: .milliseconds(250))
                job = try await models.getTrainingJob(get).job
            }
            if tty { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
            return job
        }
        if json {
            Terminal.out(Format.protoJSON(job))
        } else if !follow {
            Terminal.out(job.id)
            Terminal.err("started training job \(job.id); follow it with: twin retrain --follow, or twin job \(job.id)")
        } else if job.state == .succeeded {
            Terminal.out("\(job.id): \(job.stage)")
            let list = try await global.models { try await $0.listModels(Twin_V1_ListModelsRequest()) }
            if let model = list.models.first(where: { $0.version == job.modelVersion }) { Models.describe(model) }
        }
        if follow && job.state == .failed {
            Terminal.err("twin: training job \(job.id) failed: \(job.error)")
            throw ExitCode.failure
        }
    }
}

/// `twin job ID`: one training job.
struct Job: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show a training job.")
    @OptionGroup var global: GlobalOptions
    @Argument var id: String
    func run() async throws {
        var request = Twin_V1_GetTrainingJobRequest()
        request.jobID = id
        let message = request
        let job = try await global.models { try await $0.getTrainingJob(message).job }
        if global.output == .json { Terminal.out(Format.protoJSON(job)); return }
        Terminal.out("\(job.id): \(Models.state(job.state)) \(Int(job.progress * 100))% — \(job.stage)\(job.error.isEmpty ? "" : " — " + job.error)")
    }
}

/// `twin models`: versions with their metrics; `twin models activate V` (admins).
struct Models: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List model versions with their held-out metrics, or activate one (rollback).",
        subcommands: [List.self, Activate.self], defaultSubcommand: List.self)

    static func state(_ s: Twin_V1_JobState) -> String {
        switch s {
        case .queued: "queued"
        case .running: "running"
        case .succeeded: "succeeded"
        case .failed: "failed"
        default: "unknown"
        }
    }

    static func status(_ s: Twin_V1_ModelStatus) -> String {
        switch s {
        case .active: "active"
        case .candidate: "candidate"
        case .retired: "retired"
        default: "unknown"
        }
    }

    static func bar(_ job: Twin_V1_TrainingJob) {
        let width = 30, filled = Int(job.progress * Double(width))
        let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
        FileHandle.standardError.write(Data("\r\u{1B}[K\(bar) \(Int(job.progress * 100))%  \(job.stage)".utf8))
    }

    static func f(_ v: Double, _ digits: Int = 3) -> String { v.isNaN ? "—" : String(format: "%.\(digits)f", v) }
    static func pct(_ v: Double) -> String { v.isNaN ? "—" : String(format: "%.0f %%", 100 * v) }

    static func describe(_ m: Twin_V1_ModelVersion) {
        let x = m.metrics
        Terminal.out("""
            model \(m.version) (\(status(m.status))), trained on \(Format.time(m.trainFrom)) – \(Format.time(m.trainTo))
              failure within 24 h: ROC AUC \(f(x.rocAuc)) (threshold rule: \(f(x.baselineRocAuc))); precision \(f(x.precision, 2)), recall \(f(x.recall, 2)) at p ≥ \(f(x.threshold, 2))
              remaining life over the whole service life: MAE \(f(x.rulWholeLifeMaeHours, 1)) h (conditional fleet mean: \(f(x.baselineRulWholeLifeMaeHours, 1)) h); 80 % interval holds \(pct(x.rulIntervalCoverage)) of held-out truths
              remaining life in the last 7 days before a failure: MAE \(f(x.rulMaeHours, 1)) h, RMSE \(f(x.rulRmseHours, 1)) h (conditional fleet mean: \(f(x.baselineRulMaeHours, 1)) h); interval holds \(pct(x.rulIntervalCoverage7D)); the near model alone, once a failure within 7 days is known: MAE \(f(x.rulNearModelMaeHours, 1)) h
              mean lifetime \(f(x.meanLifetimeHours, 0)) h; held out: \(x.testDevices) devices, \(x.testExamples) examples, \(x.testFailures) failures; trained on \(x.trainDevices) devices, \(x.trainExamples) examples
              \(m.promotionNote)
            """)
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List model versions, newest first.")
        @OptionGroup var global: GlobalOptions
        func run() async throws {
            let list = try await global.models { try await $0.listModels(Twin_V1_ListModelsRequest()) }
            if global.printedJSON(list.models) { return }
            if list.models.isEmpty { Terminal.err("no models yet: an admin runs twin retrain"); return }
            Terminal.out(Format.table(["VERSION", "STATUS", "CREATED", "AUC 24H", "BASELINE", "LIFE MAE H", "BASELINE", "COVERAGE", "TEST DEVICES"], list.models.map { m in
                [m.version, status(m.status), Format.time(m.createdAt), f(m.metrics.rocAuc), f(m.metrics.baselineRocAuc), f(m.metrics.rulWholeLifeMaeHours, 1),
                 f(m.metrics.baselineRulWholeLifeMaeHours, 1), pct(m.metrics.rulIntervalCoverage), "\(m.metrics.testDevices)"]
            }))
        }
    }

    struct Activate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make a version the active one (admins).")
        @OptionGroup var global: GlobalOptions
        @Argument var version: String
        func run() async throws {
            var request = Twin_V1_ActivateModelRequest()
            request.version = version
            let message = request
            _ = try await global.models { try await $0.activateModel(message) }
            Terminal.err("model \(version) is now active")
        }
    }
}

/// `twin predict [DEVICE]…`: failure probabilities and remaining life, most at risk first.
struct Predict: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Failure probability (24 h, 7 d) and remaining life per device, most at risk first.")
    @OptionGroup var global: GlobalOptions
    @Argument var devices: [String] = []
    @Option(help: "Show at most this many devices.") var limit = 20

    func run() async throws {
        var request = Twin_V1_GetPredictionRequest()
        request.deviceIds = devices
        let message = request
        let response = try await global.twin { try await $0.getPrediction(message) }
        if global.printedJSON(response.predictions) { return }
        if response.modelVersion.isEmpty {
            Terminal.err("no predictions: \(response.note)")
            return
        }
        Terminal.out(Format.table(["DEVICE", "P(FAIL 24H)", "P(FAIL 7D)", "REMAINING LIFE", "WHY"], response.predictions.prefix(limit).map { p in
            let rul = p.hasRemainingLife
                ? "\(Predict.hours(p.remainingLife.expected.seconds)) (\(Predict.hours(p.remainingLife.lower.seconds))–\(Predict.hours(p.remainingLife.upper.seconds)))"
                : "—"
            let why = p.topFeatures.prefix(2).filter { $0.contribution > 0 }.map { "\($0.feature)=\(Format.number($0.value))" }.joined(separator: ", ")
            return [p.deviceID, String(format: "%.2f", p.failureProbabilities.first?.probability ?? 0),
                    String(format: "%.2f", p.failureProbabilities.dropFirst().first?.probability ?? 0), rul, why]
        }))
        Terminal.err("model \(response.modelVersion)\(response.note.isEmpty ? "" : "; " + response.note)")
    }

    static func hours(_ seconds: Int64) -> String {
        seconds >= 2 * 86_400 ? String(format: "%.1fd", Double(seconds) / 86_400) : String(format: "%.0fh", Double(seconds) / 3_600)
    }
}
