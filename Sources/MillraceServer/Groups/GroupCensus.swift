import MillraceFormat

/// The consumer groups the broker knows, counted once each against `groupsMax`: groups with
/// live members and groups with committed offsets (a commit with generation -1 makes a group
/// of offsets alone, with no member ever joining). A group already known always carries on;
/// only a new name is refused at the limit.
///
/// After a restart the census starts from the groups storage holds offsets for, so stored
/// groups count as before. A data directory from before the limit may hold more than
/// `groupsMax`: they are all served, and new groups are refused until enough are deleted.
struct GroupCensus: Sendable, Equatable {
    enum Admission: Equatable {
        /// The group was known already (counted before).
        case known
        /// A new group, now counted.
        case admitted
        /// A new group past `groupsMax`: refuse the request with `limit_reached`.
        case refused
    }

    let groupsMax: Int
    private(set) var live: Set<String> = []
    private(set) var stored: Set<String>
    /// `live ∪ stored`, kept as the sets change.
    private(set) var count: Int

    init(stored: some Sequence<String>, groupsMax: Int = Limits.groupsMax) {
        self.groupsMax = groupsMax
        self.stored = Set(stored)
        count = self.stored.count
    }

    func knows(_ group: String) -> Bool { live.contains(group) || stored.contains(group) }

    /// A member joins `group`.
    mutating func join(_ group: String) -> Admission {
        if live.contains(group) { return .known }
        let known = stored.contains(group)
        if !known && count >= groupsMax { return .refused }
        live.insert(group)
        if known { return .known }
        count += 1
        return .admitted
    }

    /// A commit is about to store offsets for `group`.
    mutating func commit(_ group: String) -> Admission {
        if stored.contains(group) { return .known }
        let known = live.contains(group)
        if !known && count >= groupsMax { return .refused }
        stored.insert(group)
        if known { return .known }
        count += 1
        return .admitted
    }

    /// The last member of `group` left or expired.
    mutating func membersGone(_ group: String) {
        guard live.remove(group) != nil, !stored.contains(group) else { return }
        count -= 1
    }

    /// Storage holds no offsets for `group` any more (deleted, or a commit that made it failed).
    mutating func offsetsGone(_ group: String) {
        guard stored.remove(group) != nil, !live.contains(group) else { return }
        count -= 1
    }

    /// Storage's groups read again (after a topic is deleted, its offsets with it).
    mutating func restock(stored names: some Sequence<String>) {
        stored = Set(names)
        count = stored.count + live.subtracting(stored).count
    }
}
