// libFuzzer entry point for the protocol and record-batch decoders, and for request dispatch
// against a real storage; built and run by scripts/fuzz, never by `swift build`. Every input
// must decode or fail cleanly, and every request be answered without a trap.
import Foundation
import MillraceFormat
import MillraceKafka
import MillraceSchema
import MillraceServer
import MillraceStorage
import MillraceWire
import NIOCore
import NIOPosix

/// A storage in a fresh directory with two topics, shared by every input.
let fuzzStorage: Storage = {
    let directory = NSTemporaryDirectory() + "millrace-fuzz-\(getpid())"
    var options = Storage.Options()
    options.initialMapSizeBytes = 64 << 20
    options.reserveBytes = 0
    let storage = try! Storage.open(directory: directory, options: options)
    let done = DispatchSemaphore(value: 0)
    storage.createTopic("t", partitions: 2) { _ in done.signal() }
    done.wait()
    storage.createTopic("u", partitions: 1) { _ in done.signal() }
    done.wait()
    return storage
}()
let fuzzResponder = FrameResponder(storage: fuzzStorage, maxWaitCapMs: 0)
let fuzzLoop = MultiThreadedEventLoopGroup.singleton.next()

@_cdecl("LLVMFuzzerTestOneInput")
public func millraceFuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    var stream = ByteBuffer(bytes: bytes)
    while let frame = try? FrameDecoder.nextFrame(&stream, minimumBytes: RequestHeader.bytes) {
        _ = RequestCodec.decode(frame: frame)
        _ = try? fuzzResponder.respond(to: frame, on: fuzzLoop).wait()
    }
    for api in ApiKey.allCases {
        var buffer = ByteBuffer(bytes: bytes)
        if let frame = try? FrameDecoder.nextFrame(&buffer, minimumBytes: ResponseCodec.minimumFrameBytes, frameBytesMax: Limits.responseFrameBytesMax) {
            _ = try? ResponseCodec.decode(frame: frame, apiKey: api)
        }
    }
    // The input as Kafka request frames (issue 25): each through the Kafka listener's own path
    // (header, body at its version, carried out against the storage, answer encoded), and
    // every request body and answer decoded at every version.
    var kafkaStream = ByteBuffer(bytes: bytes)
    while let frame = try? FrameDecoder.nextFrame(&kafkaStream, minimumBytes: 10) {
        let answered = DispatchSemaphore(value: 0)
        // A SyncGroup from a follower waits for its leader's, which may never come: bounded.
        fuzzResponder.respondKafka(to: frame, on: fuzzLoop).whenComplete { _ in answered.signal() }
        _ = answered.wait(timeout: .now() + 1)
    }
    for version in Int16(0)...11 {
        func each(_ read: (inout ByteBuffer) throws -> Void) {
            var buffer = ByteBuffer(bytes: bytes)
            _ = try? read(&buffer)
        }
        if KafkaApiVersions.versions.contains(version) {
            each { _ = try KafkaApiVersions.Request(from: &$0, version: version) }
            each { _ = try KafkaApiVersions.Response(from: &$0, version: version) }
        }
        if KafkaMetadata.versions.contains(version) {
            each { _ = try KafkaMetadata.Request(from: &$0, version: version) }
            each { _ = try KafkaMetadata.Response(from: &$0, version: version) }
        }
        if KafkaListOffsets.versions.contains(version) {
            each { _ = try KafkaListOffsets.Request(from: &$0, version: version) }
            each { _ = try KafkaListOffsets.Response(from: &$0, version: version) }
        }
        if KafkaFindCoordinator.versions.contains(version) {
            each { _ = try KafkaFindCoordinator.Request(from: &$0, version: version) }
            each { _ = try KafkaFindCoordinator.Response(from: &$0, version: version) }
        }
        if KafkaMembership.versions.contains(version) {
            each { _ = try KafkaMembership.Heartbeat(from: &$0, version: version) }
            each { _ = try KafkaMembership.LeaveGroup(from: &$0, version: version) }
            each { _ = try KafkaMembership.Response(from: &$0, version: version, api: .leaveGroup) }
        }
        if KafkaProduce.versions.contains(version) {
            each { _ = try KafkaProduce.Request(from: &$0, version: version) }
            each { _ = try KafkaProduce.Response(from: &$0, version: version) }
        }
        if KafkaFetch.versions.contains(version) {
            each { _ = try KafkaFetch.Request(from: &$0, version: version) }
            each { _ = try KafkaFetch.Response(from: &$0, version: version) }
        }
        if KafkaGroups.joinVersions.contains(version) {
            each { _ = try KafkaGroups.JoinRequest(from: &$0, version: version) }
            each { _ = try KafkaGroups.JoinResponse(from: &$0, version: version) }
        }
        if KafkaGroups.syncVersions.contains(version) {
            each { _ = try KafkaGroups.SyncRequest(from: &$0, version: version) }
            each { _ = try KafkaGroups.SyncResponse(from: &$0, version: version) }
        }
        if KafkaGroups.offsetCommitVersions.contains(version) {
            each { _ = try KafkaGroups.OffsetCommitRequest(from: &$0, version: version) }
            each { _ = try KafkaGroups.OffsetCommitResponse(from: &$0, version: version) }
        }
        if KafkaGroups.offsetFetchVersions.contains(version) {
            each { _ = try KafkaGroups.OffsetFetchRequest(from: &$0, version: version) }
            each { _ = try KafkaGroups.OffsetFetchResponse(from: &$0, version: version) }
        }
        if KafkaGroups.describeVersions.contains(version) { each { _ = try KafkaGroups.DescribeRequest(from: &$0, version: version) } }
        if KafkaAdmin.initProducerIdVersions.contains(version) {
            each { _ = try KafkaAdmin.InitProducerIdRequest(from: &$0, version: version) }
            each { _ = try KafkaAdmin.InitProducerIdResponse(from: &$0, version: version) }
        }
        if KafkaAdmin.createTopicsVersions.contains(version) {
            each { _ = try KafkaAdmin.CreateTopicsRequest(from: &$0, version: version) }
            each { _ = try KafkaAdmin.CreateTopicsResponse(from: &$0, version: version) }
        }
        if KafkaAdmin.deleteTopicsVersions.contains(version) {
            each { _ = try KafkaAdmin.DeleteTopicsRequest(from: &$0, version: version) }
            each { _ = try KafkaAdmin.DeleteTopicsResponse(from: &$0, version: version) }
        }
        if KafkaAdmin.describeConfigsVersions.contains(version) { each { _ = try KafkaAdmin.DescribeConfigsRequest(from: &$0, version: version) } }
        if KafkaSASL.handshakeVersions.contains(version) { each { _ = try KafkaSASL.HandshakeRequest(from: &$0, version: version) } }
        if KafkaSASL.authenticateVersions.contains(version) {
            each { _ = try KafkaSASL.AuthenticateRequest(from: &$0, version: version) }
            each { _ = try KafkaSASL.AuthenticateResponse(from: &$0, version: version) }
        }
    }
    _ = KafkaConsumerProtocol.subscribedTopics(Array(bytes))
    _ = KafkaConsumerProtocol.assignedPartitions(Array(bytes))
    _ = try? Array(bytes).withUnsafeBytes { try RecordBatch.withoutDictionary($0) }
    _ = try? RecordBatch.decode(Array(bytes))
    // The input as a schema document, and as a record checked against a fixed schema.
    // Work on both is bounded (issue 22): a recursive schema or record must finish within
    // its step budget, answered or refused, never hang the fuzzer.
    if let schema = try? Schema(json: Array(bytes)) {
        _ = schema.validate(json: Array(#"{"a":[1,"x",{"b":null}],"c":-2.5e3}"#.utf8))
        _ = schema.validate(json: Array(String(repeating: #"{"a":"#, count: 40).utf8) + Array("1".utf8) + Array(repeating: UInt8(ascii: "}"), count: 40))
        _ = try? schema.accepts(everythingAcceptedBy: fuzzSchema)
        for other in [fuzzSchema, fuzzRecursive] {
            _ = try? Schema.compatibilityProblems(new: schema, earlier: [(1, other)], mode: .full)
            _ = try? Schema.compatibilityProblems(new: other, earlier: [(1, schema)], mode: .fullTransitive)
        }
    }
    _ = fuzzSchema.validate(json: Array(bytes), limit: 5)
    _ = fuzzRecursive.validate(json: Array(bytes), limit: 5)
    // The input as a record whose dedup key is read at a pointer, scanned and parsed; and as
    // a batch records are taken out of.
    Array(bytes).withUnsafeBufferPointer { text in
        for pointer in fuzzPointers {
            let scanned = pointer.keyHash(scanning: text)
            var tape = JSONTape()
            if (try? tape.index(text, depthMax: 64)) != nil, text.allSatisfy({ $0 < 0x80 }), pointer.keyHash(in: tape, text: text) != scanned {
                fatalError("the scanned and the parsed dedup key differ")
            }
        }
    }
    if let header = try? Array(bytes).withUnsafeBytes({ try RecordBatch.verify($0) }), header.recordCount < 10_000 {
        _ = try? RecordBatch.keeping((0..<Int(header.recordCount)).map { $0 % 3 != 1 }, of: Array(bytes))
    }
    return 0
}

let fuzzPointers = ["/a", "/a/0", "/a/2/b", "/c", ""].compactMap { try? JSONPointer($0) }

/// A schema using every supported keyword, for records the fuzzer makes up.
let fuzzSchema = try! Schema(
    json: Array(
        ##"{"$defs":{"n":{"type":"number","minimum":-5,"exclusiveMaximum":1e6}},"type":"object","properties":{"a":{"type":"array","items":{"anyOf":[{"$ref":"#/$defs/n"},{"type":"string","pattern":"^[a-z]+\\d?$","maxLength":8},{"type":"object","additionalProperties":{"enum":[null,true]}}]}},"c":{"oneOf":[{"type":"integer"},{"$ref":"#/$defs/n"}]},"t":{"type":"string","format":"date-time"},"k":{"const":"x"}},"required":["a"],"additionalProperties":false}"##
            .utf8))

/// Recursion through two anyOf branches and a oneOf (2^depth work without remembered answers).
let fuzzRecursive = try! Schema(
    json: Array(
        ##"{"type":["object","array","string"],"anyOf":[{"properties":{"a":{"$ref":"#"}}},{"properties":{"a":{"$ref":"#"}},"items":{"$ref":"#"}}],"oneOf":[{"properties":{"b":{"$ref":"#"}}},{"items":{"$ref":"#"},"pattern":"^(a|b)*c"}]}"##
            .utf8))

// SwiftPM links an executable's entry point as `<module>_main`; hand control to libFuzzer's
// driver from there.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

@_cdecl("WireFuzz_main")
public func wireFuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    // Globals that live for the whole run (the storage, the dispatcher's validation threads,
    // the schema) are made before the first input, so the leak check never counts them.
    _ = fuzzResponder
    _ = fuzzSchema
    _ = fuzzRecursive
    atexit { fuzzResponder.shutdown() }
    var count = argc
    var arguments = argv
    return LLVMFuzzerRunDriver(&count, &arguments, millraceFuzz)
}
