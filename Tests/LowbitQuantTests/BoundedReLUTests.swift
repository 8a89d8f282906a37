import LowbitCore
import LowbitData
import LowbitTestSupport
import Testing

@testable import LowbitQuant

@Suite struct BoundedReLUTests {
  /// `input -> Pad -> conv1 -> ReLU6 -> Pad -> depthwise -> ReLU6 -> conv3`, the explicit zero Pads
  /// of TensorFlow-style SAME padding (EfficientNet) and ReLU6 as Clip(0, 6), with large first
  /// weights so that many activations pass 6.
  static func graph() -> Graph {
    func node(_ op: String, _ inputs: [String], _ out: String, _ attributes: [String: Attribute] = [:]) -> Node {
      Node(name: out + "_node", opType: op, inputs: inputs, outputs: [out], attributes: attributes)
    }
    let k3: [String: Attribute] = ["kernel_shape": .ints([3, 3])]
    return Graph(
      nodes: [
        node("Pad", ["x", "pads"], "xp"),
        node("Conv", ["xp", "w1", "b1"], "h1", k3),
        node("Clip", ["h1", "zero", "six"], "a1"),
        node("Pad", ["a1", "pads"], "a1p"),
        node("Conv", ["a1p", "w2", "b2"], "h2", k3.merging(["group": .int(8)]) { a, _ in a }),
        node("Clip", ["h2", "zero", "six"], "a2"),
        node("Conv", ["a2", "w3", "b3"], "y", ["kernel_shape": .ints([1, 1])]),
      ],
      inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(3), .fixed(10), .fixed(10)])],
      outputs: [ValueInfo(name: "y", dtype: .float32)],
      initializers: [
        "pads": Tensor(shape: [8], ints: [0, 0, 1, 1, 0, 0, 1, 1]),
        "zero": Tensor(scalar: 0), "six": Tensor(scalar: 6),
        "w1": randomTensor([8, 3, 3, 3], seed: 1, in: -2...2), "b1": randomTensor([8], seed: 2, in: -1...3),
        "w2": randomTensor([8, 1, 3, 3], seed: 3, in: -0.1...0.1), "b2": randomTensor([8], seed: 4, in: 0...2),
        "w3": randomTensor([4, 8, 1, 1], seed: 5, in: -3...3), "b3": randomTensor([4], seed: 6, in: -1...1),
      ],
      opsets: ["": 17])
  }

  static let input = ["x": randomTensor([4, 3, 10, 10], seed: 7, in: -2...2)]

  /// Zero Pads become the convolutions' padding, both pairs are equalized, and each ReLU6 keeps
  /// its function as `Relu` then `Min(6 / s_i)`: the equalized model equals the original, where
  /// a plain ReLU in the clip's place (DFQ) would not.
  @Test func equalizationKeepsReLU6() throws {
    let original = Self.graph()
    let simple = try original.simplified()
    #expect(!simple.nodes.contains { $0.opType == "Pad" })
    #expect(simple.nodes.filter { $0.opType == "Conv" }.map { $0.attributes["pads"] } == [.ints([1, 1, 1, 1]), .ints([1, 1, 1, 1]), nil])
    let y = try Interpreter(original).run(Self.input)["y"]!
    var probe = original
    probe.outputs.append(ValueInfo(name: "a1", dtype: .float32))
    let a1 = try Interpreter(probe).run(Self.input)["a1"]!
    #expect(a1.floats.contains(6), "the test needs clipped activations")
    let (equalized, pairs) = CrossLayerEqualization.equalize(simple)
    #expect(pairs.count == 2)
    #expect(equalized.nodes.filter { $0.opType == "Min" }.count == 2)
    #expect(!equalized.nodes.contains { $0.opType == "Clip" })
    let z = try Interpreter(equalized).run(Self.input)["y"]!
    #expect(maxRelativeError(z.floats, y.floats) < 1e-5)
    var relu = simple
    for i in relu.nodes.indices where relu.nodes[i].opType == "Clip" { relu.nodes[i].opType = "Relu"; relu.nodes[i].inputs = [relu.nodes[i].inputs[0]] }
    let r = try Interpreter(CrossLayerEqualization.equalize(relu).graph).run(Self.input)["y"]!
    #expect(maxRelativeError(r.floats, y.floats) > 1e-2)
  }

  /// High-bias absorption through a bounded ReLU (after equalization) lowers its bounds by c and
  /// keeps the function on the calibration data; a second equalization finds the rewritten pairs.
  @Test func absorptionLowersTheBound() throws {
    let (equalized, _) = CrossLayerEqualization.equalize(try Self.graph().simplified())
    let batches = [Self.input]
    let minima = try BiasAbsorption.preActivationMinima(equalized, batches: FeedBatches(batches))
    var stats: [String: BatchNormStatistics] = [:]
    let (absorbed, pairs) = try BiasAbsorption.absorb(equalized, statistics: &stats, minima: minima)
    #expect(pairs.map(\.first) == ["h2_node"], "the depthwise layer's biases keep it above 0: \(minima)")
    let y = try Interpreter(equalized).run(Self.input)["y"]!
    let z = try Interpreter(absorbed).run(Self.input)["y"]!
    #expect(maxRelativeError(z.floats, y.floats) < 1e-5)
    #expect(CrossLayerEqualization.pairs(in: absorbed).count == 2)
  }

  /// AdaRound's layer sees the per-channel bound as its activation's clamp.
  @Test func weightedLayerReadsPerChannelBounds() throws {
    let (equalized, pairs) = CrossLayerEqualization.equalize(try Self.graph().simplified())
    let conv = equalized.nodes.firstIndex { $0.name == "h1_node" }!
    let layer = WeightedLayer.detect(equalized.nodes[conv], in: equalized, readers: equalized.consumers())!
    let clamp = try #require(layer.activation)
    #expect(clamp.lower == 0 && clamp.upperBounds.count == 8)
    for (u, s) in zip(clamp.upperBounds, pairs[0].scales) { #expect(Swift.abs(u * s - 6) < 1e-4) }
  }
}

