import LowbitCore
import LowbitTestSupport
import LowbitTrain
import Testing

/// The gradient rules a transformer's graph needs (LayerNorm, attention's Softmax and mask,
/// GELU's Erf, embeddings' Gather, mean pooling and L2 normalization), against finite differences.
@Suite struct TransformerGradientTests {
  @Test(arguments: [-1, 1])
  func layerNormalizationInputScaleAndBias(_ axis: Int) throws {
    let x = randomTensor([2, 3, 5], seed: 21)
    let normShape = axis == -1 ? [5] : [3, 5]
    let g = graph([node("LayerNormalization", ["x", "scale", "bias"], ["axis": .int(axis), "epsilon": .float(1e-3)])],
                  inputs: [("x", x)],
                  constants: ["scale": randomTensor(normShape, seed: 22, in: 0.5...1.5), "bias": randomTensor(normShape, seed: 23)])
    #expect(try Trainer(g).parameterNames == ["bias", "scale"])
    try checkGradients(g, feeds: ["x": x], step: 1e-3, label: "LayerNormalization")
  }

  @Test(arguments: [(17, -1), (17, 1), (11, 1)])
  func softmaxAndLogSoftmax(_ case_: (Int, Int)) throws {
    let (opset, axis) = case_
    let x = randomTensor([2, 3, 4], seed: 24, in: -2...2)
    for op in ["Softmax", "LogSoftmax"] {
      let g = graph([node(op, ["x"], ["axis": .int(axis)])], inputs: [("x", x)], opset: opset)
      try checkGradients(g, feeds: ["x": x], step: 1e-3, label: "\(op) opset \(opset) axis \(axis)")
    }
  }

  @Test(arguments: ["Erf", "Sqrt", "Tanh", "Sigmoid", "Exp", "Log", "Neg"])
  func smoothUnaryFunctions(_ op: String) throws {
    let x = randomTensor([3, 7], seed: 25, in: 0.2...1.5)  // inside Sqrt's and Log's domains
    try checkGradients(graph([node(op, ["x"])], inputs: [("x", x)]), feeds: ["x": x], step: 1e-3, label: op)
  }

  @Test func powerWithAConstantExponent() throws {
    let x = randomTensor([2, 3], seed: 26, in: 0.5...1.5)
    let g = graph([node("Pow", ["x", "p"])], inputs: [("x", x)], constants: ["p": Tensor(scalar: Float(2))])
    #expect(try Trainer(g).parameterNames.isEmpty)  // the exponent is not trained
    try checkGradients(g, feeds: ["x": x], step: 1e-3, label: "Pow")
  }

  @Test(arguments: ["ReduceSum", "ReduceMean", "ReduceSumSquare", "ReduceL2"], [0, 1])
  func reductions(_ op: String, _ keepDims: Int) throws {
    let x = randomTensor([2, 3, 4], seed: 27)
    // ReduceSum takes its axes as an input from opset 13, the others from opset 18.
    let g = op == "ReduceSum"
      ? graph([node(op, ["x", "axes"], ["keepdims": .int(keepDims)])], inputs: [("x", x)],
              constants: ["axes": Tensor(shape: [2], ints: [1, -1])], opset: 17)
      : graph([node(op, ["x"], ["axes": .ints([1, -1]), "keepdims": .int(keepDims)])], inputs: [("x", x)], opset: 17)
    try checkGradients(g, feeds: ["x": x], step: 1e-3, label: "\(op) keepdims \(keepDims)")
    let all = graph([node(op, ["x"], ["keepdims": .int(keepDims)])], inputs: [("x", x)], opset: op == "ReduceSum" ? 17 : 13)
    try checkGradients(all, feeds: ["x": x], step: 1e-3, label: "\(op) over every axis")
  }

  @Test func gatherAddsRepeatedRowsAndCountsNegativeIndicesFromTheEnd() throws {
    let table = randomTensor([5, 3], seed: 28)
    let indices = Tensor(shape: [2, 3], ints: [0, 4, -1, 2, 0, 0])
    let g = graph([node("Gather", ["table", "ids"], outputs: ["rows"]), node("Mul", ["rows", "x"])],
                  inputs: [("x", randomTensor([2, 3, 3], seed: 29))], constants: ["table": table, "ids": indices])
    #expect(try Trainer(g).parameterNames == ["table"])
    try checkGradients(g, feeds: ["x": randomTensor([2, 3, 3], seed: 29)], step: 1e-3, label: "Gather")
    let axis1 = graph([node("Gather", ["x", "ids"], ["axis": .int(1)])], inputs: [("x", randomTensor([2, 5, 2], seed: 30))],
                      constants: ["ids": Tensor(shape: [3], ints: [1, 1, -2])])
    try checkGradients(axis1, feeds: ["x": randomTensor([2, 5, 2], seed: 30)], step: 1e-3, label: "Gather axis 1")
  }

