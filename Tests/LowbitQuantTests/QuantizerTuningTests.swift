import Foundation
import LowbitCore
import LowbitData
import LowbitTestSupport
import Testing

@testable import LowbitQuant

@Suite struct QuantizerTuningTests {
  func config(tuning: Bool, perChannel: Bool = true) -> QuantConfig {
    var c = QuantConfig()
    c.weightBits = 4
    c.activationBits = 4
    c.perChannel = perChannel
    c.adaRoundOptions.iterations = 40
    c.quantizerTuning = tuning
    c.quantizerTuningOptions.iterations = 80
    c.quantizerTuningOptions.batchSize = 8
    c.quantizerTuningOptions.learningRate = 0.01
    return c
  }

  /// The integers `round(w / s) + z` of every weight quantizer of a result.
  func integers(_ r: QuantizationResult) -> [String: [Int64]] {
    var out: [String: [Int64]] = [:]
    for site in r.sites where site.kind == .weight {
      guard let q = r.quantizers[site.name], let w = r.transformedGraph.initializers[site.name] else { continue }
      out[site.name] = q.quantize(w.floats, shape: w.shape)
    }
    return out
  }

  /// The mean square over rows of the QDQ graph's output against the float graph's, over `batches`.
  func fileLoss(_ r: QuantizationResult, _ batches: [[String: Tensor]]) throws -> Double {
    let quantized = try Interpreter(r.graph), float = try Interpreter(r.floatGraph)
    var total = 0.0, samples = 0
    for feeds in batches {
      let y = try quantized.run(feeds)["y"]!, t = try float.run(feeds)["y"]!
      total += OutputLoss.meanSquared(y, t).loss * Double(y.shape[0])
      samples += y.shape[0]
    }
    return total / Double(samples)
  }

  /// Tuning lowers the loss on held-out calibration rows, moves scales but keeps every weight's
  /// integers, and the written QDQ graph computes the loss it reports on those rows.
  @Test func tuningLowersTheLossKeepsTheIntegersAndTheFileAgrees() throws {
    let graph = residualGraph()
    let batches = inputBatches(4)
    let plain = try PostTrainingQuantization.quantize(graph, config: config(tuning: false), batches: batches)
    let tuned = try PostTrainingQuantization.quantize(graph, config: config(tuning: true), batches: batches)
    let record = try #require(tuned.tuning)
    #expect(record.loss == "mean square")
    #expect(record.kept && record.after < 0.98 * record.before && [20, 40, 60, 80].contains(record.step), "\(record)")
    #expect(record.scales == tuned.quantizers.count && record.zeroPoints > 0)
    #expect(integers(tuned) == integers(plain))
    let moved = ["w1", "w2", "w3"].filter { tuned.quantizers[$0]!.params.map(\.scale) != plain.quantizers[$0]!.params.map(\.scale) }
    #expect(moved.count == 3)
    // Tuning fits on the calibration batches the end-to-end checks do not hold out and judges its
    // checkpoints on the held-out ones.
    let split = try CalibrationSplit(FeedBatches(batches), graph: graph)
    #expect(split.fitting.count == 3 && split.heldOut.count == 1)
    let heldOut = try split.heldOut.loaded()
    #expect(record.heldOut && record.judgedOn == heldOut.map { $0["x"]!.shape[0] }.reduce(0, +), "\(record)")
    let before = try fileLoss(plain, heldOut), after = try fileLoss(tuned, heldOut)
    #expect(abs(before - Double(record.before)) <= 1e-3 * before, "\(before) vs \(record.before)")
    #expect(abs(after - Double(record.after)) <= 1e-3 * after, "\(after) vs \(record.after)")
    let step = try #require(tuned.steps.first { $0.step == "quantizer tuning" })
    #expect(step.detail?.contains("mean square on \(record.judgedOn) held-out samples") == true, "\(step.detail ?? "")")
  }

