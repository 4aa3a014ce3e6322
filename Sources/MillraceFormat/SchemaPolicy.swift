/// How a new schema version must relate to the ones before it (Confluent Schema Registry's
/// modes). "Backward": consumers using the new version can read data written with the
/// previous one; "forward": consumers using the previous version can read data written with
/// the new one; "full": both. The `-transitive` forms compare with every earlier version,
/// not only the latest. See docs/SCHEMAS.md.
public enum SchemaCompatibility: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// Any change is accepted ("none" in Confluent's terms).
    case noChecks = 0
    case backward = 1
    case backwardTransitive = 2
    case forward = 3
    case forwardTransitive = 4
    case full = 5
    case fullTransitive = 6

    public var description: String {
        switch self {
        case .noChecks: "none"
        case .backward: "backward"
        case .backwardTransitive: "backward-transitive"
        case .forward: "forward"
        case .forwardTransitive: "forward-transitive"
        case .full: "full"
        case .fullTransitive: "full-transitive"
        }
    }

    public init?(name: String) {
        guard let found = Self.allCases.first(where: { $0.description == name }) else { return nil }
        self = found
    }

    /// New data must be readable with old schemas (forward, full).
    public var checksForward: Bool { self == .forward || self == .forwardTransitive || self == .full || self == .fullTransitive }
    /// Old data must be readable with the new schema (backward, full).
    public var checksBackward: Bool { self == .backward || self == .backwardTransitive || self == .full || self == .fullTransitive }
    public var isTransitive: Bool { self == .backwardTransitive || self == .forwardTransitive || self == .fullTransitive }
}

/// What the broker does with a record that breaks its topic's schema.
public enum InvalidRecordPolicy: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// No record of that partition's batch is appended; the answer names each bad record.
    case reject = 0
    /// Invalid records go to `<topic>.quarantine` with headers naming the error; valid ones
    /// are appended.
    case quarantine = 1

    public var description: String { self == .reject ? "reject" : "quarantine" }

    /// What a topic's quarantine is called: the topic's name and this.
    public static let quarantineSuffix = ".quarantine"

    public init?(name: String) {
        guard let found = Self.allCases.first(where: { $0.description == name }) else { return nil }
        self = found
    }
}