  @Test func whereExpandAndCast() throws {
    let a = randomTensor([2, 3], seed: 31), b = randomTensor([3], seed: 32)
    let mask = Tensor(dtype: .bool, shape: [2, 1], storage: .bool([true, false]))
    let g = graph([
      node("Where", ["mask", "a", "b"], outputs: ["w"]),
      node("Expand", ["w", "shape"], outputs: ["e"]),
      node("Cast", ["e"], ["to": .int(1)]),
    ], inputs: [("a", a), ("b", b)], constants: ["mask": mask, "shape": Tensor(shape: [3], ints: [4, 2, 3])])
    try checkGradients(g, feeds: ["a": a, "b": b], step: 1e-3, label: "Where/Expand/Cast")
  }

  /// Attention with a padding mask written as exported models write it: a NaN guard
  /// (`Where(IsNaN(p), 0, p)`) after the Softmax, then mean pooling over the unmasked tokens
  /// and L2 normalization.
  @Test func maskedAttentionWithMeanPoolingAndL2Normalization() throws {
    let x = randomTensor([2, 4, 3], seed: 33)
    let mask = Tensor(shape: [2, 4, 1], floats: [1, 1, 1, 0, 1, 1, 0, 0])
    let nodes = [
      node("MatMul", ["x", "wq"], outputs: ["q"]), node("Transpose", ["x"], ["perm": .ints([0, 2, 1])], outputs: ["xt"]),
      node("MatMul", ["q", "xt"], outputs: ["s"]), node("Softmax", ["s"], ["axis": .int(-1)], outputs: ["p"]),
      node("IsNaN", ["p"], outputs: ["bad"]), node("Where", ["bad", "zero", "p"], outputs: ["p2"]),
      node("MatMul", ["p2", "x"], outputs: ["a"]), node("Erf", ["a"], outputs: ["e"]),
      node("LayerNormalization", ["e", "gamma", "beta"], outputs: ["n"]),
      node("Mul", ["n", "mask"], outputs: ["m"]), node("ReduceSum", ["m", "one"], ["keepdims": .int(0)], outputs: ["pooled"]),
      node("ReduceL2", ["pooled"], ["axes": .ints([1]), "keepdims": .int(1)], outputs: ["norm"]),
      node("Div", ["pooled", "norm"]),
    ]
    let g = graph(nodes, inputs: [("x", x)], constants: [
      "wq": randomTensor([3, 3], seed: 34), "zero": Tensor(scalar: Float(0)), "gamma": randomTensor([3], seed: 35, in: 0.5...1.5),
      "beta": randomTensor([3], seed: 36), "mask": mask, "one": Tensor(shape: [1], ints: [1]),
    ])
    try checkGradients(g, feeds: ["x": x], step: 1e-3, tolerance: 2e-3, label: "attention block")
  }
}

/// The activation functions of MobileNetV3 and other CNNs, and GELU as one op, against finite
/// differences on both sides of their kinks.
@Suite struct ActivationGradientTests {
  /// 20 values at -4.75, -4.25, ..., 4.75: 0.25 or more from every kink (0, +-2.5, +-3).
  static let x = Tensor(shape: [4, 5], floats: distinctTensor([4, 5], seed: 31).floats.map { $0 * 5 })

  @Test(arguments: [
    ("LeakyRelu", ["alpha": Attribute.float(0.1)]), ("Elu", ["alpha": .float(0.7)]), ("Selu", [:]),
    ("HardSigmoid", [:]), ("HardSigmoid", ["alpha": .float(1.0 / 6), "beta": .float(0.5)]), ("HardSwish", [:]),
    ("Softplus", [:]), ("Softsign", [:]), ("Gelu", [:]), ("Gelu", ["approximate": .string("tanh")]),
  ] as [(String, [String: Attribute])])
  func activation(_ op: String, _ attributes: [String: Attribute]) throws {
    let g = graph([node(op, ["x"], attributes)], inputs: [("x", Self.x)], opset: op == "Gelu" ? 20 : 17)
    try checkGradients(g, feeds: ["x": Self.x], step: 1e-3, label: "\(op) \(attributes)")
  }
}
