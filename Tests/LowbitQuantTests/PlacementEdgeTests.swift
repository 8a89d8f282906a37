import LowbitCore
import LowbitQuant
import LowbitTestSupport
import Testing

/// Values that look like activations but are not: shape arithmetic that shape inference could
/// not type, and an attention mask of -inf added after a MatMul.
@Suite struct PlacementEdgeTests {
  /// `x -> MatMul -> y`, plus an int64 Concat of ArgMax's output (no shape rule types it), the
  /// way exporters build a Reshape target from run-time sizes.
  @Test func integerValuesTheInferenceCouldNotTypeGetNoQuantizer() throws {
    let g = Graph(
      nodes: [
        Node(name: "largest", opType: "ArgMax", inputs: ["x"], outputs: ["nz"], attributes: ["axis": .int(1)]),
        Node(name: "both", opType: "Concat", inputs: ["nz", "nz"], outputs: ["c"], attributes: ["axis": .int(1)]),
        Node(name: "count", opType: "Shape", inputs: ["c"], outputs: ["cs"]),
        Node(name: "fc", opType: "MatMul", inputs: ["x", "w"], outputs: ["y"]),
      ],
      inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(4)])],
      outputs: [ValueInfo(name: "y", dtype: .float32), ValueInfo(name: "cs", dtype: .int64)],
      initializers: ["w": randomTensor([4, 3], seed: 5)])
    var config = QuantConfig()
    config.adaRound = false
    let batches = (0..<2).map { ["x": randomTensor([8, 4], seed: 10 + UInt64($0))] }
    #expect(QuantizerPlacement.sites(in: g, config: config).contains { $0.name == "c" })  // untyped: placed
    let result = try PostTrainingQuantization.quantize(g, config: config, batches: batches)
    #expect(result.quantizers["c"] == nil && result.quantizers["y"] != nil)
    #expect(!result.graph.nodes.contains { $0.opType == "QuantizeLinear" && $0.inputs[0] == "c" })
    _ = try Interpreter(result.graph).run(batches[0])
  }

  /// `scores = q k^T + mask` with a causal mask of 0 and -inf: the mask is not a bias, so the
  /// quantizer sits on the scores before it and calibration sees finite values.
  @Test func anAttentionMaskIsNotABias() throws {
    var mask = [Float](repeating: 0, count: 16)
    for i in 0..<4 { for j in 0..<4 where j > i { mask[i * 4 + j] = -.infinity } }
    let g = Graph(
      nodes: [
        Node(name: "scores", opType: "MatMul", inputs: ["q", "kT"], outputs: ["s"]),
        Node(name: "masked", opType: "Add", inputs: ["s", "mask"], outputs: ["sm"]),
        Node(name: "softmax", opType: "Softmax", inputs: ["sm"], outputs: ["p"], attributes: ["axis": .int(-1)]),
        Node(name: "mix", opType: "MatMul", inputs: ["p", "v"], outputs: ["y"]),
      ],
      inputs: [
        ValueInfo(name: "q", dtype: .float32, shape: [.symbol("N"), .fixed(4), .fixed(8)]),
        ValueInfo(name: "kT", dtype: .float32, shape: [.symbol("N"), .fixed(8), .fixed(4)]),
        ValueInfo(name: "v", dtype: .float32, shape: [.symbol("N"), .fixed(4), .fixed(8)]),
      ],
      outputs: [ValueInfo(name: "y", dtype: .float32)],
      initializers: ["mask": Tensor(shape: [4, 4], floats: mask)])
    let sites = QuantizerPlacement.sites(in: g, config: QuantConfig())
    #expect(sites.contains { $0.name == "s" } && !sites.contains { $0.name == "sm" }, "\(sites.map(\.name))")
    let batches = (0..<2).map { b in
      ["q": randomTensor([2, 4, 8], seed: 20 + b), "kT": randomTensor([2, 8, 4], seed: 30 + b), "v": randomTensor([2, 4, 8], seed: 40 + b)]
    }
    let result = try PostTrainingQuantization.quantize(g, config: QuantConfig(), batches: batches)
    #expect(result.quantizers["s"] != nil)
  }

  /// A Conv followed by SiLU written out (`h * Sigmoid(h)`), then a BatchNorm that folding
  /// cannot take (it follows the activation) feeding a depthwise Conv, then GELU written out
  /// (`0.5 h (1 + Erf(h / sqrt 2))`) before a Gemm-like MatMul: each written-out activation ends
  /// its unit like a single op (nothing inside is quantized), and the BatchNorm's output, read by
  /// a Conv, is quantized.
  @Test func writtenOutActivationsEndTheirUnitAndEveryLayerReadsAQuantizedValue() throws {
    let c = 4
    let g = Graph(
      nodes: [
        Node(name: "conv", opType: "Conv", inputs: ["x", "w", "b"], outputs: ["h"], attributes: ["kernel_shape": .ints([1, 1])]),
        Node(name: "sig", opType: "Sigmoid", inputs: ["h"], outputs: ["s"]),
        Node(name: "silu", opType: "Mul", inputs: ["h", "s"], outputs: ["a"]),
        Node(name: "bn", opType: "BatchNormalization", inputs: ["a", "gamma", "beta", "mean", "var"], outputs: ["n"]),
        Node(name: "dw", opType: "Conv", inputs: ["n", "wd"], outputs: ["d"],
             attributes: ["kernel_shape": .ints([3, 3]), "pads": .ints([1, 1, 1, 1]), "group": .int(c)]),
        Node(name: "div", opType: "Div", inputs: ["d", "sqrt2"], outputs: ["d1"]),
        Node(name: "erf", opType: "Erf", inputs: ["d1"], outputs: ["d2"]),
        Node(name: "plus", opType: "Add", inputs: ["d2", "one"], outputs: ["d3"]),
        Node(name: "times", opType: "Mul", inputs: ["d", "d3"], outputs: ["d4"]),
        Node(name: "half", opType: "Mul", inputs: ["d4", "half"], outputs: ["e"]),
        Node(name: "pool", opType: "GlobalAveragePool", inputs: ["e"], outputs: ["p"]),
        Node(name: "flat", opType: "Flatten", inputs: ["p"], outputs: ["f"]),
        Node(name: "fc", opType: "Gemm", inputs: ["f", "wf", "bf"], outputs: ["y"], attributes: ["transB": .int(1)]),
      ],
      inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(2), .fixed(6), .fixed(6)])],
      outputs: [ValueInfo(name: "y", dtype: .float32)],
      initializers: [
        "w": randomTensor([c, 2, 1, 1], seed: 80), "b": randomTensor([c], seed: 81),
        "gamma": randomTensor([c], seed: 82, in: 0.5...1.5), "beta": randomTensor([c], seed: 83),
        "mean": randomTensor([c], seed: 84), "var": randomTensor([c], seed: 85, in: 0.5...1.5),
        "wd": randomTensor([c, 1, 3, 3], seed: 86),
        "sqrt2": Tensor(shape: [], floats: [1.4142135]), "one": Tensor(shape: [], floats: [1]),
        "half": Tensor(shape: [], floats: [0.5]),
        "wf": randomTensor([3, c], seed: 87), "bf": randomTensor([3], seed: 88),
      ])
    let (prepared, _) = try PostTrainingQuantization.prepare(g)
    let activations = QuantizerPlacement.sites(in: prepared, config: QuantConfig()).filter { $0.kind == .activation }.map(\.name)
    #expect(activations == ["x", "a", "n", "e", "p", "y"], "\(activations)")
    var config = QuantConfig()
    config.adaRound = false
    let batches = (0..<2).map { ["x": randomTensor([4, 2, 6, 6], seed: 90 + UInt64($0))] }
    let result = try PostTrainingQuantization.quantize(g, config: config, batches: batches)
    let folding = result.steps.first { $0.step == "fold batchnorm" }?.detail
    #expect(folding == "0 of 1 BatchNormalization folded; left in place (no Conv or Gemm before them): 'bn'")
    // Every Conv and Gemm reads a DequantizeLinear (through Flatten, which keeps the grid).
    let producer = result.graph.producers()
    for node in result.graph.nodes where ["Conv", "Gemm"].contains(node.opType) {
      var v = node.inputs[0]
      while let p = producer[v], result.graph.nodes[p].opType == "Flatten" { v = result.graph.nodes[p].inputs[0] }
      #expect(producer[v].map { result.graph.nodes[$0].opType } == "DequantizeLinear", "\(node.name) reads \(v)")
    }
  }

  /// An input normalization written into the graph (`(x - mean) / std`) before the first Conv:
  /// the Conv reads the normalized value, so that value is quantized (the raw input is too).
  @Test func aNormalizationBeforeTheFirstLayerIsQuantized() throws {
    let g = Graph(
      nodes: [
        Node(name: "center", opType: "Sub", inputs: ["x", "mean"], outputs: ["c"]),
        Node(name: "scale", opType: "Div", inputs: ["c", "std"], outputs: ["z"]),
        Node(name: "conv", opType: "Conv", inputs: ["z", "w"], outputs: ["y"], attributes: ["kernel_shape": .ints([1, 1])]),
      ],
      inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(3), .fixed(4), .fixed(4)])],
      outputs: [ValueInfo(name: "y", dtype: .float32)],
      initializers: [
        "mean": Tensor(shape: [1, 3, 1, 1], floats: [0.4, 0.5, 0.6]), "std": Tensor(shape: [1, 3, 1, 1], floats: [0.2, 0.25, 0.3]),
        "w": randomTensor([2, 3, 1, 1], seed: 91),
      ])
    let names = QuantizerPlacement.sites(in: g, config: QuantConfig()).filter { $0.kind == .activation }.map(\.name)
    #expect(names == ["x", "y", "z"], "\(names)")
  }
}
