import GRPCCore
import Proto
import TwinApp
import TwinCore

/// `TwinService.GetHistory`, registered over the generated handler so that the answer is
/// written where it is read: on the query pool's background thread, straight from the store's
/// columns into wire form (`HistoryWire`). A 24 h raw answer is 17,280 points, each a nested
/// `Timestamp`; serialized by the transport it ran at normal priority on the cooperative pool,
/// taking the CPU from ingest. Clients see the ordinary `GetHistoryResponse`.
struct HistoryAnswerService: RegistrableRPCService {
    let plant: Plant

    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        router.registerEncoded(Twin_V1_TwinService.Method.GetHistory.descriptor, request: Twin_V1_GetHistoryRequest.self) { request, _ in
            StreamingServerResponse(single: ServerResponse(message: try await self.answer(request), metadata: [:]))
        }
    }

    func answer(_ request: Twin_V1_GetHistoryRequest) async throws(TwinError) -> EncodedMessage {
        let plant = self.plant
        return try await plant.query { () throws(TwinError) -> EncodedMessage in
            EncodedMessage(bytes: try HistoryRequest(request, plant: plant, now: plant.clock.now()).encoded())
        }
    }
}