@Suite struct FloatTransformCheckTests {
  /// The check measures `max |y' - y| / max |y|` against the original outputs and keeps only
  /// transforms within float tolerance.
  @Test func aTransformThatChangesTheOutputsIsNotKept() throws {
    let original = try BoundedReLUTests.graph().simplified()
    let checker = try #require(try FloatTransformCheck(original: original, feeds: BoundedReLUTests.input))
    let same = try checker.check(CrossLayerEqualization.equalize(original).graph, transform: "cross-layer equalization")
    #expect(same.kept && same.maxRelativeError < 1e-5 && same.samples == 4)
    var changed = original
    changed.initializers["b3"] = Tensor(shape: [4], floats: changed.initializers["b3"]!.floats.map { $0 + 0.01 })
    let y = try Interpreter(original).run(BoundedReLUTests.input)["y"]!.floats
    let check = try checker.check(changed, transform: "shifted bias")
    #expect(!check.kept)
    #expect(Swift.abs(check.maxRelativeError - 0.01 / y.map(Swift.abs).max()!) < 1e-4)
    #expect(check.summary.hasPrefix("undone"))
  }
}

@Suite struct ActivationAwareEqualizationTests {
  /// `conv1 -> ReLU6 -> conv2` where two of conv1's channels have tiny weights but a large bias.
  static func pair() -> Graph {
    var w1 = randomTensor([8, 3, 3, 3], seed: 11, in: -1...1).floats
    for t in 0..<27 { w1[t] *= 0.01; w1[27 + t] *= 0.01 }
    return Graph(
      nodes: [
        Node(name: "conv1", opType: "Conv", inputs: ["x", "w1", "b1"], outputs: ["h"], attributes: ["kernel_shape": .ints([3, 3])]),
        Node(name: "relu6", opType: "Clip", inputs: ["h", "zero", "six"], outputs: ["a"]),
        Node(name: "conv2", opType: "Conv", inputs: ["a", "w2", "b2"], outputs: ["y"], attributes: ["kernel_shape": .ints([1, 1])]),
      ],
      inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(3), .fixed(10), .fixed(10)])],
      outputs: [ValueInfo(name: "y", dtype: .float32)],
      initializers: [
        "w1": Tensor(shape: [8, 3, 3, 3], floats: w1),
        "b1": Tensor(shape: [8], floats: [5, 5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]),
        "zero": Tensor(scalar: 0), "six": Tensor(scalar: 6),
        "w2": randomTensor([6, 8, 1, 1], seed: 12, in: -1...1), "b2": randomTensor([6], seed: 13, in: -0.1...0.1),
      ],
      opsets: ["": 17])
  }

  /// `rho` (`EqualizationTarget.weightNoiseFactor`) weighs the weights' terms of `E(s)` and nothing
  /// else; with less weight noise to fear, the chosen scales leave less activation noise.
  @Test func theWeightNoiseFactorWeighsOnlyTheWeights() throws {
    let graph = Self.pair()
    let batches = (0..<2).map { ["x": randomTensor([8, 3, 10, 10], seed: 20 + UInt64($0), in: -1...1)] }
    let moments = try ChannelMoments.gather(graph, values: CrossLayerEqualization.momentsNeeded(graph), batches: batches)
    let pair = try #require(CrossLayerEqualization.pairs(in: graph).first)
    func model(_ rho: Double) throws -> EqualizationNoise {
      try #require(EqualizationNoise(graph, pair, target: EqualizationTarget(weightBits: 8, activationBits: 8, perChannel: false, weightNoiseFactor: rho),
                                     input: moments["x"]!, activations: moments[pair.activation.output]!))
    }
    let s = randomTensor([8], seed: 30, in: 0.5...2).floats
    let activationsOnly = try model(0).noise(s), all = try model(1).noise(s)
    #expect(Swift.abs(try model(0.03).noise(s) - (activationsOnly + 0.03 * (all - activationsOnly))) <= 1e-9 * all)
    let dfq = CrossLayerEqualization.dfqScales(graph, pair)
    let forNearest = try model(1).bestScales(dfq: dfq), forLearned = try model(0.03).bestScales(dfq: dfq)
    #expect(try model(0).noise(forLearned) < model(0).noise(forNearest))
  }

  /// `pair()`: two channels' activations are large whatever their weight range. DFQ's weight-only scales amplify
  /// those channels by `1 / s_i = sqrt(r2_i / r1_i)` (about 10x) and stretch the per-tensor
  /// activation grid; the activation-aware scales weigh that against the weights' rounding and
  /// leave the quantized pair (W8A8 per tensor, min-max ranges) closer to the float output.
  @Test func activationAwareScalesBeatDFQsOnTheQuantizedOutput() throws {
    let graph = Self.pair()
    let batches = (0..<2).map { ["x": randomTensor([8, 3, 10, 10], seed: 20 + UInt64($0), in: -1...1)] }
    var config = QuantConfig.rangeSettingOnly
    config.weightRange = .minMax
    config.activationRange = .minMax
    let target = config.equalizationTarget
    let moments = try ChannelMoments.gather(graph, values: CrossLayerEqualization.momentsNeeded(graph), batches: batches)
    let dfq = CrossLayerEqualization.equalize(graph).graph
    let aware = CrossLayerEqualization.equalize(graph, target: target, moments: moments).graph
    func error(_ g: Graph) throws -> Double {
      let q = try PostTrainingQuantization.quantize(g, config: config, batches: batches).graph
      var total = 0.0
      for feeds in batches {
        let want = try Interpreter(graph).run(feeds)["y"]!.floats, got = try Interpreter(q).run(feeds)["y"]!.floats
        total += zip(want, got).reduce(0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) }
      }
      return total
    }
    let (none, byDFQ, byNoise) = (try error(graph), try error(dfq), try error(aware))
    #expect(byNoise < byDFQ, "activation-aware \(byNoise) vs DFQ \(byDFQ) (no equalization \(none))")
    #expect(byNoise <= none * 1.05, "activation-aware \(byNoise) vs no equalization \(none)")
  }
}

