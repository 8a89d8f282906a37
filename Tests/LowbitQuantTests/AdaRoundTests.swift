import Foundation
import LowbitCore
import LowbitData
import LowbitTrain
import LowbitTestSupport
import Testing

@testable import LowbitQuant

/// `x -> Conv(w1, b1) -> Relu -> Conv(w2, b2) -> y`, 3x3 convs with the given paddings.
func twoConvGraph(channels: Int = 4, hidden: Int = 6, outputs: Int = 5, pad1: Int = 1, pad2: Int = 0, seed: UInt64 = 3) -> Graph {
  let w1 = randomTensor([hidden, channels, 3, 3], seed: seed, in: -0.5...0.5)
  let b1 = randomTensor([hidden], seed: seed + 1, in: 0.5...1.5)
  let w2 = randomTensor([outputs, hidden, 3, 3], seed: seed + 2, in: -0.5...0.5)
  let b2 = randomTensor([outputs], seed: seed + 3, in: -0.2...0.2)
  func conv(_ name: String, _ x: String, _ w: String, _ b: String, _ out: String, _ pad: Int) -> Node {
    Node(name: name, opType: "Conv", inputs: [x, w, b], outputs: [out],
         attributes: ["kernel_shape": .ints([3, 3]), "pads": .ints([pad, pad, pad, pad])])
  }
  return Graph(
    nodes: [
      conv("conv1", "x", "w1", "b1", "h", pad1),
      Node(name: "relu1", opType: "Relu", inputs: ["h"], outputs: ["a"]),
      conv("conv2", "a", "w2", "b2", "y", pad2),
    ],
    inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(channels), .fixed(8), .fixed(8)])],
    outputs: [ValueInfo(name: "y", dtype: .float32)],
    initializers: ["w1": w1, "b1": b1, "w2": w2, "b2": b2])
}

func inputBatches(_ count: Int, channels: Int = 4, batch: Int = 8, seed: UInt64 = 40) -> [[String: Tensor]] {
  (0..<count).map { ["x": randomTensor([batch, channels, 8, 8], seed: seed + UInt64($0), in: -1...1.5)] }
}

func weightSites(_ g: Graph) -> [QuantizerSite] {
  g.nodes.filter { $0.opType == "Conv" || $0.opType == "Gemm" || $0.opType == "MatMul" }.map {
    QuantizerSite(name: $0.inputs[1], kind: .weight, producer: nil, consumer: $0.name, channelAxis: 0, inputAxis: 1)
  }
}

func perTensorQuantizers(_ g: Graph, bits: Int) -> [String: TensorQuantizer] {
  var result: [String: TensorQuantizer] = [:]
  let grid = IntegerGrid(bits: bits, signed: true)
  for site in weightSites(g) {
    let w = g.initializers[site.name]!.floats
    let m = w.map(abs).max()!
    let p = UniformQuantizer.params(lower: -m, upper: m, grid: grid, symmetric: true, powerOfTwo: false)
    result[site.name] = TensorQuantizer(grid: grid, symmetric: true, granularity: .perTensor, params: [p])
  }
  return result
}

@Suite struct AdaRoundLawTests {
  @Test func rectifiedSigmoidStartsAtTheFractionAndHasTheRightSlope() {
    for f: Float in [0, 0.1, 0.37, 0.5, 0.9, 0.999] {
      #expect(abs(AdaRound.rectifiedSigmoid(AdaRound.initialV(fraction: f)) - f) < 1e-5)
    }
    for v: Float in [-2, -0.5, 0, 0.7, 1.9] {
      let e: Float = 1e-3
      let numeric = (AdaRound.rectifiedSigmoid(v + e) - AdaRound.rectifiedSigmoid(v - e)) / (2 * e)
      #expect(abs(numeric - AdaRound.rectifiedSigmoidDerivative(v)) < 1e-3)
    }
    // Far out the rectified sigmoid is clipped to exactly 0 or 1 with zero slope.
    #expect(AdaRound.rectifiedSigmoid(-8) == 0 && AdaRound.rectifiedSigmoid(8) == 1)
    #expect(AdaRound.rectifiedSigmoidDerivative(8) == 0)
  }

