import LowbitCore
import LowbitData
import LowbitTestSupport
import Testing

@testable import LowbitQuant

/// `x [N, 32] -> MatMul(w1 [32, 16]) -> Relu -> second layer -> y [N, 8]`, the second layer a
/// MatMul on `w2 [16, 8]` or a Gemm on its transpose with `transB`.
private func twoLayerGraph(gemm: Bool) -> Graph {
  let w1 = randomTensor([32, 16], seed: 1, in: -0.5...0.5)
  let w2 = randomTensor([16, 8], seed: 2, in: -0.5...0.5)
  let second = gemm
    ? Node(name: "fc2", opType: "Gemm", inputs: ["a", "w2"], outputs: ["y"], attributes: ["transB": .int(1)])
    : Node(name: "fc2", opType: "MatMul", inputs: ["a", "w2"], outputs: ["y"])
  return Graph(
    nodes: [
      Node(name: "fc1", opType: "MatMul", inputs: ["x", "w1"], outputs: ["h"]),
      Node(name: "relu", opType: "Relu", inputs: ["h"], outputs: ["a"]),
      second,
    ],
    inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(32)])],
    outputs: [ValueInfo(name: "y", dtype: .float32)],
    initializers: ["w1": w1, "w2": gemm ? Tensor(shape: [8, 16], floats: transpose(w2.floats, rows: 16, columns: 8)) : w2])
}

/// Rows whose 32 features come from 4 factors: the inputs GPTQ gains most on.
private func correlatedBatches(_ count: Int) -> [[String: Tensor]] {
  let mix = randomTensor([4, 32], seed: 3).floats
  return (0..<count).map { b in
    let z = randomTensor([16, 4], seed: 10 + UInt64(b), in: -2...2).floats
    let noise = randomTensor([16, 32], seed: 100 + UInt64(b), in: -0.05...0.05).floats
    var x = [Float](repeating: 0, count: 16 * 32)
    for r in 0..<16 { for c in 0..<32 { x[r * 32 + c] = (0..<4).reduce(noise[r * 32 + c]) { $0 + z[r * 4 + $1] * mix[$1 * 32 + c] } } }
    return ["x": Tensor(shape: [16, 32], floats: x)]
  }
}

private func weightOnly(bits: Int, group: Int) -> QuantConfig {
  var c = QuantConfig()
  c.quantizeActivations = false
  c.weightBits = bits
  c.weightGroupSize = group
  return c
}

@Suite struct GPTQGraphTests {
  /// The weight-only pipeline at 4 bits and fewer runs GPTQ by default, on symmetric and
  /// asymmetric grids alike: one record per layer, each below round to nearest's proxy loss,
  /// and the written file's weights are GPTQ's.
  @Test(arguments: [2, 3, 4], [true, false])
  func weightOnlyLowBitsRunGPTQByDefault(bits: Int, symmetric: Bool) throws {
    let g = twoLayerGraph(gemm: false)
    var config = weightOnly(bits: bits, group: 8)
    config.weightSymmetric = symmetric
    #expect(config.gptqInUse(for: g))
    config.gptq = true  // kept as asked: 2 held-out batches are too few to judge by
    let result = try PostTrainingQuantization.quantize(g, config: config, batches: correlatedBatches(16))
    #expect(result.steps.contains { $0.step == "gptq" })
    #expect(result.gptq.map(\.layer) == ["fc1", "fc2"])
    #expect(result.gptq.allSatisfy { $0.gptqLoss < $0.nearestLoss })
    #expect(!result.steps.contains { $0.step.hasPrefix("adaround") })  // every weight rounded by GPTQ
    for name in ["w1", "w2"] {
      let w = result.transformedGraph.initializers[name]!, q = result.quantizers[name]!
      #expect(q.fakeQuantize(w.floats, shape: w.shape) == w.floats)  // on the grid, so the file holds them exactly
      #expect(w.floats != g.initializers[name]!.floats)
    }
    #expect(QuantConfig().gptqInUse(for: g) == false && config.gptqInUse(for: g) && weightOnly(bits: 4, group: 8).gptqInUse(for: g))
    #expect(weightOnly(bits: 8, group: 8).gptqInUse(for: g) == false && QuantConfig.rangeSettingOnly.gptqInUse(for: g) == false)
  }

