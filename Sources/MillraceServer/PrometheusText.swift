/// Gauges read at scrape time, written straight into Prometheus's text format.
///
/// They do not go through the registry: swift-prometheus copies a family's whole label
/// dictionary to add or drop one series, so registering a scrape's gauges there costs the
/// square of the series (16,000 groups took 154 s). Here a scrape is one pass, linear in the
/// series it writes, and a series whose labels are gone (a deleted topic, a finished group)
/// is simply not written next time.
struct PrometheusText {
    private(set) var bytes: [UInt8] = []
    /// The family begun, until its first sample writes its `# TYPE` line (a family with no
    /// samples writes nothing).
    private var untypedFamily: String?

    /// Starts a family; every sample of it follows, before the next family starts.
    mutating func gaugeFamily(_ name: String) {
        untypedFamily = name
    }

    /// One sample of the family begun: `name{label="value",...} value`.
    mutating func sample(_ name: String, _ labels: [(String, String)], _ value: Double) {
        // A sample outside the family begun (a mistake in the caller, not a peer's doing) is
        // written untyped rather than under another family's `# TYPE` line.
        if let family = untypedFamily, family == name {
            bytes.append(contentsOf: "# TYPE ".utf8)
            bytes.append(contentsOf: family.utf8)
            bytes.append(contentsOf: " gauge\n".utf8)
            untypedFamily = nil
        }
        bytes.append(contentsOf: name.utf8)
        if !labels.isEmpty {
            bytes.append(UInt8(ascii: "{"))
            for (index, (label, text)) in labels.enumerated() {
                if index > 0 { bytes.append(UInt8(ascii: ",")) }
                bytes.append(contentsOf: label.utf8)
                bytes.append(contentsOf: "=\"".utf8)
                writeEscaped(text)
                bytes.append(UInt8(ascii: "\""))
            }
            bytes.append(UInt8(ascii: "}"))
        }
        bytes.append(UInt8(ascii: " "))
        bytes.append(contentsOf: Self.format(value).utf8)
        bytes.append(UInt8(ascii: "\n"))
    }

    /// A family with one unlabelled sample.
    mutating func gauge(_ name: String, _ value: Double) {
        gaugeFamily(name)
        sample(name, [], value)
    }

    /// Label values escape `\`, `"` and newlines (the text format's rule); group and topic
    /// names are the peer's own strings.
    private mutating func writeEscaped(_ text: String) {
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\\"): bytes.append(contentsOf: #"\\"#.utf8)
            case UInt8(ascii: "\""): bytes.append(contentsOf: #"\""#.utf8)
            case UInt8(ascii: "\n"): bytes.append(contentsOf: #"\n"#.utf8)
            default: bytes.append(byte)
            }
        }
    }

    /// Whole numbers (counts, offsets, bytes) without a fraction; others as Swift writes them.
    static func format(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value < 0 ? "-Inf" : "+Inf" }
        if value == value.rounded(), abs(value) < 9.007_199_254_740_992e15 { return String(Int64(value)) }
        return "\(value)"
    }
}
