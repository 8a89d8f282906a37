import LowbitCore
import LowbitTestSupport
import LowbitTrain
import Testing

@Suite struct ElementwiseGradientTests {
  /// Values with |v| in [0.5, 1.5]: safe divisors.
  static func awayFromZero(_ shape: [Int], seed: UInt64) -> Tensor {
    let t = randomTensor(shape, seed: seed)
    return Tensor(shape: shape, floats: t.floats.map { ($0 < 0 ? -1 : 1) * (0.5 + abs($0)) })
  }

  @Test(arguments: ["Add", "Sub", "Mul", "Div"], [
    ([2, 3, 4], [2, 3, 4]), ([2, 3, 4], [4]), ([2, 3, 4], [3, 1]), ([1, 3, 1], [2, 1, 4]), ([2, 3], []),
    ([1], [2, 2, 3]),
  ])
  func binaryOpsBroadcastGradients(_ op: String, _ shapes: ([Int], [Int])) throws {
    let inputs = [("a", randomTensor(shapes.0, seed: 1)), ("b", Self.awayFromZero(shapes.1, seed: 2))]
    let g = graph([node(op, ["a", "b"])], inputs: inputs)
    try checkGradients(g, feeds: Dictionary(uniqueKeysWithValues: inputs), step: 1e-3, label: op)
  }

  @Test func reluPassesGradientWherePositive() throws {
    let x = distinctTensor([2, 3, 4, 5], seed: 4)
    let g = graph([node("Relu", ["x"])], inputs: [("x", x)])
    try checkGradients(g, feeds: ["x": x], step: 1e-3, label: "Relu")
  }

  @Test func clipAsReLU6() throws {
    let x = Tensor(shape: [3, 40], floats: distinctTensor([3, 40], seed: 5).floats.map { $0 * 5 + 3 })  // [-2, 8]
    let g = graph([node("Clip", ["x", "lo", "hi"])], inputs: [("x", x)],
                  constants: ["lo": Tensor(scalar: 0), "hi": Tensor(scalar: 6)])
    #expect(try Trainer(g).parameterNames.isEmpty)  // bounds are constants, not parameters
    try checkGradients(g, feeds: ["x": x], step: 1e-3, label: "Clip")
    // opset 6 form: bounds as attributes.
    let old = graph([node("Clip", ["x"], ["min": .float(0), "max": .float(6)])], inputs: [("x", x)], opset: 9)
    try checkGradients(old, feeds: ["x": x], step: 1e-3, label: "Clip")
  }

  @Test(arguments: ["Identity", "Dropout"])
  func identityLikeOps(_ op: String) throws {
    let x = randomTensor([2, 5], seed: 6)
    let g = graph([node(op, ["x"])], inputs: [("x", x)])
    try checkGradients(g, feeds: ["x": x], label: op)
  }

  @Test func gradientsOfAValueReadTwiceAreSummed() throws {
    // y = x * relu(x) + x: three paths from x.
    let x = distinctTensor([3, 4], seed: 7)
    let g = graph([
      node("Relu", ["x"], outputs: ["r"]), node("Mul", ["x", "r"], outputs: ["m"]), node("Add", ["m", "x"]),
    ], inputs: [("x", x)])
    try checkGradients(g, feeds: ["x": x], step: 1e-3, label: "fan-out")
  }
}
