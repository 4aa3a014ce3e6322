/// The operations HTTP listener's connections, by when each last did something: was accepted,
/// finished sending a request, or had a response written to its socket. No channel in here;
/// the server carries out what it answers.
///
/// - At `connectionsMax` a new connection replaces the one quiet longest, so held or renewed
///   idle connections cannot keep a liveness probe out: the probe's connection is the newest,
///   and it is answered as soon as its request is read.
/// - A connection quiet for `idleMs` is closed: a peer dribbling a request it never finishes,
///   a keep-alive left open, and a peer that never reads its responses (its writes stop
///   completing) all look the same.
struct HTTPConnectionTable<ID: Hashable>: Sendable where ID: Sendable {
    private struct Entry: Sendable {
        /// Orders connections by their last activity (milliseconds tie; this does not).
        var serial: UInt64
        var lastActivityMs: Int64
    }

    let connectionsMax: Int
    let idleMs: Int64
    private var entries: [ID: Entry] = [:]
    private var nextSerial: UInt64 = 0

    init(connectionsMax: Int, idleMs: Int64) {
        // Room for one connection at least (a configuration of 0 would refuse every probe).
        self.connectionsMax = max(1, connectionsMax)
        self.idleMs = idleMs
    }

    var count: Int { entries.count }

    /// A connection was accepted. Returns the connection to close to make room for it, if the
    /// table was full (it is no longer counted).
    mutating func opened(_ id: ID, nowMs: Int64) -> ID? {
        var replaced: ID?
        if entries.count >= connectionsMax, let quietest = entries.min(by: { $0.value.serial < $1.value.serial })?.key {
            entries[quietest] = nil
            replaced = quietest
        }
        touch(id, nowMs: nowMs)
        return replaced
    }

    /// A connection finished sending a request, or a response to it was written.
    mutating func active(_ id: ID, nowMs: Int64) {
        guard entries[id] != nil else { return }
        touch(id, nowMs: nowMs)
    }

    mutating func closed(_ id: ID) {
        entries[id] = nil
    }

    /// The connections quiet for `idleMs` by `nowMs`: to close. They stay counted until closed.
    func idle(nowMs: Int64) -> [ID] {
        entries.filter { nowMs - $0.value.lastActivityMs >= idleMs }.sorted { $0.value.serial < $1.value.serial }.map(\.key)
    }

    private mutating func touch(_ id: ID, nowMs: Int64) {
        nextSerial += 1
        entries[id] = Entry(serial: nextSerial, lastActivityMs: nowMs)
    }
}