  @Test func regularizerVanishesOnTheGridAndPeaksHalfway() {
    #expect(AdaRound.regularizer(0, beta: 20) == 0 && AdaRound.regularizer(1, beta: 2) == 0)
    #expect(AdaRound.regularizer(0.5, beta: 2) == 1)
    for h: Float in [0.2, 0.45, 0.8] {
      let e: Float = 1e-3
      let numeric = (AdaRound.regularizer(h + e, beta: 3) - AdaRound.regularizer(h - e, beta: 3)) / (2 * e)
      #expect(abs(numeric - AdaRound.regularizerDerivative(h, beta: 3)) < 2e-3)
    }
  }

  @Test func betaIsOffDuringWarmStartThenAnnealsFromStartToEnd() {
    let o = AdaRoundOptions()
    #expect(AdaRound.beta(step: 0, of: 100, o) == nil)
    #expect(AdaRound.beta(step: 19, of: 100, o) == nil)
    #expect(AdaRound.beta(step: 20, of: 100, o) == 20)
    #expect(abs(AdaRound.beta(step: 99, of: 100, o)! - 2) < 1e-5)
    let mid = AdaRound.beta(step: 60, of: 100, o)!
    #expect(mid < 20 && mid > 2)
  }

  @Test func optionsAreValidated() {
    var o = AdaRoundOptions()
    o.iterations = 0
    #expect(throws: LowbitError.self) { try o.validate() }
    o = AdaRoundOptions()
    o.betaStart = 1
    #expect(throws: LowbitError.self) { try o.validate() }
  }

  /// A Gemm-like layer `relu(W x + b)` (8 x 24, 4-bit symmetric grid over [-1, 1]) sampling rows
  /// from a pool of 2,048; its weights and scale.
  static func gemmProblem() -> (problem: RoundingProblem, w: [Float], scale: Float) {
    let o = 8, k = 24, poolRows = 2048
    var g = SeededGenerator(seed: 9)
    let w = randomFloats(o * k, in: -1...1, using: &g)
    let x = randomFloats(poolRows * k, in: -1...1, using: &g)
    let bias = randomFloats(o, in: -0.2...0.2, using: &g)
    let relu = ActivationClamp(lower: 0, upper: [.infinity])
    var targets = [Float](repeating: 0, count: poolRows * o)
    for r in 0..<poolRows {
      for c in 0..<o {
        var sum = bias[c]
        for j in 0..<k { sum += w[c * k + j] * x[r * k + j] }
        targets[r * o + c] = max(0, sum)
      }
    }
    let scale: Float = 2 / 7  // 4-bit symmetric grid over [-1, 1]
    let problem = RoundingProblem(
      groups: 1, outputs: o, patchSize: k, weights: w, scales: [Float](repeating: scale, count: o * k),
      zeroPoints: [Float](repeating: 0, count: o * k), grid: IntegerGrid(bits: 4, signed: true), bias: bias,
      activation: relu
    ) { count, gen in
      var xs: [Float] = [], ys: [Float] = []
      for _ in 0..<count {
        let r = gen.uniform(below: poolRows)
        xs += x[(r * k)..<((r + 1) * k)]
        ys += targets[(r * o)..<((r + 1) * o)]
      }
      return (xs, ys)
    }
    return (problem, w, scale)
  }

  /// The learned rounding is floor or ceil of every w / s, and its held-out reconstruction error
  /// is below round-to-nearest's.
  @Test func learnedRoundingIsFloorOrCeilAndBeatsNearest() {
    let (problem, w, scale) = Self.gemmProblem()
    var options = AdaRoundOptions()
    options.iterations = 800
    options.batchSize = 256
    let outcome = AdaRound.optimize(problem, options: options)
    for (e, q) in outcome.integers.enumerated() {
      let f = (w[e] / scale).rounded(.down)
      #expect(Float(q) == f || Float(q) == f + 1, "weight \(e): \(q) is neither floor nor ceil of \(w[e] / scale)")
    }
    #expect(outcome.adaRoundError < outcome.nearestError, "\(outcome.adaRoundError) vs nearest \(outcome.nearestError)")
    #expect(outcome.flipped > 0)
    #expect(!outcome.keptNearest)
    // Reproducible under the seed.
    #expect(AdaRound.optimize(problem, options: options).integers == outcome.integers)
  }

