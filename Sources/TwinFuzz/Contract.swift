import Foundation
import Proto
import SwiftProtobuf

/// The gRPC contract as data: every service, method and message of `proto/`, read at run time
/// from the descriptor set `scripts/generate-proto` embeds. The fuzz tier walks it, so a method
/// or field added to a `.proto` file is fuzzed without anyone writing a generator for it.
public struct Contract: Sendable {
    public struct Method: Sendable, Hashable {
        public var service: String
        public var name: String
        public var input: String
        public var clientStreaming: Bool
        public var serverStreaming: Bool
        public var fullName: String { "\(service)/\(name)" }
    }

    public struct Field: Sendable {
        public var name: String
        public var number: Int
        public var type: Google_Protobuf_FieldDescriptorProto.TypeEnum
        public var repeated: Bool
        /// The message or enum type, fully qualified without the leading dot.
        public var typeName: String
    }

    public struct Message: Sendable {
        public var name: String
        public var fields: [Field]
        public var isMapEntry: Bool
    }

    public var methods: [Method]
    public var messages: [String: Message]
    /// Known values of each enum (fully qualified name).
    public var enums: [String: [Int32]]

    /// The contract twind serves.
    public static let twin: Contract = {
        guard let data = Data(base64Encoded: ContractDescriptors.fileDescriptorSetBase64),
              let set = try? Google_Protobuf_FileDescriptorSet(serializedBytes: data)
        else { fatalError("the embedded descriptor set is damaged; run scripts/generate-proto") }
        return Contract(set)
    }()

    public init(_ set: Google_Protobuf_FileDescriptorSet) {
        var methods: [Method] = []
        var messages: [String: Message] = [:]
        var enums: [String: [Int32]] = [:]
        func strip(_ name: String) -> String { name.hasPrefix(".") ? String(name.dropFirst()) : name }
        func add(_ message: Google_Protobuf_DescriptorProto, prefix: String) {
            let full = prefix.isEmpty ? message.name : "\(prefix).\(message.name)"
            messages[full] = Message(
                name: full,
                fields: message.field.map { f in
                    Field(name: f.name, number: Int(f.number), type: f.type, repeated: f.label == .repeated, typeName: strip(f.typeName))
                },
                isMapEntry: message.options.mapEntry)
            for nested in message.nestedType { add(nested, prefix: full) }
            for e in message.enumType { enums["\(full).\(e.name)"] = e.value.map(\.number) }
        }
        for file in set.file {
            for message in file.messageType { add(message, prefix: file.package) }
            for e in file.enumType { enums[file.package.isEmpty ? e.name : "\(file.package).\(e.name)"] = e.value.map(\.number) }
            for service in file.service {
                let serviceName = file.package.isEmpty ? service.name : "\(file.package).\(service.name)"
                for m in service.method {
                    methods.append(Method(
                        service: serviceName, name: m.name, input: strip(m.inputType),
                        clientStreaming: m.clientStreaming, serverStreaming: m.serverStreaming))
                }
            }
        }
        self.methods = methods
        self.messages = messages
        self.enums = enums
    }
}
