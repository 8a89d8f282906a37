import LowbitCore
import Testing

/// Calls kernels the way the interpreter does, for the kernel tests of this target.
enum KernelHarness {
  /// Runs `op` on `inputs` (nil marks an omitted optional input) and returns all outputs.
  static func run(
    _ op: String, _ inputs: [Tensor?], attributes: [String: Attribute] = [:], outputs: Int = 1,
    opset: Int = 17
  ) throws -> [Tensor] {
    let names = inputs.enumerated().map { $0.element == nil ? "" : "x\($0.offset)" }
    let node = Node(
      name: "n", opType: op, inputs: names, outputs: (0..<outputs).map { "y\($0)" },
      attributes: attributes)
    guard let kernel = Ops.kernels[op] else { throw LowbitError.unsupported("no kernel \(op)") }
    return try kernel(KernelContext(node: node, inputs: inputs, opset: opset))
  }

  /// The first output of `op`.
  static func run1(
    _ op: String, _ inputs: [Tensor?], attributes: [String: Attribute] = [:], opset: Int = 17
  ) throws -> Tensor {
    try run(op, inputs, attributes: attributes, opset: opset)[0]
  }

  static func floats(_ shape: [Int], _ values: [Float]) -> Tensor { Tensor(shape: shape, floats: values) }
  static func ints(_ shape: [Int], _ values: [Int64]) -> Tensor { Tensor(shape: shape, ints: values) }
  static func ints(_ values: [Int64]) -> Tensor { Tensor(shape: [values.count], ints: values) }
  static func bools(_ shape: [Int], _ values: [Bool]) -> Tensor { Tensor(shape: shape, bools: values) }
  static func typed(_ dtype: DType, _ shape: [Int], _ values: [Int64]) -> Tensor {
    Tensor(dtype: dtype, shape: shape, storage: .int(values))
  }

  /// The multi-index of flat position `flat` in `shape`.
  static func unravel(_ flat: Int, _ shape: [Int]) -> [Int] {
    var r = flat
    var index = [Int](repeating: 0, count: shape.count)
    for d in stride(from: shape.count - 1, through: 0, by: -1) {
      index[d] = r % shape[d]
      r /= shape[d]
    }
    return index
  }

  /// The flat position of `index` in `shape`.
  static func ravel(_ index: [Int], _ shape: [Int]) -> Int {
    zip(index, shape).reduce(0) { $0 * $1.1 + $1.0 }
  }

  /// Reference numpy broadcasting, one output element at a time.
  static func broadcastReference<A, R>(
    _ a: [A], _ aShape: [Int], _ b: [A], _ bShape: [Int], _ op: (A, A) -> R
  ) -> (shape: [Int], values: [R]) {
    let rank = max(aShape.count, bShape.count)
    let pa = [Int](repeating: 1, count: rank - aShape.count) + aShape
    let pb = [Int](repeating: 1, count: rank - bShape.count) + bShape
    let shape = zip(pa, pb).map { $0 == 1 ? $1 : $0 }
    let count = shape.reduce(1, *)
    let values = (0..<count).map { flat -> R in
      let index = unravel(flat, shape)
      let ia = zip(index, pa).map { $1 == 1 ? 0 : $0 }
      let ib = zip(index, pb).map { $1 == 1 ? 0 : $0 }
      return op(a[ravel(ia, pa)], b[ravel(ib, pb)])
    }
    return (shape, values)
  }

  /// True when the call throws a `LowbitError` naming the node.
  static func throwsNodeError(_ body: () throws -> Any) -> Bool {
    do {
      _ = try body()
      return false
    } catch let e as LowbitError {
      return e.node == "n" && !e.message.isEmpty
    } catch {
      return false
    }
  }
}

@Suite("Kernel registry")
struct KernelRegistryTests {
  @Test func everyElementwiseShapeReductionAndMiscOpIsRegistered() {
    let expected = [
      "Add", "Sub", "Mul", "Div", "Pow", "Neg", "Abs", "Sqrt", "Exp", "Log", "Reciprocal", "Tanh",
      "Sigmoid", "Erf", "Relu", "LeakyRelu", "Clip", "HardSigmoid", "HardSwish", "Gelu", "Min", "Max",
      "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "And", "Or", "Not", "Xor", "IsNaN",
      "IsInf", "Where", "Cast", "Identity", "Sign", "Floor", "Ceil", "Round", "Shape", "Size",
      "Reshape", "Flatten", "Transpose", "Concat", "Split", "Slice", "Gather", "GatherElements",
      "Unsqueeze", "Squeeze", "Expand", "Tile", "Range", "ConstantOfShape", "Constant", "Pad", "Trilu",
      "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2", "ReduceL1",
      "ReduceSumSquare", "ArgMax", "ArgMin", "Softmax", "LogSoftmax", "LayerNormalization", "Dropout",
    ]
    let missing = expected.filter { Ops.kernels[$0] == nil }
    #expect(missing.isEmpty, "missing kernels: \(missing)")
  }

  @Test func harnessReferenceBroadcastMatchesHandComputedCase() {
    let r = KernelHarness.broadcastReference([1, 2, 3] as [Float], [3], [10, 20] as [Float], [2, 1], +)
    #expect(r.shape == [2, 3])
    #expect(r.values == [11, 12, 13, 21, 22, 23])
  }
}