@Suite struct EndToEndCheckTests {
  /// A refining step that moved the model away from the original float model on held-out rows is
  /// undone, one that moved it closer stays; a user's request keeps it either way.
  @Test func theCandidateCloserToTheOriginalModelWins() throws {
    let graph = twoConvGraph()
    let batches = inputBatches(4)
    let split = try CalibrationSplit(FeedBatches(batches), graph: graph)
    #expect(split.isHeldOut && split.heldOut.count == 1 && split.fitting.count == 3)
    let config = QuantConfig.rangeSettingOnly
    let sites = QuantizerPlacement.sites(in: graph, config: config)
    var quantizers = try Calibration.weightQuantizers(graph, sites: sites, config: config)
    quantizers.merge(try Calibration.activationQuantizers(graph, sites: sites, config: config, batchNormStatistics: [:], batches: FeedBatches(batches))) { a, _ in a }
    var damaged = graph
    damaged.initializers["b2"] = Tensor(shape: [5], floats: graph.initializers["b2"]!.floats.map { $0 + 0.5 })
    func run(_ candidate: Graph, _ alternative: Graph, keep: Bool = false) throws -> EndToEndCheck.Outcome {
      try EndToEndCheck.run(
        float: graph, candidate: candidate, alternative: alternative, sites: sites, quantizers: quantizers, config: config,
        statistics: [:], batches: FeedBatches(batches), heldOut: split.heldOut, opset: 17, keep: keep, names: ("with", "without"))
    }
    let worse = try run(damaged, graph)
    #expect(!worse.kept && worse.summary.hasPrefix("undone") && worse.alternative.graph == graph)
    #expect(try run(graph, damaged).kept)
    #expect(try run(damaged, graph, keep: true).summary.hasPrefix("kept as asked"))
  }
}
