import LowbitCore
import LowbitTestSupport
import Testing

private typealias H = KernelHarness

/// Inputs the fuzzer (tools/fuzz.py ops) found or that sit next to its findings: every kernel
/// given them must return a result or throw `LowbitError`, never trap.
@Suite("Hostile graphs")
struct HostileGraphTests {
  /// Ops that take an axis, on a scalar, with their default axis and with axis 0 (a scalar has
  /// no axis). Found: CumSum and LpNormalization (axis 0) trapped while the axis check let axis
  /// 0 pass at rank 0.
  @Test(arguments: [
    ("CumSum", [Tensor(scalar: 1), H.ints([0])]), ("LayerNormalization", [Tensor(scalar: 1), Tensor(scalar: 1)]),
    ("LpNormalization", [Tensor(scalar: 1)]), ("ArgMax", [Tensor(scalar: 1)]), ("ArgMin", [Tensor(scalar: 1)]),
    ("Gather", [Tensor(scalar: 1), H.ints([0])]), ("GatherElements", [Tensor(scalar: 1), H.ints([0])]),
    ("ScatterElements", [Tensor(scalar: 1), H.ints([0]), Tensor(scalar: 2)]), ("Split", [Tensor(scalar: 1)]),
    ("Concat", [Tensor(scalar: 1), Tensor(scalar: 2)]), ("Softmax", [Tensor(scalar: 1)]),
    ("DequantizeLinear", [Tensor(dtype: .int8, shape: [], storage: .int([3])), Tensor(shape: [2], floats: [1, 2])]),
  ])
  func scalarInputsAreRefusedOrComputed(op: String, inputs: [Tensor]) {
    for attributes: [String: Attribute] in [[:], ["axis": .int(0)]] {
      do {
        _ = try H.run(op, inputs, attributes: attributes)
      } catch is LowbitError {
      } catch {
        Issue.record("\(op): \(error)")
      }
    }
  }
}