  /// A rounding that loses to round-to-nearest on the held-out rows (four Adam steps of size 50
  /// throw V about) is not returned: the layer keeps round-to-nearest.
  @Test func aLosingRoundingFallsBackToNearest() {
    let (problem, w, scale) = Self.gemmProblem()
    var options = AdaRoundOptions()
    options.iterations = 4
    options.learningRate = 50
    let outcome = AdaRound.optimize(problem, options: options)
    #expect(outcome.adaRoundError > outcome.nearestError && outcome.keptNearest, "\(outcome.adaRoundError) vs \(outcome.nearestError)")
    #expect(outcome.integers == w.map { Int32(min(max(($0 / scale).rounded(.toNearestOrEven), -8), 7)) })
    #expect(outcome.flipped == 0)
  }
}

@Suite struct LayerwiseRefinementTests {
  /// AdaRound through the layer-by-layer pass on convolutions (padded and not): every weight of
  /// the result is floor(w/s) s or ceil(w/s) s, and each layer's reconstruction error drops.
  @Test func adaRoundOnConvolutionsStaysOnFloorOrCeil() throws {
    let graph = twoConvGraph()
    let q = perTensorQuantizers(graph, bits: 4)
    var options = AdaRoundOptions()
    options.iterations = 300
    options.batchSize = 128
    let (refined, layers) = try LayerwiseRefinement.run(
      graph, sites: weightSites(graph), quantizers: q, batches: inputBatches(4), adaRound: options, biasCorrection: false)
    #expect(layers.count == 2)
    for name in ["w1", "w2"] {
      let s = q[name]!.params[0].scale
      for (a, b) in zip(refined.initializers[name]!.floats, graph.initializers[name]!.floats) {
        let f = (b / s).rounded(.down) * s, c = ((b / s).rounded(.down) + 1) * s
        #expect(abs(a - f) <= 1e-6 * abs(f) + 1e-7 || abs(a - c) <= 1e-6 * abs(c) + 1e-7, "\(name): \(a) from \(b)")
      }
    }
    // Summed over the layers AdaRound reconstructs better; no layer gets much worse (held-out
    // rows are a sample, and the first layer's problem is tiny: 216 weights).
    let nearest = layers.map { $0.nearestError! }.reduce(0, +), learned = layers.map { $0.adaRoundError! }.reduce(0, +)
    #expect(learned < nearest, "\(learned) vs nearest \(nearest)")
    for l in layers { #expect(l.adaRoundError! < 1.05 * l.nearestError!, "\(l.layer): \(l.adaRoundError!) vs \(l.nearestError!)") }
  }

  /// The memory budget is a parameter: `twoConvGraph`'s largest value is 6 x 8 x 8 floats per
  /// sample, so a batch of 8 takes 2 x 4 x 384 x 4 x 8 = 98,304 bytes by the budget's formula;
  /// 2.5 batches' worth keeps 2 of 4, and PTQ's AdaRound step says it kept the first 2.
  @Test func theMemoryBudgetKeepsTheBatchesThatFit() throws {
    let graph = twoConvGraph()
    let batches = inputBatches(4)
    #expect(try LayerwiseRefinement.batchesWithinBudget(graph, batches: FeedBatches(batches), budget: 2.5 * 98_304) == 2)
    #expect(try LayerwiseRefinement.batchesWithinBudget(graph, batches: FeedBatches(batches), budget: 1) == 1)
    #expect(try LayerwiseRefinement.batchesWithinBudget(graph, batches: FeedBatches(batches), budget: 1e12) == 4)
    var config = QuantConfig()
    config.adaRoundOptions.iterations = 5
    let result = try PostTrainingQuantization.quantize(graph, config: config, batches: inputBatches(6), memoryBudget: 1)
    let detail = try #require(result.steps.first { $0.step == "adaround" }?.detail)
    #expect(detail.contains(" 1 of ") && detail.contains("a seeded sample"), "\(detail)")
  }

  /// Empirical bias correction removes the per-channel mean output error of a coarsely
  /// quantized layer (by at least 90%), measured on the calibration data.
  @Test func empiricalBiasCorrectionRemovesTheMeanError() throws {
    let graph = twoConvGraph(pad1: 1, pad2: 1)
    let q = perTensorQuantizers(graph, bits: 3)
    let batches = inputBatches(3)
    let (corrected, layers) = try LayerwiseRefinement.run(
      graph, sites: weightSites(graph), quantizers: q, batches: batches, adaRound: nil, biasCorrection: true)
    #expect(layers.allSatisfy { $0.biasShift != nil })
    func quantized(_ g: Graph) -> Graph {
      var h = g
      for (name, tq) in q { h.initializers[name] = Tensor(shape: g.initializers[name]!.shape, floats: tq.fakeQuantize(g.initializers[name]!.floats, shape: g.initializers[name]!.shape)) }
      return h
    }
    let reference = try batches.map { try Interpreter(graph).run($0)["y"]! }
    let before = try batches.map { try Interpreter(quantized(graph)).run($0)["y"]! }
    let after = try batches.map { try Interpreter(corrected).run($0)["y"]! }
    func channelMeanError(_ out: [Tensor]) -> [Double] {
      var sums = [Double](repeating: 0, count: 5), n = 0
      for (a, r) in zip(out, reference) {
        let plane = a.shape[2] * a.shape[3]
        for i in 0..<a.shape[0] { for c in 0..<5 { for p in 0..<plane {
          let j = (i * 5 + c) * plane + p
          sums[c] += Double(a.floats[j] - r.floats[j])
        } } }
        n += a.shape[0] * plane
      }
      return sums.map { abs($0) / Double(n) }
    }
    let e0 = channelMeanError(before), e1 = channelMeanError(after)
    #expect(e0.reduce(0, +) > 1e-3, "the test layer must have a visible mean error: \(e0)")
    #expect(e1.reduce(0, +) <= 0.1 * e0.reduce(0, +), "mean error \(e0) -> \(e1)")
  }
}

@Suite struct BiasCorrectionTests {
  @Test func clippedNormalMeanMatchesClosedFormsAndSampling() {
    // No clipping: the mean. ReLU of N(0, 1): 1 / sqrt(2 pi).
    #expect(abs(BiasCorrection.clippedNormalMean(mean: 0.3, sd: 2, lower: -.infinity, upper: .infinity) - 0.3) < 1e-12)
    #expect(abs(BiasCorrection.clippedNormalMean(mean: 0, sd: 1, lower: 0, upper: .infinity) - 1 / (2 * Double.pi).squareRoot()) < 1e-12)
    // ReLU6 of N(1, 3^2) against a seeded Monte Carlo estimate.
    var g = SeededGenerator(seed: 4)
    var sum = 0.0
    let n = 200_000
    for _ in 0..<n {
      let u1 = Double.random(in: Double.ulpOfOne..<1, using: &g), u2 = Double.random(in: 0..<1, using: &g)
      let z = (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
      sum += min(max(1 + 3 * z, 0), 6)
    }
    #expect(abs(BiasCorrection.clippedNormalMean(mean: 1, sd: 3, lower: 0, upper: 6) - sum / Double(n)) < 0.02)
  }

  /// On a layer whose input is ReLU(N(beta, gamma^2)) per channel, analytical correction (from
  /// those statistics alone) removes most of the mean output error that sampling shows.
  @Test func analyticalCorrectionUsesTheBatchNormStatistics() throws {
    let graph = twoConvGraph(pad1: 0, pad2: 0)
    let beta: [Float] = [0.5, -0.2, 1.0, 0.1, 0.3, -0.5], gamma: [Float] = [1, 0.5, 2, 1.5, 0.8, 1.2]
    // conv1 is the identity on 6 channels here (so its output is the BN output we sample).
    var g = graph
    var w1 = [Float](repeating: 0, count: 6 * 6 * 9)
    for c in 0..<6 { w1[(c * 6 + c) * 9 + 4] = 1 }
    g.initializers["w1"] = Tensor(shape: [6, 6, 3, 3], floats: w1)
    g.initializers["b1"] = Tensor(shape: [6], floats: [Float](repeating: 0, count: 6))
    g.inputs[0].shape = [.symbol("N"), .fixed(6), .fixed(8), .fixed(8)]
    var stats = BatchNormStatistics(gamma: gamma, beta: beta, mean: [Float](repeating: 0, count: 6),
                                    variance: [Float](repeating: 1, count: 6), epsilon: 0)
    stats.epsilon = 0
    var q = perTensorQuantizers(g, bits: 3)
    q["w1"] = nil
    let sites = weightSites(g).filter { $0.name == "w2" }
    let (corrected, names) = BiasCorrection.analytical(g, sites: sites, quantizers: q, statistics: ["conv1": stats])
    #expect(names == ["conv2"])
    // Sample inputs x ~ N(beta, gamma^2) per channel.
    var gen = SeededGenerator(seed: 77)
    var xs: [Float] = []
    for _ in 0..<64 { for c in 0..<6 { for _ in 0..<64 {
      let u1 = Float.random(in: Float.ulpOfOne..<1, using: &gen), u2 = Float.random(in: 0..<1, using: &gen)
      xs.append(beta[c] + gamma[c] * (-2 * log(u1)).squareRoot() * cos(2 * Float.pi * u2))
    } } }
    let x = Tensor(shape: [64, 6, 8, 8], floats: xs)
    var quantized = g
    quantized.initializers["w2"] = Tensor(shape: g.initializers["w2"]!.shape, floats: q["w2"]!.fakeQuantize(g.initializers["w2"]!.floats, shape: g.initializers["w2"]!.shape))
    var correctedQuantized = corrected
    correctedQuantized.initializers["w2"] = quantized.initializers["w2"]
    let ref = try Interpreter(g).run(["x": x])["y"]!.floats
    let before = try Interpreter(quantized).run(["x": x])["y"]!.floats
    let after = try Interpreter(correctedQuantized).run(["x": x])["y"]!.floats
    func meanError(_ a: [Float]) -> Double {
      let plane = 16
      var total = 0.0
      for c in 0..<5 {
        var s = 0.0
        for i in 0..<64 { for p in 0..<plane { let j = (i * 5 + c) * plane + p; s += Double(a[j] - ref[j]) } }
        total += abs(s / Double(64 * plane))
      }
      return total
    }
    #expect(meanError(after) < 0.2 * meanError(before), "\(meanError(before)) -> \(meanError(after))")
  }
}

@Suite struct BiasAbsorptionTests {
  /// With c from the calibration minima, absorption is exact on that data, moves c out of the
  /// first bias, and leaves a padded second layer alone.
  @Test func absorptionKeepsOutputsAndShrinksTheFirstBias() throws {
    var graph = twoConvGraph(pad1: 1, pad2: 0)
    // Large biases on some channels keep their pre-activations above 0 on all data.
    graph.initializers["b1"] = Tensor(shape: [6], floats: [5, 0, 6, 0.5, 4.5, 0])
    let batches = inputBatches(2)
    let minima = try BiasAbsorption.preActivationMinima(graph, batches: FeedBatches(batches))
    #expect(minima["conv1"]?.contains { $0 > 0 } == true, "the test needs channels that never go below 0: \(minima)")
    var stats: [String: BatchNormStatistics] = [:]
    let (absorbed, pairs) = try BiasAbsorption.absorb(graph, statistics: &stats, minima: minima)
    #expect(pairs.count == 1 && pairs[0].source == .calibration)
    for feeds in batches {
      let a = try Interpreter(graph).run(feeds)["y"]!.floats, b = try Interpreter(absorbed).run(feeds)["y"]!.floats
      #expect(maxRelativeError(b, a) < 1e-4)
    }
    let b0 = graph.initializers["b1"]!.floats, b1 = absorbed.initializers["b1"]!.floats
    #expect(zip(b0, b1).allSatisfy { $1 <= $0 } && zip(b0, b1).contains { $1 < $0 })
    // A padded second layer would see 0 instead of c at its borders: not absorbed.
    var padded = twoConvGraph(pad1: 1, pad2: 1)
    padded.initializers["b1"] = graph.initializers["b1"]
    let (_, none) = try BiasAbsorption.absorb(padded, statistics: &stats, minima: try BiasAbsorption.preActivationMinima(padded, batches: FeedBatches(batches)))
    #expect(none.isEmpty)
  }

  @Test func batchNormStatisticsGiveBetaMinusThreeGamma() throws {
    let graph = twoConvGraph(pad1: 1, pad2: 0)
    var stats = ["conv1": BatchNormStatistics(
      gamma: [0.1, 1, 0.2, -0.1, 2, 0.05], beta: [1, 1, 0.3, 0.5, 1, 0], mean: [Float](repeating: 0, count: 6),
      variance: [Float](repeating: 1, count: 6), epsilon: 0)]
    let (absorbed, pairs) = try BiasAbsorption.absorb(graph, statistics: &stats)
    #expect(pairs.first?.source == .batchNorm)
    let expected: [Float] = [0.7, 0, 0, 0.2, 0, 0]
    let shift = zip(graph.initializers["b1"]!.floats, absorbed.initializers["b1"]!.floats).map { $0 - $1 }
    for (a, b) in zip(shift, expected) { #expect(abs(a - b) < 1e-6) }
    #expect(abs(stats["conv1"]!.beta[0] - 0.3) < 1e-6)
  }
}
