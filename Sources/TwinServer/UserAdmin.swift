import Proto
import TwinApp
import TwinCore

extension User.Role {
    init?(proto: Twin_V1_Role) {
        switch proto {
        case .viewer: self = .viewer
        case .operator: self = .operator
        case .admin: self = .admin
        case .gateway: self = .gateway
        default: return nil
        }
    }

    var proto: Twin_V1_Role {
        switch self {
        case .viewer: .viewer
        case .operator: .operator
        case .admin: .admin
        case .gateway: .gateway
        }
    }
}
