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
}
