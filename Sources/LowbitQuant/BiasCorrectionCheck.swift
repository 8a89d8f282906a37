import Foundation
import LowbitCore
import LowbitData

/// Checks empirical bias correction end to end. The correction removes each layer's mean
/// output shift `E[W_hat x] - E[W x]` over every row it sees, and that is the right move only
/// when the shift is what the rows have in common. When the weight error hits a few rows hard
/// (a transformer's outlier tokens, padding the model later ignores), subtracting the mean moves
/// every other row away from the float model. So both candidates are quantized in full, each
/// with its own activation ranges, and their outputs compared with the original float model's on
/// held-out calibration samples (`EndToEndCheck`).
enum BiasCorrectionCheck {
  /// `corrected` with the correction taken back: every initializer that is not a weight back to
  /// its value in `unrefined` (the graph before the layer-wise pass), zero biases the pass added
  /// set to zero.
  static func uncorrected(_ corrected: Graph, unrefined: Graph, sites: [QuantizerSite]) -> Graph {
    let weights = Set(sites.filter { $0.kind == .weight }.map(\.name))
    var g = corrected
    for (name, t) in corrected.initializers where !weights.contains(name) {
      g.initializers[name] = unrefined.initializers[name]
        ?? Tensor(dtype: t.dtype, shape: t.shape, storage: .float([Float](repeating: 0, count: t.count)))
    }
    return g
  }

  /// Compares `corrected` (with `quantizers`: its weights' and activations') and `uncorrected`
  /// with `EndToEndCheck`. With `asked` (the user chose empirical correction) the corrected graph
  /// is kept either way.
  static func run(
    float: Graph, corrected: Graph, uncorrected: Graph, sites: [QuantizerSite], quantizers: [String: TensorQuantizer],
    config: QuantConfig, statistics: [String: BatchNormStatistics], batches: FeedBatches,
    heldOut: FeedBatches, opset: Int, asked: Bool
  ) throws -> EndToEndCheck.Outcome {
    try EndToEndCheck.run(
      float: float, candidate: corrected, alternative: uncorrected, sites: sites, quantizers: quantizers, config: config,
      statistics: statistics, batches: batches, heldOut: heldOut, opset: opset, keep: asked,
      names: ("corrected", "uncorrected"))
  }
}

/// Decides whether a refining step stays by its effect on the whole quantized model: the graph
/// with the step (`candidate`, with its `quantizers`) and without it (`alternative`, whose
/// activation ranges are set here on `batches`) are both quantized in full and their outputs
/// compared with the original float model's on the held-out calibration rows (`OutputComparison`,
/// at most `samples`). A step that raises the loss is undone, unless the user asked for it.
enum EndToEndCheck {
  static let samples = 64

  struct Outcome {
    /// Whether the step stays; if not, the alternative graph and its activation quantizers.
    var kept: Bool
    var alternative: (graph: Graph, activations: [String: TensorQuantizer])
    var summary: String
  }

  /// `alternativeWeights` are the weight quantizers that differ in the alternative (GPTQ's grids
  /// against range setting's).
  static func run(
    float: Graph, candidate: Graph, alternative: Graph, sites: [QuantizerSite], quantizers: [String: TensorQuantizer],
    config: QuantConfig, statistics: [String: BatchNormStatistics], batches: FeedBatches,
    heldOut: FeedBatches, opset: Int, keep: Bool, names: (with: String, without: String),
    alternativeWeights: [String: TensorQuantizer] = [:]
  ) throws -> Outcome {
    let activations = try Calibration.activationQuantizers(
      alternative, sites: sites, config: config, batchNormStatistics: statistics, batches: batches)
    let comparison = try OutputComparison(float: float, batches: heldOut, samples: samples)
    let with = try comparison.loss(QDQBuilder.build(
      candidate, sites: sites, quantizers: quantizers, opset: opset, integerBiases: config.integerBiases))
    let without = try comparison.loss(QDQBuilder.build(
      alternative, sites: sites,
      quantizers: quantizers.merging(activations) { _, new in new }.merging(alternativeWeights) { _, new in new }, opset: opset,
      integerBiases: config.integerBiases))
    let kept = keep || with <= without
    let figures = String(format: "quantized output loss %.4g %@, %.4g %@", with, names.with, without, names.without)
    let verdict = kept ? (with <= without ? "kept" : "kept as asked, although it raises the loss") : "undone: it raises the loss"
    return Outcome(
      kept: kept, alternative: (alternative, activations),
      summary: "\(verdict); \(figures) (\(comparison.sizes.reduce(0, +)) held-out samples)")
  }
}
