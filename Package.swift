// swift-tools-version:6.2
import PackageDescription

let strict: [SwiftSetting] = [.treatAllWarnings(as: .error)]

let package = Package(
    name: "Millrace",
    // Linux only: no `platforms` claim (docs/DECISIONS.md, "Linux only, said so").
    products: [
        .executable(name: "millrace", targets: ["millrace"]),
        .executable(name: "millrace-bench", targets: ["millrace-bench"]),
        .library(name: "MillraceFormat", targets: ["MillraceFormat"]),
        .library(name: "MillraceStorage", targets: ["MillraceStorage"]),
        .library(name: "MillraceSchema", targets: ["MillraceSchema"]),
        .library(name: "MillraceWire", targets: ["MillraceWire"]),
        .library(name: "MillraceKafka", targets: ["MillraceKafka"]),
        .library(name: "MillraceServer", targets: ["MillraceServer"]),
        .library(name: "MillraceSecurity", targets: ["MillraceSecurity"]),
        .library(name: "MillraceClient", targets: ["MillraceClient"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        // `swift package generate-documentation --target MillraceClient` (docs only; nothing links it).
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(name: "CLMDB", path: "Sources/CLMDB", pkgConfig: "lmdb", providers: [.apt(["liblmdb-dev"])]),
        .systemLibrary(name: "CZstd", path: "Sources/CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        // Hardware CRC-32C (SSE4.2) with a portable fallback; see docs/DECISIONS.md.
        .target(name: "CMillraceCRC", path: "Sources/CMillraceCRC"),
        .target(name: "MillraceFormat", dependencies: ["CZstd", "CMillraceCRC"], swiftSettings: strict),
        .target(name: "MillraceStorage", dependencies: ["CLMDB", "MillraceFormat", "MillraceSchema"], swiftSettings: strict),
        // JSON scanner, JSON Schema compiler and validator: pure, no Foundation.
        .target(name: "MillraceSchema", dependencies: ["MillraceFormat"], swiftSettings: strict),
        .target(
            name: "MillraceWire",
            dependencies: ["MillraceFormat", "MillraceSecurity", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strict),
        // The Kafka wire protocol's primitives, header and messages (issue 25), beside the
        // native one; the server will serve them with the same connection state machine.
        .target(
            name: "MillraceKafka",
            dependencies: ["MillraceFormat", "MillraceWire", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strict),
        // Authentication (issue 26): SCRAM-SHA-256/512 (RFC 5802, RFC 7677) for both protocols.
        .target(
            name: "MillraceSecurity",
            dependencies: ["MillraceFormat", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strict),
        .target(
            name: "MillraceServer",
            dependencies: [
                "MillraceStorage", "MillraceWire", "MillraceKafka", "MillraceFormat", "MillraceSchema", "MillraceSecurity",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict),
        .target(
            name: "MillraceClient",
            dependencies: [
                "MillraceWire", "MillraceFormat", "MillraceSchema", "MillraceSecurity",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict),
        .executableTarget(
            name: "millrace",
            dependencies: [
                "MillraceStorage", "MillraceFormat", "MillraceServer", "MillraceWire", "MillraceClient", "MillraceSchema", "MillraceSecurity",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict),
        // simdjson behind a C API, only for the parser comparison in `millrace-bench schema`
        // (docs/DECISIONS.md, "The JSON parser").
        .target(
            name: "CSimdjson", path: "bench/CSimdjson", cxxSettings: [.unsafeFlags(["-std=c++17", "-O3"])],
            linkerSettings: [.linkedLibrary("simdjson")]),
        .executableTarget(
            name: "millrace-bench",
            dependencies: [
                "MillraceStorage", "MillraceFormat", "CLMDB", "MillraceClient", "MillraceWire", "MillraceSchema", "CSimdjson",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "bench/millrace-bench",
            swiftSettings: strict),
        // A child process for the crash test: appends, prints each acknowledgement, gets SIGKILLed.
        .executableTarget(
            name: "millrace-crashwriter",
            dependencies: ["MillraceStorage", "MillraceFormat"],
            path: "Tests/CrashWriter",
            swiftSettings: strict),
        .target(
            name: "TestSupport",
            dependencies: [
                "MillraceFormat",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Tests/TestSupport", swiftSettings: strict),
        .testTarget(name: "MillraceFormatTests", dependencies: ["MillraceFormat", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "MillraceSchemaTests", dependencies: ["MillraceSchema", "MillraceFormat", "TestSupport"], swiftSettings: strict),
        .testTarget(
            name: "MillraceStorageTests",
            dependencies: ["MillraceStorage", "MillraceFormat", "CLMDB", "TestSupport"],
            swiftSettings: strict),
        .testTarget(
            name: "MillraceWireTests", dependencies: ["MillraceWire", "MillraceKafka", "MillraceFormat", "TestSupport"], swiftSettings: strict),
        .testTarget(
            name: "MillraceKafkaTests",
            dependencies: ["MillraceKafka", "MillraceWire", "MillraceFormat", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strict),
        .testTarget(name: "MillraceSecurityTests", dependencies: ["MillraceSecurity", "MillraceFormat"], swiftSettings: strict),
        .testTarget(
            name: "MillraceServerTests",
            dependencies: [
                "MillraceServer", "MillraceStorage", "MillraceFormat", "MillraceWire", "TestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict),
        .testTarget(
            name: "MillraceClientTests",
            dependencies: [
                "MillraceClient", "MillraceWire", "MillraceFormat",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: strict),
        .testTarget(
            name: "EndToEndTests",
            dependencies: [
                "MillraceServer", "MillraceStorage", "MillraceWire", "MillraceFormat", "MillraceClient", "MillraceSecurity", "MillraceKafka", "TestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict),
        .testTarget(
            name: "MillraceCLITests",
            dependencies: [
                "MillraceStorage", "MillraceFormat", "MillraceServer", "MillraceClient", "MillraceWire", "TestSupport",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
    ]
)
