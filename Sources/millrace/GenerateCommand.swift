import ArgumentParser
import Foundation
import MillraceFormat

/// `millrace generate`: realistic manufacturing events as newline-delimited JSON, the same
/// for the same seed — production confirmations (about three in four) and genealogy links
/// (a component lot, `child_lot`, consumed into the lot being built, `parent_lot`), 200–400
/// bytes each, from pools of orders, plants, work centers and materials. For trying
/// the broker out and for benchmarks; needs nothing outside the project.
struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate", abstract: "Write sample manufacturing events (NDJSON) to standard output or a file.",
        discussion: "A genealogy.link event says its component lot child_lot was consumed into the lot being built, parent_lot: a topic with --link /parent_lot:/child_lot traces them (`millrace trace CHILD_LOT --where-used` finds the lots it went into)." + Help.examples("millrace generate --count 10000 --seed 42 --output events.ndjson", "millrace generate -c 1000 --type production.confirmation --invalid 2 | millrace produce checked"))

    @Option(name: .shortAndLong, help: "How many events.") var count = 10_000
    @Option(help: "Random seed: the same seed gives the same events.") var seed: UInt64 = 42
    @Option(name: .shortAndLong, help: "Write to this file instead of standard output.") var output: String?
    @Option(help: "Which events: all, production.confirmation or genealogy.link.") var type = "all"
    @Option(help: "Percent of events broken the way a bad day breaks them (negative yield, a missing field, an unknown unit, a bad time, cut-off JSON).")
    var invalid = 0

    func validate() throws {
        guard count >= 0 else { throw ValidationError("--count takes 0 or more (got \(count))") }
        guard ["all", "production.confirmation", "genealogy.link"].contains(type) else {
            throw ValidationError("--type takes all, production.confirmation or genealogy.link (got \(type))")
        }
        guard (0...100).contains(invalid) else { throw ValidationError("--invalid takes a percentage, 0...100 (got \(invalid))") }
    }

    func run() throws {
        let descriptor: Int32
        if let output {
            descriptor = open(output, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            guard descriptor >= 0 else {
                Output.standardError("error: cannot write \(output): \(String(cString: strerror(errno)))")
                throw ExitCode(1)
            }
        } else {
            descriptor = 1
        }
        defer { if output != nil { close(descriptor) } }
        var events = EventGenerator(seed: seed)
        var buffer: [UInt8] = []
        buffer.reserveCapacity(1 << 16)
        for _ in 0..<count {
            buffer.append(contentsOf: events.next(only: type == "all" ? nil : type, brokenPercent: invalid).utf8)
            buffer.append(UInt8(ascii: "\n"))
            if buffer.count >= 1 << 16 { try flush(&buffer, to: descriptor) }
        }
        try flush(&buffer, to: descriptor)
    }

    private func flush(_ buffer: inout [UInt8], to descriptor: Int32) throws {
        var written = 0
        while written < buffer.count {
            let count = buffer[written...].withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { throw ExitCode(1) }  // e.g. a closed pipe
            written += count
        }
        buffer.removeAll(keepingCapacity: true)
    }
}

/// The event shapes of the generator (pure: a seed in, events out).
struct EventGenerator {
    struct Order {
        var id: String
        var plant: String
        var material: String
        var operations: [String]
        var workCenters: [String]
    }

    private var random: SplitMix
    private let orders: [Order]
    private let components: [String]
    private var timeMs: Int64 = 1_764_223_200_000  // 2025-11-27T06:00:00Z
    private var lot = 1
    private var serial = 1

    init(seed: UInt64) {
        var random = SplitMix(seed: seed)
        let plants = ["DE01", "DE02", "PL03", "US10"]
        let materials = (0..<300).map { _ in "MAT-\(random.int(1000...9999))-\(random.int(100...999))" }
        components = (0..<500).map { _ in "CMP-\(random.int(10000...99999))-\("ABCDEFG".randomElement(using: &random)!)" }
        orders = (0..<400).map { _ in
            let plant = plants.randomElement(using: &random)!
            let centers = ["ASSY", "CNC", "PAINT", "TEST", "PACK"].flatMap { kind in (1...6).map { "WC-\(kind)-\($0 < 10 ? "0" : "")\($0)" } }
            return Order(
                id: String(format: "%012d", random.int(100_000_000...109_999_999)), plant: plant,
                material: materials.randomElement(using: &random)!,
                operations: (1...random.int(3...8)).map { String(format: "%04d", $0 * 10) },
                workCenters: Array(centers.shuffled(using: &random).prefix(8)))
        }
        self.random = random
    }

