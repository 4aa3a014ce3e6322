import Foundation
import Glibc
import MillraceFormat
import MillraceWire
import NIOCore

/// A blocking socket client for tests: sends frames, reads frames, and can send raw bytes.
final class TestClient {
    let descriptor: Int32
    private var pending: [Int32: (api: ApiKey, version: Int16)] = [:]
    private var nextCorrelation: Int32 = 1

    init(port: Int) throws {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else { throw MillraceError(.unexpected, "connect failed: \(errno)") }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(descriptor) }

    func sendRaw(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let count = bytes[sent...].withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard count > 0 else { throw MillraceError(.unexpected, "send failed: \(errno)") }
            sent += count
        }
    }

    @discardableResult
    func send(_ request: Request) throws -> Int32 {
        let correlation = nextCorrelation
        nextCorrelation += 1
        var buffer = ByteBuffer()
        RequestCodec.encode(request, correlationID: correlation, into: &buffer)
        pending[correlation] = (request.apiKey, request.apiVersion)
        try sendRaw(Array(buffer.readableBytesView))
        return correlation
    }

    /// Reads exactly `count` bytes; nil when the server closed the connection first.
    func receiveRaw(_ count: Int) throws -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: count)
        var received = 0
        while received < count {
            let got = bytes[received...].withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if got == 0 { return nil }
            guard got > 0 else { throw MillraceError(.unexpected, "recv failed: \(errno)") }
            received += got
        }
        return bytes
    }

    /// The next response frame, decoded with the API of the request it answers.
    func receive() throws -> Response? {
        guard let sizeBytes = try receiveRaw(4) else { return nil }
        let size = sizeBytes.reduce(0) { $0 << 8 | Int($1) }
        guard let body = try receiveRaw(size) else { return nil }
        let correlation = Int32(bitPattern: UInt32(body[0..<4].reduce(0) { $0 << 8 | UInt32($1) }))
        let sent = pending.removeValue(forKey: correlation) ?? (.apiVersions, 0)
        return try ResponseCodec.decode(frame: ByteBuffer(bytes: body), apiKey: sent.api, apiVersion: sent.version)
    }

    func call(_ request: Request) throws -> Response {
        let correlation = try send(request)
        guard let response = try receive() else { throw MillraceError(.unexpected, "connection closed") }
        guard response.correlationID == correlation else { throw MillraceError(.unexpected, "response out of order") }
        return response
    }

    /// True once the server has closed the connection: reads reach end-of-stream, or a reset
    /// (a close with requests still unread in the server's socket is a reset). False when
    /// nothing comes for the receive timeout, or when more than `bytesMax` arrive first (a
    /// server still answering a pipeline must not keep a test reading forever).
    func isClosedByServer(bytesMax: Int = 64 << 20) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        var received = 0
        while received <= bytesMax {
            let got = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if got == 0 { return true }
            if got < 0 { return errno == ECONNRESET }
            received += got
        }
        return false
    }

    /// True when the server has closed or reset the connection, seen without reading what it
    /// sent (a client that never reads stays one).
    func hasBeenClosedByServer() -> Bool {
        let peerHungUp: Int16 = 0x2000  // POLLRDHUP (Linux; Glibc leaves it out without _GNU_SOURCE)
        var watched = pollfd(fd: descriptor, events: peerHungUp, revents: 0)
        guard poll(&watched, 1, 0) == 1 else { return false }
        return watched.revents & (peerHungUp | Int16(POLLHUP) | Int16(POLLERR)) != 0
    }
}
