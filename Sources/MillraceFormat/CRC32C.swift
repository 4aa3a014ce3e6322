import CMillraceCRC

/// CRC-32C (Castagnoli), the checksum of RecordBatch v2.
public enum CRC32C {
    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return 0 }
        return millrace_crc32c_update(0xFFFF_FFFF, base, bytes.count) ^ 0xFFFF_FFFF
    }

    public static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0) }
    }

    /// True when the SSE4.2 instruction path is in use.
    public static var isHardwareAccelerated: Bool { millrace_crc32c_is_hardware() != 0 }

    /// The portable table path alone (for tests that compare both paths).
    public static func portableChecksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return 0 }
        return millrace_crc32c_update_portable(0xFFFF_FFFF, base, bytes.count) ^ 0xFFFF_FFFF
    }
}
