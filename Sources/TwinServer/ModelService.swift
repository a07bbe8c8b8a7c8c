import GRPCCore
import Proto
import SwiftProtobuf
import TwinApp
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
        // The entry is written before the job starts; a job whose entry cannot be written does not run.
        let job = try prognostics.retrain(trigger: "api", requestedBy: caller, window: window, force: request.force) { job throws(TwinError) in
            try identity.audit(.init(time: identity.clock.now(), action: .modelRetrain, actor: caller, peer: context.clientPeer, detail: job.id))
        }
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
        guard prognostics.repository.manifest(request.version) != nil else {
            throw TwinError.missing(.modelNotFound, type: "twin.v1.Model", name: request.version, "model version '\(request.version.prefix(64))' not found (twin models lists them)")
        }
        // The ACTIVE file is not in users.db, so the two cannot commit together: the entry is
        // written first (an activation whose entry cannot be written is refused), and one that then
        // fails gets a second entry saying so.
        let actor = Principal.current?.username ?? ""
        try identity.audit(.init(time: identity.clock.now(), action: .modelActivated, actor: actor, peer: context.clientPeer, detail: request.version))
        let manifest: ModelManifest
        do { manifest = try prognostics.activate(request.version) } catch {
            identity.recordAudit(.init(time: identity.clock.now(), action: .modelActivated, actor: actor, peer: context.clientPeer, detail: "\(request.version) not activated: \(error.message)"))
            throw error
        }
        var response = Twin_V1_ActivateModelResponse()
        response.model = manifest.proto(active: manifest.version, everActive: [])
        return response
    }
}


