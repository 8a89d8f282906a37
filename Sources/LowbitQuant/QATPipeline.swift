import LowbitCore
import LowbitData
import LowbitTrain

/// Where quantization-aware training starts: the PTQ run that places the quantizers and sets
/// the first weights, scales and offsets.
public enum QATStart: String, Sendable, Codable, CaseIterable {
  /// The white paper's fig. 11: range setting only (MSE; cross-entropy for the logits) on the
  /// float weights, CLE only when asked.
  case rangeSetting = "range-setting"
  /// `lowbit ptq`'s default pipeline: CLE with bias absorption, MSE weight ranges, AdaRound,
  /// activation ranges. Training starts from AdaRound's rounded weights, so a short run starts
  /// where PTQ ends (fm_mobilenetv2 W4A8, one epoch on 10,000 images, held-out top-1: 94.51
  /// from range setting, 94.96 from PTQ, FP32 95.02).
  case ptq

  /// What the start is, for logs and tables: "the PTQ pipeline" or "range setting only".
  public var summary: String { self == .ptq ? "the PTQ pipeline" : "range setting only" }

  /// The PTQ config of this start at the given bit widths. CLE is part of `.ptq`; with
  /// `.rangeSetting` it follows `crossLayerEqualization`.
  public func config(weightBits: Int, activationBits: Int, perChannel: Bool, crossLayerEqualization: Bool = false) -> QuantConfig {
    var c = self == .ptq ? QuantConfig() : QuantConfig.rangeSettingOnly
    c.weightBits = weightBits
    c.activationBits = activationBits
    c.perChannel = perChannel
    c.crossLayerEqualization = self == .ptq ? nil : crossLayerEqualization
    // QAT trains every scale itself: the start tunes quantizers only where PTQ needs it most,
    // below 8-bit activations (not for per-tensor weights alone, as `ptq` does).
    if self == .ptq { c.quantizerTuning = activationBits < 8 }
    return c
  }
}

/// A QAT graph ready to train, and how it came about.
public struct QATSetup: Sendable {
  /// The trainable graph: FakeQuantize nodes at every quantizer site, scales and offsets
  /// initialized by PTQ's range setting.
  public var graph: Graph
  public var parameters: QATParameters
  /// The PTQ run that placed the quantizers and set their ranges (its QDQ graph is the
  /// untrained starting point).
  public var ptq: QuantizationResult
  public var batchNorm: QATBatchNorm
  /// The layers whose BatchNorm was unfolded again (`QATBatchNorm.keep`).
  public var unfolded: [UnfoldedLayer]
}

extension QuantizationAwareTraining {
  /// The white paper's QAT pipeline up to training (sec. 4.3, fig. 11):
  ///
  ///     BN folding -> CLE (optional, `config.crossLayerEqualization`) -> quantizer placement
  ///     -> range setting (MSE; cross-entropy for the logits) -> learnable scales and offsets
  ///
  /// The PTQ part is `PostTrainingQuantization.quantize(graph, config:batches:)`, so every PTQ
  /// switch applies (the CLI runs it as range setting only, optionally with CLE). With
  /// `batchNorm == .keep` the folded BatchNorms come back unfolded (`unfoldBatchNorm`); that
  /// needs symmetric per-channel weights, since only a per-channel scale can absorb BN's
  /// per-channel factor after training.
  public static func prepare(
    _ graph: Graph, config: QuantConfig, batchNorm: QATBatchNorm = .fold, batches: FeedBatches,
    gradientScaling: Bool = true, progress: ProgressHandler? = nil
  ) throws -> QATSetup {
    if batchNorm == .keep {
      guard config.perChannel, config.weightGroupSize == nil else {
        throw LowbitError.invalidArgument(
          "keeping BatchNorm unfolded needs per-channel weights (a per-tensor scale cannot absorb BN's per-channel factor): add --per-channel or fold BatchNorm")
      }
      guard config.weightSymmetric else {
        throw LowbitError.invalidArgument("keeping BatchNorm unfolded needs symmetric weight quantizers")
      }
    }
    let ptq = try PostTrainingQuantization.quantize(graph, config: config, batches: batches, progress: progress)
    switch batchNorm {
    case .fold:
      let (g, parameters) = try QuantizationAwareTraining.graph(from: ptq, gradientScaling: gradientScaling)
      return QATSetup(graph: g, parameters: parameters, ptq: ptq, batchNorm: .fold, unfolded: [])
    case .keep:
      let unfolded = try unfoldBatchNorm(
        ptq.transformedGraph, statistics: ptq.batchNormStatistics, sites: ptq.sites, quantizers: ptq.quantizers)
      let (g, parameters) = try QuantizationAwareTraining.graph(
        unfolded.graph, sites: ptq.sites, quantizers: unfolded.quantizers, opset: ptq.graph.opset,
        gradientScaling: gradientScaling)
      return QATSetup(graph: g, parameters: parameters, ptq: ptq, batchNorm: .keep, unfolded: unfolded.layers)
    }
  }
}

extension QuantizationAwareTraining {
  /// The whole QAT pipeline in one call: `prepare` on the first `calibrationSize` samples of
  /// `training` (batches of 32), then `training.epochs` epochs of `TrainingLoop`, then the QDQ
  /// export (BatchNorm kept for training absorbed into the weight scales). Returns the QDQ graph
  /// and the loop (its `history` has every epoch). `epochProgress` gets (epoch, samples done).
  public static func run(
    _ model: Graph, config: QuantConfig, batchNorm: QATBatchNorm = .fold, training data: Dataset,
    trainingConfig: TrainingConfig, calibrationSize: Int = 1024, validation: Dataset? = nil,
    progress: ProgressHandler? = nil, epochProgress: ((Int, Int) -> Void)? = nil
  ) throws -> (qdq: Graph, loop: TrainingLoop, setup: QATSetup) {
    let batches = try PostTrainingQuantization.calibrationBatches(data, graph: model, batchSize: 32, limit: calibrationSize)
    let setup = try prepare(model, config: config, batchNorm: batchNorm, batches: batches, progress: progress)
    var loop = try TrainingLoop(graph: setup.graph, training: data, config: trainingConfig)
    try loop.run(validation: validation, validationBatchSize: 256, batchProgress: epochProgress)
    return (try export(loop.trainer.graph, parameters: setup.parameters), loop, setup)
  }
}
