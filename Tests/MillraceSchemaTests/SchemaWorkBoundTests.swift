import Foundation
import MillraceFormat
import MillraceSchema
import TestSupport
import Testing

/// Issue 22: no schema or record may cost unbounded work. Validation and compatibility checks
/// remember answers per pair (so recursion through several branches is linear, not 2^depth)
/// and spend a step budget (so what is still costly stops, refused with a message that says so).
/// Each test asserts within a step budget, not a clock: before the fix these never finished.
@Suite struct SchemaWorkBoundTests {
    @Test func recursionThroughSeveralBranchesIsLinearInTheRecord() throws {
        let contract = try Schema(json: Array(HostileSchemas.twoBranches.utf8))
        // 60 deep: 2^60 branch checks without remembered answers; a few hundred steps with them.
        let valid = Array(HostileSchemas.nested(60, innermost: "{}").utf8)
        let invalid = Array(HostileSchemas.nested(60, innermost: "1").utf8)
        #expect(contract.validate(json: valid, stepsMax: 2_000).isEmpty)
        let found = contract.validate(json: invalid, stepsMax: 2_000)
        #expect(found.count == 1 && found[0].rule == "anyOf", "\(found)")
        // The deepest violation is named in the hint, as before.
        #expect(found[0].message.contains("is an integer, not an object"), "\(found)")
        // Only the innermost reason, not one "the first:" per level of nesting.
        #expect(found[0].message.components(separatedBy: "; the first: ").count == 2 && found[0].message.count < 600, "\(found)")
    }

    @Test func aRecordOverItsStepBudgetIsInvalidAndSaysSo() throws {
        // A pattern of many states over a long string: linear, but states x characters.
        let contract = try Schema(json: Array(#"{"type":"string","pattern":"(a|b|c|d|e|f|g|h)*x(a|b)*y{2,40}z"}"#.utf8))
        let value = Array(("\"" + String(repeating: "abcdefgh", count: 20_000) + "\"").utf8)
        let shorter = Array(("\"" + String(repeating: "abcdefgh", count: 2_000) + "\"").utf8)
        #expect(contract.validate(json: shorter).first?.rule == "pattern")
        let found = contract.validate(json: value, stepsMax: 10_000)
        #expect(found.count == 1 && found[0].rule == "budget" && found[0].message.contains("validationStepsPerValueMax"), "\(found)")
        var tape = JSONTape()
        try tape.parse(value)
        #expect(!contract.isValid(tape, stepsMax: 10_000))
        // An anyOf of many patterns costs each of them.
        let branches = (0..<200).map { #"{"pattern":"^(x|y)*q\#($0)$"}"# }.joined(separator: ",")
        let many = try Schema(json: Array(#"{"type":"string","anyOf":[\#(branches)]}"#.utf8))
        let long = Array(("\"" + String(repeating: "xy", count: 5_000) + "\"").utf8)
        #expect(many.validate(json: long, stepsMax: 100_000).first?.rule == "budget")
    }

    @Test func aStepBudgetIsSpentAcrossRecords() throws {
        let contract = try Schema(json: Array(HostileSchemas.twoBranches.utf8))
        let text = Array(HostileSchemas.nested(40, innermost: "{}").utf8)
        var tape = JSONTape()
        var steps = Limits.validationStepsPerValueMax
        var checked = 0
        try text.withUnsafeBufferPointer { buffer in
            try tape.index(buffer)
            while steps >= 0 && checked < 100_000 {
                _ = contract.isValid(tape, in: buffer, steps: &steps)
                checked += 1
            }
        }
        // Each check costs something, and the sum is what was given.
        #expect(checked > 10 && checked < 100_000 && steps < 0)
    }

    @Test func integersAreReadFromTheDigits() throws {
        let integer = try Schema(json: Array(#"{"type":"integer"}"#.utf8))
        for text in ["1", "-0", "1.0", "1e2", "1.5e1", "2.50e1", "100e-2", "0.0"] {
            #expect(integer.validate(json: Array(text.utf8)).isEmpty, "\(text)")
        }
        // A double rounds these to whole numbers; as written they are not.
        for text in ["1e-400", "1.0000000000000000001", "0.5", "25e-1", "1.5"] {
            let found = integer.validate(json: Array(text.utf8))
            #expect(found.first?.message == "\(text) is a number, not an integer", "\(text): \(found)")
        }
        // Past a double's range: not "an integer, not an integer", and refused as a number too.
        let found = integer.validate(json: Array("1e400".utf8))
        #expect(found.first?.message == "1e400 is a number beyond the range of a 64-bit float (±1.8e308); send it as a string, not an integer", "\(found)")
        let number = try Schema(json: Array(#"{"type":"number"}"#.utf8))
        #expect(number.validate(json: Array("-1e400".utf8)).first?.rule == "type")
        #expect(number.validate(json: Array("1e300".utf8)).isEmpty)
    }

    @Test func compatibilityOfNestedBranchesIsBounded() throws {
        for levels in [1, 4, 8] {
            let old = try Schema(json: Array(HostileSchemas.chain(levels, maxLength: 10).utf8))
            let new = try Schema(json: Array(HostileSchemas.chain(levels, maxLength: 5).utf8))
            var steps = 100_000
            // Backward: the new version accepts shorter strings only, so old records may break.
            let problems = try Schema.compatibilityProblems(new: new, earlier: [(1, old)], mode: .backward, steps: &steps)
            #expect(!problems.isEmpty && steps >= 0, "levels \(levels): \(steps) steps left")
            var widening = 100_000
            // The other way round widens: backward holds, found within the same steps.
            let none = try Schema.compatibilityProblems(new: old, earlier: [(1, new)], mode: .backward, steps: &widening)
            #expect(none.isEmpty && widening >= 0, "levels \(levels): \(none)")
        }
    }

    @Test func aCompatibilityCheckOverItsStepsIsRefused() throws {
        let old = try Schema(json: Array(HostileSchemas.chain(8, maxLength: 10).utf8))
        let new = try Schema(json: Array(HostileSchemas.chain(8, maxLength: 5).utf8))
        var steps = 5
        #expect {
            _ = try Schema.compatibilityProblems(new: new, earlier: [(1, old)], mode: .backward, steps: &steps)
        } throws: { error in
            guard let error = error as? SchemaError else { return false }
            return error.code == .limitExceeded && error.message.contains("schemaCompatibilityStepsMax")
        }
    }
}
