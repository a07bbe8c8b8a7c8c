import Foundation
import Testing
import TwinApp
import TwinCore

@Suite struct NotifyConfigTextTests {
    /// Deeply nested YAML (up to the 1 MiB a SetNotifyConfig or SetAlertRules text may hold) is
    /// refused with a message, on a task like the RPC's, never a crash.
    @Test func deeplyNestedTextIsRefused() async {
        for opener in ["[", "{a: ", "- "] {
            let text = String(repeating: opener, count: (1 << 20) / opener.utf8.count)
            await Task.detached {
                #expect(throws: TwinError.self) { try NotifyConfig.parse(text, source: "test") }
                #expect(throws: TwinError.self) { try AlertRules.parse(text, source: "test", defaultHold: Time.second, defaultClear: Time.minute) }
            }.value
        }
    }
}
