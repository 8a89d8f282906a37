import Glibc
import LowbitCore
import LowbitTestSupport
import Testing

private typealias H = KernelHarness

@Suite("Elementwise unary kernels")
struct ElementwiseUnaryTests {
  static let samples: [Float] = [-3, -1.5, -0.5, -0.0, 0, 0.25, 0.5, 1, 2.5, 7]

  static let references: [(String, @Sendable (Float) -> Float)] = [
    ("Neg", { -$0 }),
    ("Abs", { abs($0) }),
    ("Exp", { expf($0) }),
    ("Tanh", { tanhf($0) }),
    ("Sigmoid", { 1 / (1 + expf(-$0)) }),
    ("Erf", { erff($0) }),
    ("Relu", { max($0, 0) }),
    ("Floor", { floorf($0) }),
    ("Ceil", { ceilf($0) }),
    ("Reciprocal", { 1 / $0 }),
    ("Sign", { $0 > 0 ? 1 : ($0 < 0 ? -1 : 0) }),
    ("HardSwish", { $0 * max(0, min(1, $0 / 6 + 0.5)) }),
    ("HardSigmoid", { max(0, min(1, 0.2 * $0 + 0.5)) }),
    ("LeakyRelu", { $0 < 0 ? 0.01 * $0 : $0 }),
    ("Softsign", { $0 / (1 + abs($0)) }),
    ("Softplus", { logf(1 + expf($0)) }),
    ("Elu", { $0 < 0 ? expf($0) - 1 : $0 }),
    ("Sin", { sinf($0) }),
    ("Cos", { cosf($0) }),
  ]

  @Test("unary op matches its formula", arguments: references.map(\.0))
  func unaryMatchesFormula(name: String) throws {
    let f = Self.references.first { $0.0 == name }!.1
    let y = try H.run1(name, [H.floats([2, 5], Self.samples)])
    #expect(y.shape == [2, 5])
    #expect(maxRelativeError(y.floats, Self.samples.map(f)) < 1e-6, "\(name)")
  }

  @Test func sqrtAndLogOfPositiveValues() throws {
    let x: [Float] = [0.25, 1, 2, 100]
    #expect(try H.run1("Sqrt", [H.floats([4], x)]).floats == x.map { $0.squareRoot() })
    #expect(try H.run1("Log", [H.floats([4], x)]).floats == x.map { logf($0) })
    #expect(try H.run1("Sqrt", [H.floats([1], [-1])]).floats[0].isNaN)
  }

  @Test func roundIsHalfToEven() throws {
    let x: [Float] = [0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4, 2.6]
    #expect(try H.run1("Round", [H.floats([8], x)]).floats == [0, 2, 2, -0, -2, -2, 2, 3])
  }

  @Test func sigmoidIsStableAtExtremes() throws {
    let y = try H.run1("Sigmoid", [H.floats([4], [-200, -90, 90, 200])]).floats
    #expect(y[0] == 0 && y[1] >= 0 && y[1] < 1e-30 && y[2] == 1 && y[3] == 1)
  }

  @Test func nanPropagatesThroughActivations() throws {
    for op in ["Relu", "Sign", "Sigmoid", "Tanh", "LeakyRelu", "HardSigmoid", "Abs"] {
      #expect(try H.run1(op, [H.floats([1], [.nan])]).floats[0].isNaN, "\(op)")
    }
  }

  @Test func attributesOfLeakyReluHardSigmoidElu() throws {
    let x = H.floats([3], [-2, 0, 2])
    #expect(try H.run1("LeakyRelu", [x], attributes: ["alpha": .float(0.5)]).floats == [-1, 0, 2])
    #expect(try H.run1("HardSigmoid", [x], attributes: ["alpha": .float(0.25), "beta": .float(0.25)]).floats == [0, 0.25, 0.75])
    #expect(try H.run1("Elu", [H.floats([1], [-1])], attributes: ["alpha": .float(2)]).floats == [2 * (expf(-1) - 1)])
  }

