// swift-tools-version:6.0
// Two services an integration team writes against the Millrace client: an MES simulator that
// produces confirmations and genealogy events, and an ERP poster that consumes them as a
// consumer group. Depends on the Millrace package by path (one directory up, twice).
import PackageDescription

let package = Package(
    name: "PlantIntegration",
    // Linux only, as Millrace itself (its docs/DECISIONS.md, "Linux only, said so").
    dependencies: [
        .package(name: "Millrace", path: "../.."),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        .target(name: "PlantEvents", path: "Sources/PlantEvents"),
        .executableTarget(
            name: "mes-simulator",
            dependencies: ["PlantEvents", .product(name: "MillraceClient", package: "Millrace")],
            path: "Sources/mes-simulator"),
        .executableTarget(
            name: "erp-poster",
            dependencies: [
                "PlantEvents", .product(name: "MillraceClient", package: "Millrace"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"), .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/erp-poster"),
    ]
)
