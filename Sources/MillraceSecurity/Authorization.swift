import Foundation

/// What a request does to a resource. `describe` (seeing that it exists, its configuration
/// and offsets) comes with every other operation on the same resource; `admin` on the
/// cluster comes with every operation on everything.
public enum SecurityOperation: String, CaseIterable, Sendable, Comparable {
    case read, write, create, delete, alter, describe, admin

    public static func < (lhs: Self, rhs: Self) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}

/// What an ACL entry names.
public enum ResourceType: String, CaseIterable, Sendable, Comparable {
    case topic, group, subject, cluster

    public static func < (lhs: Self, rhs: Self) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}

/// A resource a request touches: a topic, a group, a topic's schema subject, or the cluster
/// (named "cluster").
public struct Resource: Hashable, Sendable, CustomStringConvertible {
    public var type: ResourceType
    public var name: String

    public init(_ type: ResourceType, _ name: String) {
        self.type = type
        self.name = name
    }

    public static let cluster = Resource(.cluster, "cluster")
    public static func topic(_ name: String) -> Resource { Resource(.topic, name) }
    public static func group(_ name: String) -> Resource { Resource(.group, name) }
    public static func subject(_ name: String) -> Resource { Resource(.subject, name) }

    public var description: String { type == .cluster ? "the cluster" : "\(type.rawValue) \(name)" }

    /// Internal resources (the `_audit` topic) start with "_"; the pattern `*` does not
    /// reach them, only a pattern that names them.
    public var isInternal: Bool { name.hasPrefix("_") }
}

/// Which names an ACL entry covers: `*` (every name not starting with "_"), a prefix ending
/// in `*` (`plant.PL03.*`), or one literal name. `{scope}` stands for the principal's scope
/// (its plant or supplier), so one role serves every plant.
public struct ResourcePattern: Hashable, Sendable, CustomStringConvertible {
    public let text: String

    public static let scopePlaceholder = "{scope}"
    public static let any = ResourcePattern(unchecked: "*")

    init(unchecked text: String) { self.text = text }

    /// Checks the characters: a topic name's (`[A-Za-z0-9._-]`), at most one `*` at the end,
    /// and `{scope}`.
    public init(_ text: String) throws(SecurityError) {
        var rest = text.replacingOccurrences(of: Self.scopePlaceholder, with: "s")
        if rest.hasSuffix("*") { rest.removeLast() }
        guard !text.isEmpty, text.utf8.count <= 255 else { throw SecurityError("a resource pattern is 1...255 characters") }
        for byte in rest.utf8 {
            let ok = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || byte == 0x2E || byte == 0x5F || byte == 0x2D
            guard ok else {
                throw SecurityError(
                    "resource pattern \"\(text)\" may use letters, digits, '.', '_', '-', {scope}, and one '*' at the end (a prefix)")
            }
        }
        self.text = text
    }

    public var isPrefix: Bool { text.hasSuffix("*") }
    public var description: String { text }

    /// Whether `name` is covered, for a principal whose scope is `scope`. A pattern holding
    /// `{scope}` covers nothing for a principal without one.
    public func matches(_ name: String, scope: String?) -> Bool {
        var pattern = text
        if pattern.contains(Self.scopePlaceholder) {
            guard let scope, !scope.isEmpty else { return false }
            pattern = pattern.replacingOccurrences(of: Self.scopePlaceholder, with: scope)
        }
        if pattern == "*" { return !name.hasPrefix("_") }
        if pattern.hasSuffix("*") { return name.hasPrefix(pattern.dropLast()) }
        return name == pattern
    }
}

public enum ACLEffect: String, CaseIterable, Sendable {
    case allow, deny
}

/// One rule: allow or deny one operation on the resources a pattern covers.
public struct ACLEntry: Hashable, Sendable, CustomStringConvertible {
    public var effect: ACLEffect
    public var operation: SecurityOperation
    public var resourceType: ResourceType
    public var pattern: ResourcePattern

    public init(_ effect: ACLEffect, _ operation: SecurityOperation, _ resourceType: ResourceType, _ pattern: ResourcePattern) {
        self.effect = effect
        self.operation = operation
        self.resourceType = resourceType
        self.pattern = pattern
    }

    public var description: String {
        resourceType == .cluster ? "\(effect.rawValue) \(operation.rawValue) cluster" : "\(effect.rawValue) \(operation.rawValue) \(resourceType.rawValue) \(pattern)"
    }

    /// Whether this entry speaks to `operation` on `resource`. An allow of any operation
    /// carries `describe` with it; an allow of `admin` on the cluster carries everything. A
    /// deny speaks only to the operation it names (a deny of `admin` to every operation).
    func covers(_ operation: SecurityOperation, on resource: Resource, scope: String?) -> Bool {
        if self.operation == .admin && resourceType == .cluster { return true }
        guard resourceType == resource.type else { return false }
        guard resourceType == .cluster || pattern.matches(resource.name, scope: scope) else { return false }
        if self.operation == operation { return true }
        return effect == .allow && operation == .describe
    }
}

/// Who is making a request: a user that logged in (SCRAM), a client certificate's subject,
/// or nobody (`anonymous`), with the roles and scope its user record holds.
public struct Principal: Hashable, Sendable, CustomStringConvertible {
    public enum Authentication: String, Sendable {
        /// `serve --auth off`: every request is allowed, as before security existed.
        case none
        /// Not logged in, with `--auth optional`: the `anonymous` role's rights.
        case anonymous
        case password
        case certificate
        /// The broker itself (re-drives, audit records).
        case broker
    }

    public var name: String
    public var roles: [String]
    public var scope: String?
    public var authentication: Authentication

    public init(name: String, roles: [String], scope: String? = nil, authentication: Authentication) {
        self.name = name
        self.roles = roles
        self.scope = scope
        self.authentication = authentication
    }

    /// Every request allowed: the broker with `--auth off`, and its own work.
    public static let unrestricted = Principal(name: "anonymous", roles: [], authentication: .none)
    public static let broker = Principal(name: "broker", roles: [], authentication: .broker)
    public static let anonymous = Principal(name: "anonymous", roles: [SecurityState.anonymousRole], authentication: .anonymous)

    public var isUnrestricted: Bool { authentication == .none || authentication == .broker }
    public var description: String { name }
}

/// An authorization decision and the entry (or the lack of one) that made it, for the error
/// a refused client reads and the audit record.
public struct Decision: Equatable, Sendable {
    public var allowed: Bool
    /// "role plant-system: allow write topic plant.{scope}.*", or why nothing allowed it.
    public var reason: String
}

/// A refused or invalid security change or login; the message says what to do.
public struct SecurityError: Error, Equatable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
    public init(_ message: String) { self.message = message }
}