  @Test func geluExactAndTanhApproximation() throws {
    let x = H.floats([5], [-2, -0.5, 0, 0.7, 3])
    let exact = try H.run1("Gelu", [x], opset: 20).floats
    let refExact = x.floats.map { 0.5 * $0 * (1 + erff($0 / Float(2).squareRoot())) }
    #expect(maxRelativeError(exact, refExact) < 1e-6)
    let approx = try H.run1("Gelu", [x], attributes: ["approximate": .string("tanh")], opset: 20).floats
    let refApprox = x.floats.map { v in
      0.5 * v * (1 + tanhf((2 / Float.pi).squareRoot() * (v + 0.044715 * v * v * v)))
    }
    #expect(maxRelativeError(approx, refApprox) < 1e-6)
    #expect(H.throwsNodeError { try H.run1("Gelu", [x], attributes: ["approximate": .string("fast")]) })
  }

  @Test func clipWithOptionalBounds() throws {
    let x = H.floats([5], [-3, -1, 0, 1, 3])
    #expect(try H.run1("Clip", [x, H.floats([], [-1]), H.floats([], [2])]).floats == [-1, -1, 0, 1, 2])
    #expect(try H.run1("Clip", [x, nil, H.floats([], [0])]).floats == [-3, -1, 0, 0, 0])
    #expect(try H.run1("Clip", [x, H.floats([], [0])]).floats == [0, 0, 0, 1, 3])
    #expect(try H.run1("Clip", [x]).floats == x.floats)
    // min > max: everything becomes max.
    #expect(try H.run1("Clip", [x, H.floats([], [2]), H.floats([], [1])]).floats == [1, 1, 1, 1, 1])
    #expect(try H.run1("Clip", [H.ints([-5, 5]), H.ints([], [0]), H.ints([], [3])]).ints == [0, 3])
    let old = try H.run1("Clip", [x], attributes: ["min": .float(-2), "max": .float(2)], opset: 6)
    #expect(old.floats == [-2, -1, 0, 1, 2])
    #expect(try H.run1("Clip", [H.floats([1], [.nan]), H.floats([], [0]), H.floats([], [1])]).floats[0].isNaN)
    #expect(H.throwsNodeError { try H.run1("Clip", [x, H.floats([2], [0, 1])]) })
  }

  @Test func integerAbsNegSignRelu() throws {
    let x = H.ints([-3, 0, 4])
    #expect(try H.run1("Abs", [x]).ints == [3, 0, 4])
    #expect(try H.run1("Neg", [x]).ints == [3, 0, -4])
    #expect(try H.run1("Sign", [x]).ints == [-1, 0, 1])
    #expect(try H.run1("Relu", [x]).ints == [0, 0, 4])
    #expect(try H.run1("Neg", [H.typed(.int8, [1], [-128])]).ints == [-128])
  }

  @Test func isNaNAndIsInf() throws {
    let x = H.floats([4], [1, .nan, .infinity, -.infinity])
    #expect(try H.run1("IsNaN", [x]).bools == [false, true, false, false])
    #expect(try H.run1("IsInf", [x]).bools == [false, false, true, true])
    #expect(try H.run1("IsInf", [x], attributes: ["detect_negative": .int(0)]).bools == [false, false, true, false])
    #expect(try H.run1("IsInf", [x], attributes: ["detect_positive": .int(0)]).bools == [false, false, false, true])
  }

  @Test func floatOnlyOpsRejectIntegers() {
    for op in ["Sqrt", "Exp", "Tanh", "Sigmoid", "Erf", "Round", "IsNaN"] {
      #expect(H.throwsNodeError { try H.run1(op, [H.ints([1])]) }, "\(op)")
    }
    #expect(H.throwsNodeError { try H.run1("Not", [H.floats([1], [1])]) })
  }

  @Test func largeTensorsUseTheParallelPathWithSameResults() throws {
    let x = randomTensor([300, 500], seed: 7, in: -4...4)
    let y = try H.run1("Tanh", [x])
    #expect(y.floats == x.floats.map { tanhf($0) })
    let r = try H.run1("Relu", [x])
    #expect(r.floats == x.floats.map { max($0, 0) })
  }

  @Test func emptyAndScalarInputs() throws {
    let e = try H.run1("Exp", [H.floats([2, 0], [])])
    #expect(e.shape == [2, 0] && e.count == 0)
    let s = try H.run1("Neg", [Tensor(scalar: 2)])
    #expect(s.shape == [] && s.floats == [-2])
  }

  @Test func float16TensorsKeepTheirType() throws {
    let x = Tensor(dtype: .float16, shape: [2], storage: .float([1, -1]))
    #expect(try H.run1("Relu", [x]).dtype == .float16)
  }
}
