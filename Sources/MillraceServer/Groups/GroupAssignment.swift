import MillraceFormat
import MillraceStorage

/// The partition assignment rule for consumer groups: balanced (member counts differ by at
/// most one) and sticky (a partition stays with its owner while that keeps the balance).
/// Pure: same input, same output.
public enum GroupAssignment {
    /// - Parameters:
    ///   - partitions: every partition of the topics the group consumes.
    ///   - members: the members of the new generation.
    ///   - previous: who owned what in the last generation.
    public static func assign(
        partitions: [TopicPartition], members: [String], previous: [String: [TopicPartition]]
    ) -> [String: [TopicPartition]] {
        let members = members.sorted()
        var result: [String: [TopicPartition]] = Dictionary(uniqueKeysWithValues: members.map { ($0, []) })
        guard !members.isEmpty else { return [:] }
        let all = partitions.sorted { ($0.topic, $0.partition) < ($1.topic, $1.partition) }
        let base = all.count / members.count
        let extra = all.count % members.count
        // Members keeping the most of their old partitions get the larger quotas, so the
        // fewest partitions move.
        let kept = Dictionary(uniqueKeysWithValues: members.map { member in
            (member, (previous[member] ?? []).filter { Set(all).contains($0) }.count)
        })
        let byKept = members.sorted { (kept[$0]!, $1) > (kept[$1]!, $0) }
        var quota: [String: Int] = [:]
        for (index, member) in byKept.enumerated() { quota[member] = base + (index < extra ? 1 : 0) }

        var taken: Set<TopicPartition> = []
        let valid = Set(all)
        for member in members {
            for partition in (previous[member] ?? []).sorted(by: { ($0.topic, $0.partition) < ($1.topic, $1.partition) })
            where valid.contains(partition) && !taken.contains(partition) && result[member]!.count < quota[member]! {
                result[member]!.append(partition)
                taken.insert(partition)
            }
        }
        for partition in all where !taken.contains(partition) {
            let member = members.filter { result[$0]!.count < quota[$0]! }.min { result[$0]!.count < result[$1]!.count }!
            result[member]!.append(partition)
            taken.insert(partition)
        }
        return result.mapValues { $0.sorted { ($0.topic, $0.partition) < ($1.topic, $1.partition) } }
    }
}
