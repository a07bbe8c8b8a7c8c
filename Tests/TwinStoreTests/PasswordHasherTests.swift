import Testing
@testable import TwinStore

@Suite struct PasswordHasherTests {
    @Test func hashesVerifyAndCarryTheirParameters() throws {
        let hasher = PasswordHasher.testing
        let hash = try hasher.hash("correct horse battery staple")
        #expect(hash.hasPrefix("$argon2id$v=19$m=1024,t=1,p=1$"))
        #expect(PasswordHasher.verify("correct horse battery staple", against: hash))
        #expect(!PasswordHasher.verify("correct horse battery stapler", against: hash))
        #expect(!PasswordHasher.verify("anything", against: "not a hash"))
        // The same password hashes differently each time (fresh salt).
        #expect(try hasher.hash("correct horse battery staple") != hash)
        // Raising the configured cost marks old hashes for rehashing at the next login.
        #expect(!hasher.needsRehash(hash))
        #expect(PasswordHasher(iterations: 2, memoryKiB: 1024, parallelism: 1).needsRehash(hash))
        #expect(PasswordHasher(iterations: 1, memoryKiB: 4096, parallelism: 1).needsRehash(hash))
    }
}
