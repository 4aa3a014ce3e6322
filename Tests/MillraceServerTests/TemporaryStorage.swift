import Foundation
import MillraceStorage
import Testing

/// A small storage in a fresh temporary directory, closed and removed after `body`.
func withTemporaryStorage(_ name: String, _ body: (Storage) async throws -> Void) async throws {
    var template = Array((NSTemporaryDirectory() + "millrace-\(name)-XXXXXX").utf8CString)
    let path = String(cString: try #require(template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }))
    defer { try? FileManager.default.removeItem(atPath: path) }
    var options = Storage.Options()
    options.retentionCheckIntervalMs = nil
    options.initialMapSizeBytes = 64 << 20
    options.reserveBytes = 1 << 20
    let storage = try Storage.open(directory: path, options: options)
    defer { storage.close() }
    try await body(storage)
}