  /// Wilcoxon's signed-rank z: ranks of |d| with ties sharing their mean rank, zeros dropped,
  /// `(W+ - n (n + 1) / 4) / sqrt(n (n + 1) (2n + 1) / 24)`.
  @Test func signedRankStatistic() {
    // d = [1, 2, -3, 6, 0, 2]: zero dropped, |d| ranks 1, 2.5, 4, 5, 2.5; W+ = 1 + 2.5 + 5 + 2.5 = 11,
    // n = 5: mean 7.5, variance 5 * 6 * 11 / 24 = 13.75.
    let z = QuantizerTuning.signedRankZ([2, 4, 0, 10, 3, 5], [1, 2, 3, 4, 3, 3])
    #expect(abs(z - 3.5 / 13.75.squareRoot()) <= 1e-12)
    // One large loss (heavy tail) does not hide twelve consistent gains: W+ = 78, z = 32.5 / sqrt(204.75).
    let before = [Double](repeating: 1, count: 12) + [50], after = [Double](repeating: 0.5, count: 12) + [60]
    #expect(abs(QuantizerTuning.signedRankZ(before, after) - 32.5 / 204.75.squareRoot()) <= 1e-12)
    #expect(QuantizerTuning.signedRankZ([1, 1, 1], [1, 1, 1]) == 0)
    #expect(QuantizerTuning.signedRankZ([1, 2], [2, 1]) == 0)
  }

  /// A gain the held-out samples cannot tell from noise leaves the range-set quantizers.
  @Test func gainWithinTheNoiseKeepsTheRangeSetQuantizers() throws {
    let graph = residualGraph()
    var c = config(tuning: true)
    c.quantizerTuning = nil  // on by default below 8-bit activations
    c.quantizerTuningOptions.iterations = 8
    c.quantizerTuningOptions.learningRate = 0.0005
    let plain = try PostTrainingQuantization.quantize(graph, config: config(tuning: false), batches: inputBatches(4))
    let tuned = try PostTrainingQuantization.quantize(graph, config: c, batches: inputBatches(4))
    let record = try #require(tuned.tuning)
    // A few small steps lower the held-out loss on too few samples to tell it from chance.
    #expect(record.step > 0 && record.after < record.before && !record.kept, "\(record)")
    #expect(record.signedRankZ <= QuantizerTuning.requiredZ)
    #expect(tuned.quantizers == plain.quantizers)
    let step = try #require(tuned.steps.first { $0.step == "quantizer tuning" })
    #expect(step.detail?.contains("not above 2 (could be chance)") == true, "\(step.detail ?? "")")
    // Asked for explicitly, the lower checkpoint is kept all the same, and the log says why.
    c.quantizerTuning = true
    let asked = try PostTrainingQuantization.quantize(graph, config: c, batches: inputBatches(4))
    #expect(asked.tuning?.kept == true && asked.quantizers != plain.quantizers)
    let askedStep = try #require(asked.steps.first { $0.step == "quantizer tuning" })
    #expect(askedStep.detail?.contains("kept as asked") == true, "\(askedStep.detail ?? "")")
  }

  /// By default tuning runs below 8-bit activations with its own settings, and for per-tensor
  /// weights at 8-bit activations with the light ones (100 steps x 8 samples); per-channel or
  /// per-group weights at 8 bits do not tune, and settings given explicitly are used as given.
  @Test func defaultTuningByGranularityAndBits() {
    var c = QuantConfig()
    #expect(c.runsQuantizerTuning && c.quantizerTuningInUse == .light)
    c.perChannel = true
    #expect(!c.runsQuantizerTuning)
    c.activationBits = 4
    #expect(c.runsQuantizerTuning && c.quantizerTuningInUse == QuantizerTuningOptions())
    c = QuantConfig()
    c.weightGroupSize = 32
    #expect(!c.runsQuantizerTuning)
    c = QuantConfig()
    c.quantizerTuningOptions.iterations = 30
    #expect(c.quantizerTuningInUse.iterations == 30 && c.quantizerTuningInUse.batchSize == 32)
    c = QuantConfig()
    c.quantizerTuning = true
    #expect(c.quantizerTuningInUse == QuantizerTuningOptions())
  }

  /// The same seed gives the same quantizers.
  @Test func seededRunsAgree() throws {
    let graph = residualGraph()
    var c = config(tuning: true, perChannel: false)
    c.quantizerTuningOptions.iterations = 20
    let a = try PostTrainingQuantization.quantize(graph, config: c, batches: inputBatches(2))
    let b = try PostTrainingQuantization.quantize(graph, config: c, batches: inputBatches(2))
    #expect(a.quantizers == b.quantizers)
  }

