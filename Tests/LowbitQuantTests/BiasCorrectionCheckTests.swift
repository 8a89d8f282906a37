import LowbitCore
import LowbitQuant
import LowbitTestSupport
import Testing

/// Empirical bias correction is checked end to end: kept where removing the mean shift brings
/// the outputs closer to the float model, undone (unless asked for) where it does not.
@Suite struct BiasCorrectionCheckTests {
  /// `x [N, 4, 8] -> MatMul -> Add bias -> Gather token 0 -> y [N, 8]`: the layer sees four
  /// rows per sample, the output only the first.
  static func tokenGraph() -> Graph {
    Graph(
      nodes: [
        Node(name: "fc", opType: "MatMul", inputs: ["x", "w"], outputs: ["p"]),
        Node(name: "fc_bias", opType: "Add", inputs: ["p", "b"], outputs: ["h"]),
        Node(name: "first", opType: "Gather", inputs: ["h", "i0"], outputs: ["y"], attributes: ["axis": .int(1)]),
      ],
      inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(4), .fixed(8)])],
      outputs: [ValueInfo(name: "y", dtype: .float32)],
      initializers: [
        "w": randomTensor([8, 8], seed: 7), "b": randomTensor([8], seed: 8, in: -0.1...0.1),
        "i0": Tensor(shape: [], ints: [0]),
      ])
  }

  /// Batches whose token 0 is small and centred, and whose other tokens sit at `others`.
  static func batches(token0: ClosedRange<Float>, others: ClosedRange<Float>) -> [[String: Tensor]] {
    (0..<4).map { b in
      let small = randomTensor([16, 8], seed: 20 + UInt64(b), in: token0).floats
      let large = randomTensor([16, 3, 8], seed: 30 + UInt64(b), in: others).floats
      var x: [Float] = []
      for n in 0..<16 {
        x.append(contentsOf: small[(n * 8)..<(n * 8 + 8)])
        x.append(contentsOf: large[(n * 24)..<(n * 24 + 24)])
      }
      return ["x": Tensor(shape: [16, 4, 8], floats: x)]
    }
  }

  static func config(_ mode: BiasCorrectionMode) -> QuantConfig {
    var c = QuantConfig()
    c.weightBits = 4
    c.adaRound = false
    c.gptq = false  // round to nearest, so the comparisons see bias correction alone
    c.crossLayerEqualization = false
    c.quantizeActivations = false
    c.biasCorrection = mode
    return c
  }

  /// Mean square between the written graph's outputs and the float graph's.
  static func outputError(_ graph: Graph, _ batches: [[String: Tensor]]) throws -> Double {
    try outputMeanSquare(graph, tokenGraph(), batches: batches)
  }

  static func check(_ result: QuantizationResult) -> String {
    result.steps.first { $0.step == "bias correction check" }?.detail ?? ""
  }

  /// Tokens 1-3 sit near 5 and token 0 near 0: the mean shift is the large tokens' and moves
  /// token 0, the only one the output reads, away from the float model.
  @Test func aCorrectionThatRaisesTheOutputLossIsUndone() throws {
    let data = Self.batches(token0: -0.1...0.1, others: 4...6)
    let auto = try PostTrainingQuantization.quantize(Self.tokenGraph(), config: Self.config(.auto), batches: data)
    let asked = try PostTrainingQuantization.quantize(Self.tokenGraph(), config: Self.config(.empirical), batches: data)
    let none = try PostTrainingQuantization.quantize(Self.tokenGraph(), config: Self.config(.none), batches: data)
    #expect(Self.check(auto).hasPrefix("undone"), "\(Self.check(auto))")
    #expect(Self.check(asked).hasPrefix("kept as asked"), "\(Self.check(asked))")
    #expect(auto.transformedGraph.initializers["b"] == none.transformedGraph.initializers["b"])
    #expect(auto.layers.allSatisfy { $0.biasShift == nil })
    let undone = try Self.outputError(auto.graph, data), corrected = try Self.outputError(asked.graph, data)
    print("bias correction check, harmful: output mean square \(corrected) corrected, \(undone) undone")
    #expect(undone == (try Self.outputError(none.graph, data)))
    #expect(undone < 0.5 * corrected)
  }

  /// Every token near 5: the mean shift is every row's, and removing it helps.
  @Test func aCorrectionThatLowersTheOutputLossIsKept() throws {
    let data = Self.batches(token0: 4...6, others: 4...6)
    let auto = try PostTrainingQuantization.quantize(Self.tokenGraph(), config: Self.config(.auto), batches: data)
    let none = try PostTrainingQuantization.quantize(Self.tokenGraph(), config: Self.config(.none), batches: data)
    #expect(Self.check(auto).hasPrefix("kept;"), "\(Self.check(auto))")
    #expect(auto.transformedGraph.initializers["b"] != none.transformedGraph.initializers["b"])
    #expect(auto.layers.first?.biasShift ?? 0 > 0)
    let corrected = try Self.outputError(auto.graph, data), plain = try Self.outputError(none.graph, data)
    print("bias correction check, helpful: output mean square \(plain) uncorrected, \(corrected) corrected")
    #expect(corrected < 0.5 * plain)
  }
}
