import Foundation
import LowbitCore
import LowbitData
import LowbitONNX
@testable import LowbitQuant
import LowbitTestSupport
import LowbitTrain
import Testing

/// BatchNorm in QAT (white paper sec. 4.2): unfolding PTQ's folded BatchNorms for per-channel
/// training, absorbing them into the weight scales afterwards, and BN re-estimation.
@Suite struct QATBatchNormTests {
  /// Conv(3x3, 4 -> 6) -> BN -> Relu -> Conv(1x1, 6 -> 5) -> BN, with gammas of both signs.
  static func model() -> Graph {
    func bn(_ p: String, _ c: Int, seed: UInt64) -> [String: Tensor] {
      var gamma = randomTensor([c], seed: seed, in: 0.5...1.5).floats
      gamma[1] = -gamma[1]  // a negative BN factor: unfolding flips this channel
      return [
        p + "_g": Tensor(shape: [c], floats: gamma), p + "_b": randomTensor([c], seed: seed + 1, in: -0.5...0.5),
        p + "_m": randomTensor([c], seed: seed + 2, in: -0.3...0.3), p + "_v": randomTensor([c], seed: seed + 3, in: 0.2...2),
      ]
    }
    var initializers: [String: Tensor] = [
      "w1": randomTensor([6, 4, 3, 3], seed: 1, in: -0.5...0.5), "b1": randomTensor([6], seed: 2, in: -0.2...0.2),
      "w2": randomTensor([5, 6, 1, 1], seed: 3, in: -0.5...0.5),
    ]
    initializers.merge(bn("bn1", 6, seed: 10)) { a, _ in a }
    initializers.merge(bn("bn2", 5, seed: 20)) { a, _ in a }
    return Graph(
      nodes: [
        Node(name: "conv1", opType: "Conv", inputs: ["x", "w1", "b1"], outputs: ["c1"], attributes: ["pads": .ints([1, 1, 1, 1])]),
        Node(name: "bn1", opType: "BatchNormalization", inputs: ["c1", "bn1_g", "bn1_b", "bn1_m", "bn1_v"], outputs: ["n1"]),
        Node(name: "relu", opType: "Relu", inputs: ["n1"], outputs: ["r1"]),
        Node(name: "conv2", opType: "Conv", inputs: ["r1", "w2"], outputs: ["c2"]),
        Node(name: "bn2", opType: "BatchNormalization", inputs: ["c2", "bn2_g", "bn2_b", "bn2_m", "bn2_v"], outputs: ["y"]),
      ],
      inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.fixed(8), .fixed(4), .fixed(5), .fixed(5)])],
      outputs: [ValueInfo(name: "y")], initializers: initializers)
  }

  /// Per-channel W4 weights only, so the comparisons see the BN conversion and nothing else.
  static func weightsOnly() -> QuantConfig {
    var c = QuantConfig.rangeSettingOnly
    c.perChannel = true
    c.weightBits = 4
    c.quantizeActivations = false
    return c
  }

  @Test func unfoldingKeepsTheFunctionAndTheIntegersAndFlipsNegativeFactors() throws {
    let x = randomTensor([8, 4, 5, 5], seed: 5, in: -1...1)
    let folded = try QuantizationAwareTraining.prepare(Self.model(), config: Self.weightsOnly(), batchNorm: .fold, batches: [["x": x]])
    let kept = try QuantizationAwareTraining.prepare(Self.model(), config: Self.weightsOnly(), batchNorm: .keep, batches: [["x": x]])
    #expect(kept.unfolded.map(\.layer).sorted() == ["conv1", "conv2"])
    #expect(kept.unfolded.allSatisfy { $0.flippedChannels == 1 })
    #expect(kept.graph.nodes.filter { $0.opType == "BatchNormalization" }.count == 2)
    // Every unfolded BN factor is positive, and the FakeQuantize integers are PTQ's.
    for node in kept.graph.nodes where node.opType == "BatchNormalization" {
      #expect(kept.graph.initializers[node.inputs[1]]!.floats.allSatisfy { $0 > 0 })
    }
    let a = try Trainer(folded.graph).forward(["x": x], mode: .inference).value("y")!.floats
    let b = try Trainer(kept.graph).forward(["x": x], mode: .inference).value("y")!.floats
    let error = maxRelativeError(b, a)
    print("unfolded vs folded QAT graph: max relative error \(error)")
    #expect(error <= 1e-5)
  }

  @Test func foldingBackAfterTrainingKeepsOutputsWithin1e5() throws {
    let x = randomTensor([8, 4, 5, 5], seed: 5, in: -1...1)
    let kept = try QuantizationAwareTraining.prepare(Self.model(), config: Self.weightsOnly(), batchNorm: .keep, batches: [["x": x]])
    // Train a few steps toward a regression-like target through the first output channel: the
    // weights, scales, gammas, betas and running statistics all move.
    var trainer = try Trainer(kept.graph)
    var sgd = SGD(momentum: 0.9)
    for step in 0..<4 {
      let batch = randomTensor([8, 4, 5, 5], seed: UInt64(30 + step), in: -1...1)
      let tape = try trainer.forward(["x": batch], mode: .training)
      let y = tape.value("y")!
      let gradient = try trainer.backward(tape, outputGradients: ["y": Tensor(shape: y.shape, floats: y.floats.map { 0.1 * $0 })])
      trainer.updateStatistics(from: tape)
      var p = trainer.parameters
      try sgd.update(&p, gradients: gradient, learningRate: 0.05)
      trainer.parameters = p
      trainer.projectParameters()
    }
    #expect(trainer.graph.initializers != kept.graph.initializers)
    let (folded, clipped) = try QuantizationAwareTraining.foldBatchNorm(trainer.graph)
    #expect(!folded.nodes.contains { $0.opType == "BatchNormalization" })
    #expect(clipped == 0)
    let a = try trainer.forward(["x": x], mode: .inference).value("y")!.floats
    let b = try Trainer(folded).forward(["x": x], mode: .inference).value("y")!.floats
    let error = maxRelativeError(b, a)
    print("trained unfolded QAT graph vs BN absorbed into the weight scales: max relative error \(error)")
    #expect(error <= 1e-5)
    // The folded weights are grid points of the folded scales, and the QDQ export runs them.
    for node in folded.nodes where FakeQuantize.isFakeQuantize(node) {
      let w = folded.initializers[node.inputs[0]]!, s = folded.initializers[node.inputs[1]]!.floats
      QuantizationAwareTraining.forEachChannel(shape: w.shape, axis: 0) { c, i in
        let level = w.floats[i] / s[c]
        #expect(abs(level - level.rounded()) < 1e-4 && abs(level) <= 8)
      }
    }
    let exported = try QuantizationAwareTraining.export(trainer.graph, parameters: kept.parameters)
    let file = try Interpreter(exported).run(["x": x])["y"]!.floats
    #expect(maxRelativeError(file, a) <= 1e-5)
  }

  @Test func aNegativeFactorAfterTrainingMirrorsTheGridAndClipsOnlyQmin() throws {
    let x = randomTensor([8, 4, 5, 5], seed: 5, in: -1...1)
    var kept = try QuantizationAwareTraining.prepare(Self.model(), config: Self.weightsOnly(), batchNorm: .keep, batches: [["x": x]])
    // Turn channel 0 of the first BN negative, and put one weight of channel 0 at qmin.
    let bn = kept.graph.nodes.first { $0.opType == "BatchNormalization" }!
    var gamma = kept.graph.initializers[bn.inputs[1]]!.floats
    gamma[0] = -gamma[0]
    kept.graph.initializers[bn.inputs[1]] = Tensor(shape: [gamma.count], floats: gamma)
    let fq = kept.graph.nodes.first { FakeQuantize.isFakeQuantize($0) && $0.inputs[0] == "conv1.weight_folded" }!
    let scale = kept.graph.initializers[fq.inputs[1]]!.floats[0]
    var w = kept.graph.initializers["conv1.weight_folded"]!.floats
    w[0] = -8 * scale
    kept.graph.initializers["conv1.weight_folded"] = Tensor(shape: [6, 4, 3, 3], floats: w)
    let trainer = try Trainer(kept.graph)
    let (folded, clipped) = try QuantizationAwareTraining.foldBatchNorm(trainer.graph)
    // Exactly the channel-0 weights at qmin = -8 (the one set here and any range setting clipped there).
    let atQmin = w[0..<36].filter { ($0 / scale).rounded(.toNearestOrEven) <= -8 }.count
    #expect(atQmin >= 1 && clipped == atQmin)
    let a = try trainer.forward(["x": x], mode: .inference).value("y")!.floats
    let b = try Trainer(folded).forward(["x": x], mode: .inference).value("y")!.floats
    // Those weights moved by one grid step; everything else is unchanged.
    #expect(maxRelativeError(b, a) < 0.05)
  }

  @Test func keepingBatchNormNeedsSymmetricPerChannelWeights() {
    var c = Self.weightsOnly()
    c.perChannel = false
    #expect(throws: LowbitError.self) {
      try QuantizationAwareTraining.prepare(Self.model(), config: c, batchNorm: .keep, batches: [])
    }
  }

  @Test func batchNormReestimationAveragesTheBatchStatistics() throws {
    let graph = Self.model()
    var trainer = try Trainer(graph)
    let batches = (0..<3).map { ["x": randomTensor([8, 4, 5, 5], seed: UInt64(40 + $0), in: -1...2)] }
    #expect(try trainer.reestimateBatchNormStatistics(batches) == 2)
    // Expected: the mean over batches of each batch's per-channel mean of conv1's output, and of
    // its unbiased variance.
    var means = [Double](repeating: 0, count: 6), variances = [Double](repeating: 0, count: 6)
    for feeds in batches {
      let c1 = try Trainer(graph).forward(feeds, mode: .inference).value("c1")!
      let hw = 25, n = 8
      for c in 0..<6 {
        var values: [Double] = []
        for i in 0..<n { for j in 0..<hw { values.append(Double(c1.floats[(i * 6 + c) * hw + j])) } }
        let m = values.reduce(0, +) / Double(values.count)
        let v = values.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(values.count - 1)
        means[c] += m / 3
        variances[c] += v / 3
      }
    }
    let runningMean = trainer.graph.initializers["bn1_m"]!.floats, runningVariance = trainer.graph.initializers["bn1_v"]!.floats
    for c in 0..<6 {
      #expect(abs(Double(runningMean[c]) - means[c]) < 1e-5 * max(1, abs(means[c])))
      #expect(abs(Double(runningVariance[c]) - variances[c]) < 1e-5 * max(1, variances[c]))
    }
    // Momentum attributes are restored; nothing but the statistics changed.
    #expect(trainer.graph.nodes == (try graph.validated()).nodes)
    #expect(trainer.graph.initializers["w1"] == graph.initializers["w1"])
  }
}
