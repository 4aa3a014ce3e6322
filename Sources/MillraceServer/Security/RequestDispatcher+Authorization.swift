import MillraceFormat
import MillraceSecurity
import MillraceWire

// What each native request needs of its principal (docs/SECURITY.md, "Operations"). Kafka
// requests are carried out as native ones, so this table decides for both listeners; the
// Kafka handlers that do not go through `handle` ask `BrokerSecurity` themselves.

extension Request {
    /// Every right the request needs, all of which must be allowed. Requests that list what
    /// exists (ListTopics, ListGroups, Metadata and traces over every topic) need none: their
    /// answers leave out what the principal may not see.
    var requiredRights: [(SecurityOperation, Resource)] {
        switch self {
        case .apiVersions, .authenticate, .whoAmI, .initProducer, .listTopics, .listGroups:
            return []
        case .metadata(let topics):
            return topics.map { (.describe, .topic($0)) }
        case .createTopic(let create):
            return [(.create, .topic(create.name))]
        case .deleteTopic(let name):
            return [(.delete, .topic(name))]
        case .describeTopic(let name), .dedupStatus(let name), .indexStatus(let name):
            return [(.describe, .topic(name))]
        case .getDictionary:
            // Trained on the topic's records, a dictionary holds pieces of them: its readers and
            // its writers (who compress with it) may have it (`authorize` checks either).
            return []
        case .produce(let produce):
            return produce.topics.map { (.write, .topic($0.topic)) }
        case .fetch(let fetch):
            return fetch.topics.map { (.read, .topic($0.topic)) }
        case .listOffsets(let list):
            return list.topics.map { (.describe, .topic($0.topic)) }
        case .joinGroup(let join):
            return [(.read, .group(join.group))] + join.topics.map { (.read, .topic($0)) }
        case .heartbeat(let member), .leaveGroup(let member):
            return [(.read, .group(member.group))]
        case .offsetCommit(let commit):
            return [(.read, .group(commit.group))] + commit.topics.map { (.read, .topic($0.topic)) }
        case .offsetFetch(let fetch):
            return [(.describe, .group(fetch.group))] + fetch.topics.map { (.describe, .topic($0.topic)) }
        case .describeGroup(let group):
            return [(.describe, .group(group))]
        case .deleteGroup(let group):
            return [(.delete, .group(group))]
        case .registerSchema(let register):
            return [(.alter, .subject(register.topic))]
        case .getSchema(let topic, _), .listSchemas(let topic):
            // Producers and consumers read the schemas of the topics they use: describe on
            // the topic (which read and write carry) is enough. The subject governs changes.
            return [(.describe, .topic(topic))]
        case .setSchemaPolicy(let policy):
            return [(.alter, .subject(policy.topic))]
        case .setDedupPolicy(let topic, _, _), .setIndexPolicy(let topic, _):
            return [(.alter, .topic(topic))]
        case .alterTopic(let alter):
            return [(.alter, .topic(alter.topic))]
        case .trainDictionary(let train):
            return [(.alter, .topic(train.topic))]
        case .indexRebuild(let rebuild):
            return [(.alter, .topic(rebuild.topic))]
        case .dedupCheck(let topic, _):
            return [(.read, .topic(topic))]
        case .trace(let trace):
            return trace.topics.map { (.read, .topic($0)) }
        case .walk(let walk):
            return walk.topics.map { (.read, .topic($0)) }
        case .brokerStatus:
            return [(.describe, .cluster)]
        case .describeSecurity:
            return [(.read, .cluster)]
        case .backup, .alterSecurity:
            return [(.admin, .cluster)]
        }
    }
}