  /// A node without a gradient rule on the way to the output skips the step, naming the node.
  @Test func nodeWithoutGradientRuleSkipsTheStep() throws {
    let graph = residualGraph(head: "Round")
    var c = config(tuning: true)
    c.quantizerTuningOptions.iterations = 5
    let result = try PostTrainingQuantization.quantize(graph, config: c, batches: inputBatches(1))
    let step = try #require(result.steps.first { $0.step == "quantizer tuning" })
    #expect(step.detail == "skipped: node 'head' (Round) has no gradient rule", "\(step.detail ?? "")")
    #expect(result.tuning == nil)
  }

  /// A PRelu head (a learned per-channel slope) is differentiated: the step runs.
  @Test func preluHeadIsTuned() throws {
    let graph = residualGraph(head: "PRelu")
    var c = config(tuning: true)
    c.quantizerTuningOptions.iterations = 5
    let result = try PostTrainingQuantization.quantize(graph, config: c, batches: inputBatches(1))
    let step = try #require(result.steps.first { $0.step == "quantizer tuning" })
    #expect(step.detail?.hasPrefix("skipped") == false, "\(step.detail ?? "")")
    #expect(result.tuning != nil)
  }

  /// Per-group weights have no FakeQuantize form: the step is skipped and says so, the rest runs.
  @Test func perGroupWeightsSkipTheStep() throws {
    var c = config(tuning: true, perChannel: false)
    c.weightGroupSize = 2
    c.opset = 21
    let result = try PostTrainingQuantization.quantize(residualGraph(), config: c, batches: inputBatches(1))
    let step = try #require(result.steps.first { $0.step == "quantizer tuning" })
    #expect(step.detail?.hasPrefix("skipped: ") == true && step.detail?.contains("per-group") == true, "\(step.detail ?? "")")
    #expect(result.tuning == nil)
  }

  /// `KL(softmax(t) || softmax(y))` per row, averaged, and its gradient `(softmax(y) - softmax(t)) / N`
  /// against central differences.
  @Test func divergenceAndItsGradient() {
    let t = Tensor(shape: [2, 3], floats: [1, 2, 0.5, -1, 0, 3])
    let y = Tensor(shape: [2, 3], floats: [0.8, 2.3, 0.1, -0.5, 0.2, 2.5])
    func softmax(_ z: ArraySlice<Float>) -> [Double] {
      let e = z.map { exp(Double($0)) }, s = e.reduce(0, +)
      return e.map { $0 / s }
    }
    var expected = 0.0
    for r in 0..<2 {
      let p = softmax(t.floats[(3 * r)..<(3 * r + 3)]), q = softmax(y.floats[(3 * r)..<(3 * r + 3)])
      for j in 0..<3 { expected += p[j] * log(p[j] / q[j]) / 2 }
    }
    let (value, gradient) = OutputLoss.divergence(y, t)
    #expect(abs(value - expected) <= 1e-9)
    for i in 0..<6 {
      var up = y.floats, down = y.floats
      up[i] += 1e-3
      down[i] -= 1e-3
      let numeric = (OutputLoss.divergence(Tensor(shape: [2, 3], floats: up), t).loss
        - OutputLoss.divergence(Tensor(shape: [2, 3], floats: down), t).loss) / 2e-3
      #expect(abs(Double(gradient.floats[i]) - numeric) <= 1e-4, "\(i): \(gradient.floats[i]) vs \(numeric)")
    }
  }

  /// Logits get the divergence; rows that are already normalized (unit-norm embeddings,
  /// probabilities) and outputs that are not [N, C] get the mean square.
  @Test func onlyUnnormalizedRowsAreLogits() {
    let logits = Tensor(shape: [2, 3], floats: [1, 2, 0.5, -1, 0, 3])
    let embeddings = Tensor(shape: [2, 2], floats: [0.6, 0.8, -1, 0])
    let probabilities = Tensor(shape: [2, 3], floats: [0.2, 0.3, 0.5, 1, 0, 0])
    #expect(OutputLoss.isLogits([logits]))
    #expect(OutputLoss.isLogits([embeddings, logits]))  // one batch of unnormalized rows decides
    #expect(!OutputLoss.isLogits([embeddings]))
    #expect(!OutputLoss.isLogits([probabilities]))
    #expect(!OutputLoss.isLogits([Tensor(shape: [2, 3, 4], repeating: 1)]))
    #expect(!OutputLoss.isLogits([Tensor(shape: [2, 1], floats: [3, 4])]))
  }
}
