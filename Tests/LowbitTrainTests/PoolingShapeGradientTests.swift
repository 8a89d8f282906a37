import LowbitCore
import LowbitTestSupport
import LowbitTrain
import Testing

@Suite struct PoolingGradientTests {
  static let windows: [[String: Attribute]] = [
    ["kernel_shape": .ints([2, 2]), "strides": .ints([2, 2])],
    ["kernel_shape": .ints([3, 3]), "strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1])],
    ["kernel_shape": .ints([3, 3]), "pads": .ints([1, 1, 1, 1])],
    ["kernel_shape": .ints([2, 3]), "strides": .ints([2, 2]), "ceil_mode": .int(1)],
    ["kernel_shape": .ints([3, 3]), "strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1]), "count_include_pad": .int(1)],
  ]

  @Test(arguments: ["MaxPool", "AveragePool"], windows)
  func poolsMatchFiniteDifferences(_ op: String, _ attributes: [String: Attribute]) throws {
    let x = distinctTensor([2, 2, 7, 6], seed: 8)
    let g = graph([node(op, ["x"], attributes)], inputs: [("x", x)])
    try checkGradients(g, feeds: ["x": x], step: 1e-3, label: op)
  }

  @Test(arguments: ["MaxPool", "AveragePool"])
  func oneDimensionalPools(_ op: String) throws {
    let x = distinctTensor([1, 3, 9], seed: 9)
    let g = graph([node(op, ["x"], ["kernel_shape": .ints([3]), "strides": .ints([2]), "pads": .ints([1, 1])])], inputs: [("x", x)])
    try checkGradients(g, feeds: ["x": x], step: 1e-3, label: op)
  }

  @Test(arguments: [[2, 3, 4, 5], [1, 4, 3, 3], [2, 3, 7]])
  func globalAveragePool(_ shape: [Int]) throws {
    let x = randomTensor(shape, seed: 10)
    try checkGradients(graph([node("GlobalAveragePool", ["x"])], inputs: [("x", x)]), feeds: ["x": x], label: "GlobalAveragePool")
  }
}

@Suite struct ShapeGradientTests {
  @Test(arguments: [1, 2, 0])
  func flatten(_ axis: Int) throws {
    let x = randomTensor([2, 3, 2, 2], seed: 11)
    try checkGradients(graph([node("Flatten", ["x"], ["axis": .int(axis)])], inputs: [("x", x)]), feeds: ["x": x], label: "Flatten")
  }

  @Test func reshapeWithAShapeInitializer() throws {
    let x = randomTensor([2, 3, 4], seed: 12)
    let g = graph([node("Reshape", ["x", "shape"])], inputs: [("x", x)], constants: ["shape": Tensor(shape: [2], ints: [4, -1])])
    try checkGradients(g, feeds: ["x": x], label: "Reshape")
  }

  @Test(arguments: [[0, 2, 3, 1], [3, 2, 1, 0], [1, 0, 2, 3]])
  func transpose(_ perm: [Int]) throws {
    let x = randomTensor([2, 3, 4, 5], seed: 13)
    try checkGradients(graph([node("Transpose", ["x"], ["perm": .ints(perm)])], inputs: [("x", x)]), feeds: ["x": x], label: "Transpose")
  }

  @Test(arguments: [1, -1, 0])
  func concat(_ axis: Int) throws {
    var shapes = [[2, 3, 4], [2, 3, 4], [2, 3, 4]]
    let a = axis < 0 ? 2 : axis
    shapes[1][a] = 1
    shapes[2][a] = 2
    let inputs = shapes.enumerated().map { ("x\($0.offset)", randomTensor($0.element, seed: UInt64(20 + $0.offset))) }
    let g = graph([node("Concat", inputs.map(\.0), ["axis": .int(axis)])], inputs: inputs)
    try checkGradients(g, feeds: Dictionary(uniqueKeysWithValues: inputs), label: "Concat")
  }
}