extension Request {
    /// What the audit log calls this request when it changes something an administrator
    /// answers for (topics, schemas and policies, group resets and deletes, users, roles, ACL
    /// entries, backups, dictionaries); nil for requests that only read or produce.
    var auditedChange: (operation: String, resource: String)? {
        switch self {
        case .createTopic(let create): ("topic create", "topic \(create.name)")
        case .deleteTopic(let name): ("topic delete", "topic \(name)")
        case .alterTopic(let alter): (alter.owner.map { "topic alter (owner \($0.isEmpty ? "none" : $0))" } ?? "topic alter", "topic \(alter.topic)")
        case .registerSchema(let register) where !register.dryRun: ("schema register", "subject \(register.topic)")
        case .setSchemaPolicy(let policy): ("schema policy", "subject \(policy.topic)")
        case .setDedupPolicy(let topic, _, _): ("dedup policy", "topic \(topic)")
        case .setIndexPolicy(let topic, _): ("index policy", "topic \(topic)")
        case .deleteGroup(let group): ("group delete", "group \(group)")
        case .offsetCommit(let commit) where commit.memberID.isEmpty: ("group reset", "group \(commit.group)")
        case .backup(let backup): ("backup", backup.destination)
        case .trainDictionary(let train): ("dictionary train", "topic \(train.topic)")
        case .alterSecurity(let change): (change.operation, change.target)
        default: nil
        }
    }
}

extension RequestDispatcher {
    static let auditRetentionMinMs: Int64 = 365 * 86_400_000

    /// Throws `notAuthorized` for the first right `principal` lacks. The audit topic is the
    /// broker's alone to write and nobody's to delete, whatever the rights.
    func authorize(_ request: Request, _ principal: Principal) throws {
        switch request {
        case .produce(let produce) where produce.topics.contains(where: { $0.topic == AuditLog.topic }):
            throw MillraceError(.notAuthorized, "\(AuditLog.topic) is written by the broker alone (an append-only record of changes and refusals)")
        case .deleteTopic(AuditLog.topic):
            throw MillraceError(.notAuthorized, "\(AuditLog.topic) cannot be deleted: it is the record of changes and refusals")
        case .alterTopic(let alter) where alter.topic == AuditLog.topic:
            // Its retention may grow or be set to forever, never shrink below a year: one
            // administrator must not be able to make the trail forget.
            if alter.owner != nil || alter.compression >= 0 || alter.retentionBytes != AlterTopicRequest.unchanged
                || (alter.retentionMs != AlterTopicRequest.unchanged && alter.retentionMs != -1 && alter.retentionMs < Self.auditRetentionMinMs)
            {
                throw MillraceError(.notAuthorized, "\(AuditLog.topic) keeps its records for at least a year (--retention 365d or more, or forever); nothing else of it changes")
            }
        case .createTopic(let create) where create.name.hasPrefix("_"):
            throw MillraceError(.invalidTopicName, "topic names starting with _ are the broker's own (\(AuditLog.topic)); choose another name")
        default: break
        }
        guard !principal.isUnrestricted, let security else { return }
        for (operation, resource) in request.requiredRights { try security.authorize(principal, operation, resource) }
        if case .getDictionary(let topic, _) = request, !security.allows(principal, .write, .topic(topic)) {
            try security.authorize(principal, .read, .topic(topic))
        }
    }

    /// Whether `principal` may do `operation` on `resource` (for answers that leave out what
    /// it may not see).
    func allows(_ principal: Principal, _ operation: SecurityOperation, _ resource: Resource) -> Bool {
        guard !principal.isUnrestricted, let security else { return true }
        return security.allows(principal, operation, resource)
    }

    /// A trace or walk over every topic, narrowed to the topics `principal` may read.
    func readableTopics(_ principal: Principal) throws -> [String]? {
        guard !principal.isUnrestricted, security != nil else { return nil }
        let readable = try storage.listTopics().map(\.name).filter { allows(principal, .read, .topic($0)) }
        guard !readable.isEmpty else {
            throw MillraceError(.notAuthorized, "principal \(principal.name) may read no topic, so there is nothing to trace")
        }
        return readable
    }
}
