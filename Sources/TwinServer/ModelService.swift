import GRPCCore
import Proto
import SwiftProtobuf
import TwinCore
import TwinEngines

/// `twin.v1.ModelService`: training jobs, model versions, activation.
struct ModelService: Twin_V1_ModelService.SimpleServiceProtocol {
    let prognostics: Prognostics
    let identity: Identity

    func retrain(request: Twin_V1_RetrainRequest, context: ServerContext) async throws -> Twin_V1_RetrainResponse {
        var window: Nanos?
        if request.hasWindow {
            let w = try request.window.checked("window")
            guard w >= 3 * Time.day, w <= 730 * Time.day else { throw TwinError.invalidArgument("window must be from 3 days to 730 days").field("window") }
            window = w
        }
        let caller = Principal.current?.username ?? ""
        let job = try prognostics.retrain(trigger: "api", requestedBy: caller, window: window, force: request.force)
        identity.recordAudit(.init(time: Time.now(), action: .modelRetrain, actor: caller, peer: context.remotePeer, detail: job.id))
        var response = Twin_V1_RetrainResponse()
        response.job = job.proto
        return response
    }

    func getTrainingJob(request: Twin_V1_GetTrainingJobRequest, context: ServerContext) async throws -> Twin_V1_GetTrainingJobResponse {
        guard let job = prognostics.job(request.jobID) else {
            throw TwinError.missing(.trainingJobNotFound, type: "twin.v1.TrainingJob", name: request.jobID,
                                    "training job '\(request.jobID.prefix(64))' not found (jobs are kept until twind restarts)")
        }
        var response = Twin_V1_GetTrainingJobResponse()
        response.job = job.proto
        return response
    }

    func listModels(request: Twin_V1_ListModelsRequest, context: ServerContext) async throws -> Twin_V1_ListModelsResponse {
        let active = prognostics.activeModel?.manifest.version
        let ever = Set(prognostics.repository.everActive())
        var response = Twin_V1_ListModelsResponse()
        response.models = prognostics.repository.manifests().models.map { $0.proto(active: active, everActive: ever) }
        response.activeVersion = active ?? ""
        return response
    }

    func activateModel(request: Twin_V1_ActivateModelRequest, context: ServerContext) async throws -> Twin_V1_ActivateModelResponse {
        guard !request.version.isEmpty else { throw TwinError.invalidArgument("version is required (twin models lists them)").field("version") }
        let manifest = try prognostics.activate(request.version)
        identity.recordAudit(.init(time: Time.now(), action: .modelActivated, actor: Principal.current?.username ?? "", peer: context.remotePeer, detail: request.version))
        var response = Twin_V1_ActivateModelResponse()
        response.model = manifest.proto(active: manifest.version, everActive: [])
        return response
    }
}

extension TrainingJobStatus {
    var proto: Twin_V1_TrainingJob {
        var j = Twin_V1_TrainingJob()
        j.id = id
        j.state = switch state {
        case .queued: .queued
        case .running: .running
        case .succeeded: .succeeded
        case .failed: .failed
        }
        j.progress = progress
        j.stage = stage
        j.startedAt = .init(nanos: startedAt)
        if let finishedAt { j.finishedAt = .init(nanos: finishedAt) }
        j.modelVersion = modelVersion
        j.promoted = promoted
        j.error = error
        j.trigger = trigger
        j.requestedBy = requestedBy
        return j
    }
}

extension ModelManifest {
    func proto(active: String?, everActive: Set<String>) -> Twin_V1_ModelVersion {
        var m = Twin_V1_ModelVersion()
        m.version = version
        m.status = version == active ? .active : everActive.contains(version) ? .retired : .candidate
        m.createdAt = .init(nanos: createdAt)
        m.features = features
        m.trainFrom = .init(nanos: trainFrom)
        m.trainTo = .init(nanos: trainTo)
        m.hyperparameters = hyperparameters
        m.promotionNote = promotionNote
        var x = Twin_V1_ModelMetrics()
        x.rocAuc = metrics.rocAUC
        x.precision = metrics.precision
        x.recall = metrics.recall
        x.threshold = metrics.threshold
        x.rulMaeHours = metrics.rulMAEHours
        x.rulRmseHours = metrics.rulRMSEHours
        x.baselineRocAuc = metrics.baselineRocAUC
        x.baselineRulMaeHours = metrics.baselineRulMAEHours
        x.trainExamples = UInt64(metrics.trainExamples)
        x.testExamples = UInt64(metrics.testExamples)
        x.trainDevices = UInt32(metrics.trainDevices)
        x.testDevices = UInt32(metrics.testDevices)
        m.metrics = x
        return m
    }
}