    /// The next event, of the type asked for (nil: about three confirmations in four), broken
    /// in one of the ways a gateway breaks them with `brokenPercent` chance.
    mutating func next(only type: String?, brokenPercent: Int) -> String {
        var event = next()
        while let type, !event.hasPrefix("{\"type\":\"\(type)\"") { event = next() }
        guard brokenPercent > 0, random.int(1...100) <= brokenPercent else { return event }
        switch random.int(0...4) {
        case 0:
            if let range = event.range(of: "\"yield_qty\":") ?? event.range(of: "\"qty\":") { event.insert("-", at: range.upperBound) }
        case 1:
            if let start = event.range(of: ",\"work_center\":\"") ?? event.range(of: ",\"supplier_batch\":\""),
                let end = event[start.upperBound...].firstIndex(of: "\"")
            {
                event.removeSubrange(start.lowerBound...end)
            }
        case 2:
            event = event.replacingOccurrences(of: "\"uom\":\"PC\"", with: "\"uom\":\"LB\"").replacingOccurrences(of: "\"uom\":\"KG\"", with: "\"uom\":\"LB\"")
        case 3:
            event = event.replacingOccurrences(of: "\"ts\":\"20", with: "\"ts\":\"27/11/20")
        default:
            event = String(event.prefix(event.count * 2 / 3))
        }
        return event
    }

    mutating func next() -> String {
        timeMs += Int64(random.int(1...40))
        let order = orders.randomElement(using: &random)!
        let eventID = uuid()
        let at = JSONText.isoTime(milliseconds: timeMs)
        let lotID = "L\(day(timeMs))\(String(format: "%05d", lot))"
        if random.int(0...99) < 75 {
            let step = random.int(0...(order.operations.count - 1))
            let yield = random.int(1...500)
            let scrap = [0, 0, 0, 0, 1, 2, random.int(0...(yield / 10 + 1))].randomElement(using: &random)!
            let started = JSONText.isoTime(milliseconds: timeMs - Int64(random.int(30...3600)) * 1000)
            let event = """
                {"type":"production.confirmation","event_id":"\(eventID)","ts":"\(at)","plant":"\(order.plant)","order_id":"\(order.id)",\
                "operation":"\(order.operations[step])","work_center":"\(order.workCenters[step])","material":"\(order.material)",\
                "lot_id":"\(lotID)","serial":"SN-\(order.plant)-\(String(format: "%08d", serial))","yield_qty":\(yield),"scrap_qty":\(scrap),\
                "uom":"PC","start_ts":"\(started)","operator":"U\(random.int(10000...10999))","final":\(step == order.operations.count - 1)}
                """
            serial += random.int(1...3)
            if random.int(0...9) < 3 { lot += 1 }
            return event
        }
        // The lot being built (parent_lot) consumed a component lot made up to 20 days before (child_lot).
        let childDay = day(timeMs - Int64(random.int(0...20)) * 86_400_000)
        let quantity = Double(random.int(1...2_500_000)) / 10_000
        return """
            {"type":"genealogy.link","event_id":"\(eventID)","ts":"\(at)","plant":"\(order.plant)","order_id":"\(order.id)",\
            "parent_lot":"\(lotID)","child_lot":"L\(childDay)\(String(format: "%05d", random.int(1...99999)))",\
            "component_material":"\(components.randomElement(using: &random)!)","qty":\(String(format: "%.3f", quantity)),\
            "uom":"\(["PC", "KG", "M", "L"].randomElement(using: &random)!)","supplier_batch":"SB\(String(format: "%08d", random.int(0...99_999_999)))"}
            """
    }

    /// yymmdd of a time.
    private func day(_ milliseconds: Int64) -> String {
        let iso = JSONText.isoTime(milliseconds: milliseconds)
        return String(iso.dropFirst(2).prefix(8).filter { $0 != "-" })
    }

    private mutating func uuid() -> String {
        let high = random.next()
        let low = random.next()
        let hex = String(format: "%016llx%016llx", high, low)
        let characters = Array(hex)
        func part(_ range: Range<Int>) -> String { String(characters[range]) }
        return "\(part(0..<8))-\(part(8..<12))-4\(part(13..<16))-\(["8", "9", "a", "b"][Int(low >> 62)])\(part(17..<20))-\(part(20..<32))"
    }
}

/// SplitMix64, so the same seed gives the same events on every machine.
struct SplitMix: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &self) }
}
