/// The events the two services exchange, as JSON.
public struct ProductionConfirmation: Codable, Sendable, Equatable {
    public var eventID: String
    public var order: String
    public var operation: String
    public var lot: String
    public var serial: String
    public var yieldQty: Int
    public var scrapQty: Int

    public init(eventID: String, order: String, operation: String, lot: String, serial: String, yieldQty: Int, scrapQty: Int) {
        self.eventID = eventID
        self.order = order
        self.operation = operation
        self.lot = lot
        self.serial = serial
        self.yieldQty = yieldQty
        self.scrapQty = scrapQty
    }
}

/// A component lot consumed into a serial: the serial (the parent, what was built) was
/// built from the lot (the child), as the link `/parentSerial:/childLot` reads it.
public struct GenealogyLink: Codable, Sendable, Equatable {
    public var parentSerial: String
    public var childLot: String

    public init(parentSerial: String, childLot: String) {
        self.parentSerial = parentSerial
        self.childLot = childLot
    }
}

/// `--name value` arguments, with defaults.
public struct Arguments {
    private var values: [String: String] = [:]

    public init(_ arguments: [String] = Array(CommandLine.arguments.dropFirst())) {
        var index = 0
        while index < arguments.count {
            let name = arguments[index]
            if name.hasPrefix("--"), index + 1 < arguments.count {
                values[String(name.dropFirst(2))] = arguments[index + 1]
                index += 2
            } else {
                index += 1
            }
        }
    }

    public func string(_ name: String, _ fallback: String) -> String { values[name] ?? fallback }
    public func int(_ name: String, _ fallback: Int) -> Int { values[name].flatMap(Int.init) ?? fallback }
}
