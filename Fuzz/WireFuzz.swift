// libFuzzer entry point for the protocol and record-batch decoders; built and run by
// scripts/fuzz, never by `swift build`. Every input must decode or fail cleanly.
import MillraceFormat
import MillraceWire
import NIOCore

@_cdecl("LLVMFuzzerTestOneInput")
public func millraceFuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    var stream = ByteBuffer(bytes: bytes)
    while let frame = try? FrameDecoder.nextFrame(&stream, minimumBytes: RequestHeader.bytes) {
        _ = RequestCodec.decode(frame: frame)
    }
    for api in ApiKey.allCases {
        var buffer = ByteBuffer(bytes: bytes)
        if let frame = try? FrameDecoder.nextFrame(&buffer, minimumBytes: ResponseCodec.minimumFrameBytes, frameBytesMax: Limits.responseFrameBytesMax) {
            _ = try? ResponseCodec.decode(frame: frame, apiKey: api)
        }
    }
    _ = try? RecordBatch.decode(Array(bytes))
    return 0
}

// SwiftPM links an executable's entry point as `<module>_main`; hand control to libFuzzer's
// driver from there.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

@_cdecl("WireFuzz_main")
public func wireFuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var arguments = argv
    return LLVMFuzzerRunDriver(&count, &arguments, millraceFuzz)
}
