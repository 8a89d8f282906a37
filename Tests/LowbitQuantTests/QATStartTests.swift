import LowbitCore
import LowbitONNX
@testable import LowbitQuant
import LowbitTestSupport
import LowbitTrain
import Testing

/// `QATStart`: the range-setting start is the paper's fig. 11, the PTQ start is `lowbit ptq`'s
/// pipeline, and either way the untrained QAT graph computes what that PTQ run's QDQ graph does.
@Suite struct QATStartTests {
  @Test func configsAreThePapersRangeSettingAndLowbitPTQsPipeline() {
    let ranges = QATStart.rangeSetting.config(weightBits: 4, activationBits: 8, perChannel: true)
    #expect(!ranges.adaRound && !ranges.equalizesLayers && !ranges.biasAbsorption && ranges.biasCorrection == .none)
    #expect(QATStart.rangeSetting.config(weightBits: 4, activationBits: 8, perChannel: true, crossLayerEqualization: true)
      .equalizesLayers)
    let ptq = QATStart.ptq.config(weightBits: 4, activationBits: 4, perChannel: false)
    var expected = QuantConfig()
    expected.weightBits = 4
    expected.activationBits = 4
    expected.quantizerTuning = true  // QAT trains every scale itself: the start tunes only below 8-bit activations
    #expect(ptq == expected)
    #expect(!QATStart.ptq.config(weightBits: 4, activationBits: 8, perChannel: false).runsQuantizerTuning)
    #expect(ptq.adaRound && ptq.equalizesLayers && ptq.biasAbsorption)
    // The PTQ start follows lowbit ptq's default: no CLE with per-channel 8-bit weights.
    #expect(!QATStart.ptq.config(weightBits: 8, activationBits: 8, perChannel: true).equalizesLayers)
    #expect(QATStart.ptq.config(weightBits: 4, activationBits: 8, perChannel: true).equalizesLayers)
  }

  static func ptqStart(activations: Bool) -> QuantConfig {
    var config = QATStart.ptq.config(weightBits: 4, activationBits: 8, perChannel: true)
    config.quantizeActivations = activations
    config.adaRoundOptions.iterations = 20
    config.adaRoundOptions.batchSize = 64
    return config
  }

  /// fm_resnet20 W4A8 per-channel from the PTQ start (AdaRound, 20 steps per layer): the latent
  /// weights are AdaRound's, so the untrained graph's logits are the PTQ file's (within one
  /// logits step where the float and the integer accumulation round differently) and its
  /// export is that file bit for bit.
  @Test func thePTQStartTrainsFromAdaRoundsWeights() throws {
    let model = try ONNXReader.load(contentsOf: demoModelPath("fm_resnet20"))
    let x = randomTensor([32, 1, 28, 28], seed: 21, in: -0.8...2.0)
    let setup = try QuantizationAwareTraining.prepare(model, config: Self.ptqStart(activations: true), batches: [["input": x]])
    #expect(setup.ptq.steps.map(\.step).contains("adaround"))
    #expect(setup.ptq.layers.contains { ($0.flipped ?? 0) > 0 })

    let (equal, count, largest, ptq) = try logitsAgreement(setup.graph, setup.ptq, x)
    print("PTQ start: QAT vs PTQ logits \(equal)/\(count) equal, largest difference \(largest) steps")
    #expect(Double(equal) >= 0.9 * Double(count))
    #expect(largest <= 1.01)
    let exported = try QuantizationAwareTraining.export(setup.graph, parameters: setup.parameters)
    #expect(try Interpreter(exported).run(["input": x])["logits"]!.floats == ptq)
  }

  /// BatchNorm kept unfolded from the PTQ start computes what the folded start does (AdaRound's
  /// integers survive `W_u = W / |f|`, `s_u = s / |f|`); weights only, so nothing else differs.
  @Test func theKeptBatchNormPTQStartComputesTheFoldedOne() throws {
    let model = try ONNXReader.load(contentsOf: demoModelPath("fm_resnet20"))
    let x = randomTensor([16, 1, 28, 28], seed: 22, in: -0.8...2.0)
    let config = Self.ptqStart(activations: false)
    let folded = try QuantizationAwareTraining.prepare(model, config: config, batchNorm: .fold, batches: [["input": x]])
    let kept = try QuantizationAwareTraining.prepare(model, config: config, batchNorm: .keep, batches: [["input": x]])
    #expect(!kept.unfolded.isEmpty)
    let a = try Trainer(folded.graph).forward(["input": x], mode: .inference).value("logits")!.floats
    let b = try Trainer(kept.graph).forward(["input": x], mode: .inference).value("logits")!.floats
    let error = maxRelativeError(b, a)
    print("PTQ start: unfolded vs folded QAT logits, max relative error \(error)")
    #expect(error <= 1e-5)
  }
}