  /// In a transformer (a graph with LayerNormalization) whose activations are quantized, GPTQ
  /// takes AdaRound's place for per-channel MatMul weights; `--effort fast` (no AdaRound) rounds
  /// them to nearest, and per-tensor weights and graphs without LayerNormalization keep AdaRound.
  @Test func transformersRunGPTQInPlaceOfAdaRound() throws {
    let block = PerChannelActivationTests.block()
    let batches = (0..<8).map { ["x": randomTensor([8, 3, PerChannelActivationTests.width], seed: 170 + UInt64($0))] }
    var perChannel = QuantConfig()
    perChannel.perChannel = true
    let result = try PostTrainingQuantization.quantize(block, config: perChannel, batches: batches)
    #expect(result.steps.contains { $0.step == "gptq" })
    #expect(!result.steps.contains { $0.step.hasPrefix("adaround") })
    #expect(Set(result.gptq.map(\.layer)) == ["fc1", "fc2"])
    #expect(!Effort.fast.applied(to: perChannel).gptqInUse(for: block) && !QuantConfig().gptqInUse(for: block))
    #expect(!perChannel.gptqInUse(for: twoLayerGraph(gemm: false)))
  }

  /// A Gemm with `transB` stores `W^T`: GPTQ rounds it to the transpose of what it makes of the
  /// MatMul on `W`, grids included.
  @Test func gemmWithTransposedWeightMatchesMatMul() throws {
    let batches = FeedBatches(correlatedBatches(4))
    var results: [GPTQResult] = []
    for gemm in [false, true] {
      let g = twoLayerGraph(gemm: gemm)
      let config = weightOnly(bits: 4, group: 8)
      let sites = QuantizerPlacement.sites(in: g, config: config)
      let quantizers = try Calibration.weightQuantizers(g, sites: sites, config: config)
      results.append(try GPTQ.run(g, sites: sites, quantizers: quantizers, config: config, batches: batches, memoryBudget: 1))
    }
    let (matMul, gemm) = (results[0], results[1])
    #expect(gemm.layers.map(\.layer) == ["fc1", "fc2"] && gemm.skipped.isEmpty)
    #expect(transpose(matMul.weights["w2"]!.floats, rows: 16, columns: 8) == gemm.weights["w2"]!.floats)
    #expect(matMul.weights["w1"] == gemm.weights["w1"])
    let p = matMul.quantizers["w2"]!.params, t = gemm.quantizers["w2"]!.params  // [2, 8] and [8, 2]
    for column in 0..<8 {
      for group in 0..<2 { #expect(p[group * 8 + column] == t[column * 2 + group]) }
    }
    // memoryBudget 1 byte: one input per wave, still every layer.
    #expect(abs(matMul.layers[1].gptqLoss - gemm.layers[1].gptqLoss) <= 1e-9 * matMul.layers[1].gptqLoss)
  }

  /// The Hessian is `2/n sum x^T x` over the rows reaching the layer: for the first layer, the
  /// model input's rows.
  @Test func hessianOfTheModelInput() throws {
    let g = twoLayerGraph(gemm: false)
    let batches = correlatedBatches(3)
    let h = try GPTQ.hessians(g, inputs: ["x": 32], batches: FeedBatches(batches)) {}
    let x = batches.flatMap { $0["x"]!.floats }
    for (i, j) in [(0, 0), (3, 17), (31, 2)] {
      let direct = (0..<48).reduce(0.0) { $0 + Double(x[$1 * 32 + i]) * Double(x[$1 * 32 + j]) } * 2 / 48
      #expect(abs(h["x"]!.hessian[i, j] - direct) <= 1e-9 * abs(direct) + 1e-12)
    }
  }

  /// With a mask input `[N, L]`, a value `[N, L, K]` adds only the rows where the mask is not 0.
  @Test func maskedRowsAreLeftOut() throws {
    let g = Graph(
      nodes: [Node(name: "fc", opType: "MatMul", inputs: ["x", "w"], outputs: ["y"])],
      inputs: [
        ValueInfo(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(3), .fixed(4)]),
        ValueInfo(name: "attention_mask", dtype: .int64, shape: [.symbol("N"), .fixed(3)]),
      ],
      outputs: [ValueInfo(name: "y", dtype: .float32)], initializers: ["w": randomTensor([4, 2], seed: 5)])
    let x = randomTensor([2, 3, 4], seed: 6)
    let mask = Tensor(dtype: .int64, shape: [2, 3], storage: .int([1, 1, 0, 1, 0, 0]))
    let feeds: FeedBatches = [["x": x, "attention_mask": mask]]
    let masked = try #require(try GPTQ.hessians(g, inputs: ["x": 4], batches: feeds, mask: "attention_mask") {}["x"])
    let all = try #require(try GPTQ.hessians(g, inputs: ["x": 4], batches: feeds) {}["x"])
    #expect(masked.rows == 3 && all.rows == 6)
    let v = x.floats
    let direct = [0, 1, 3].reduce(0.0) { $0 + Double(v[$1 * 4 + 1]) * Double(v[$1 * 4 + 2]) } * 2 / 3
    #expect(abs(masked.hessian[1, 2] - direct) <= 1e-9 * abs(direct))
  }
}
