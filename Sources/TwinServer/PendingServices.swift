import GRPCCore
import Proto

// Services whose capabilities arrive with later work. Every method answers UNIMPLEMENTED with a
// message naming what is missing, never fake data.

/// `twin.v1.ModelService`: not built yet (model training).
struct ModelService: Twin_V1_ModelService.SimpleServiceProtocol {
    func retrain(request: Twin_V1_RetrainRequest, context: ServerContext) async throws -> Twin_V1_RetrainResponse { throw notYetBuilt("Retrain", "model training") }
    func getTrainingJob(request: Twin_V1_GetTrainingJobRequest, context: ServerContext) async throws -> Twin_V1_GetTrainingJobResponse { throw notYetBuilt("GetTrainingJob", "model training") }
    func listModels(request: Twin_V1_ListModelsRequest, context: ServerContext) async throws -> Twin_V1_ListModelsResponse { throw notYetBuilt("ListModels", "model training") }
    func activateModel(request: Twin_V1_ActivateModelRequest, context: ServerContext) async throws -> Twin_V1_ActivateModelResponse { throw notYetBuilt("ActivateModel", "model training") }
}
