import Foundation
import TwinApp
import TwinCore

/// The one paging scheme of every list RPC: `page_size` (0 → the method's default, at most
/// 10,000) and an opaque `page_token` that only this server makes. A token names the list it
/// came from and where the next page starts; one from another list, or made up, is
/// PAGE_TOKEN_INVALID.
struct Page {
    static let maximumSize = 10_000

    /// The page size a request asked for, or `defaultSize`.
    static func size(_ requested: Int32, default defaultSize: Int) throws(TwinError) -> Int {
        guard requested >= 0 && Int(requested) <= maximumSize else {
            throw TwinError.invalidArgument("page_size must be from 0 to \(maximumSize), got \(requested)").field("page_size")
        }
        return requested == 0 ? defaultSize : Int(requested)
    }

    /// A token for `list` continuing at `cursor`.
    static func token(_ list: String, _ cursor: String) -> String {
        Data("\(list)\n\(cursor)".utf8).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    /// The cursor in `token` (nil for an empty token, the first page), or PAGE_TOKEN_INVALID.
    static func cursor(_ token: String, list: String) throws(TwinError) -> String? {
        if token.isEmpty { return nil }
        var base64 = token.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        guard token.utf8.count <= 1_024, let data = Data(base64Encoded: base64), let text = String(data: data, encoding: .utf8),
              let newline = text.firstIndex(of: "\n"), text[..<newline] == list
        else {
            throw TwinError.invalidArgument("page_token '\(token.prefix(40))' is not one this server gave out for this list; start again without it",
                                            reason: .pageTokenInvalid).field("page_token")
        }
        return String(text[text.index(after: newline)...])
    }
}
