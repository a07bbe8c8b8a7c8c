import Foundation
import Testing
import TwinCore
@testable import TwinStore

@Suite struct KeyRingTests {
    func tempDir() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("keys-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        return dir
    }

    @Test func firstStartGeneratesAPrivateKeyAndReusesIt() throws {
        let dir = try tempDir()
        let first = try KeyRing.load(keyFile: nil, environment: [:], dataDirectory: dir)
        #expect(first.generated)
        let mode = try FileManager.default.attributesOfItem(atPath: dir + "/twind.key")[.posixPermissions] as? Int
        #expect(mode == 0o600)
        let again = try KeyRing.load(keyFile: nil, environment: [:], dataDirectory: dir)
        #expect(!again.generated)
        #expect(again.current.id == first.current.id)
    }

    @Test func sourcesInOrderKeyFileThenCredentialThenEnvironment() throws {
        let dir = try tempDir()
        let a = MasterKey.generate(), b = MasterKey.generate(), c = MasterKey.generate()
        let file = dir + "/a.key"
        try KeyRing.create(file, contents: a.base64 + "\n")
        let credentials = try tempDir()
        try KeyRing.create(credentials + "/twind.key", contents: b.base64)
        let env = ["TWIND_KEY": c.base64, "CREDENTIALS_DIRECTORY": credentials]
        #expect(try KeyRing.load(keyFile: file, environment: env, dataDirectory: dir).current.id == a.id)
        #expect(try KeyRing.load(keyFile: nil, environment: env, dataDirectory: dir).current.id == b.id)
        #expect(try KeyRing.load(keyFile: nil, environment: ["TWIND_KEY": c.base64], dataDirectory: dir).current.id == c.id)
        #expect(try KeyRing.load(keyFile: nil, environment: ["TWIND_KEY_FILE": file], dataDirectory: dir).current.id == a.id)
    }

    @Test func rotatedFileKeepsOldKeysAndUsesTheLast() throws {
        let old = MasterKey.generate(), new = MasterKey.generate()
        let keys = try KeyRing.parse(Array("# twin keys\n\(old.base64)\n\n\(new.base64)\n".utf8), what: "test")
        #expect(keys.map(\.id) == [old.id, new.id])
    }

    @Test func badKeysAreRefusedWithoutEchoingThem() throws {
        let secret = "c2VjcmV0LW5vdC1hLWtleQ=="
        let dir0 = try tempDir()
        do throws(TwinError) {
            _ = try KeyRing.load(keyFile: nil, environment: ["TWIND_KEY": secret], dataDirectory: dir0)
            Issue.record("a 17-byte key must be refused")
        } catch {
            #expect(error.message.contains("TWIND_KEY"))
            #expect(!error.message.contains(secret))
        }
        let dir = try tempDir()
        let loose = dir + "/loose.key"
        try (MasterKey.generate().base64 + "\n").write(toFile: loose, atomically: true, encoding: .utf8)
        chmod(loose, 0o644)
        #expect(throws: TwinError.self) { try KeyRing.load(keyFile: loose, environment: [:], dataDirectory: dir) }
    }
}
