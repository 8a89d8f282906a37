import Foundation
import LowbitCore

/// Checks empirical bias correction end to end. The correction removes each layer's mean
/// output shift `E[W_hat x] - E[W x]` over every row it sees, and that is the right move only
/// when the shift is what the rows have in common. When the weight error hits a few rows hard
/// (a transformer's outlier tokens, padding the model later ignores), subtracting the mean moves
/// every other row away from the float model. So both candidates are quantized in full, each
/// with its own activation ranges, and their outputs compared with the float model's on the
/// first `samples` calibration samples (`OutputComparison`).
enum BiasCorrectionCheck {
  static let samples = 64

  struct Outcome {
    /// Whether the correction stays; if not, the uncorrected graph and its activation quantizers.
    var kept: Bool
    var uncorrected: (graph: Graph, activations: [String: TensorQuantizer])
    var summary: String
  }

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
  /// (whose activation ranges are set here, on `batches`) as QDQ graphs of `opset`. With `asked`
  /// (the user chose empirical correction) the corrected graph is kept either way.
  static func run(
    float: Graph, corrected: Graph, uncorrected: Graph, sites: [QuantizerSite], quantizers: [String: TensorQuantizer],
    config: QuantConfig, statistics: [String: BatchNormStatistics], batches: [[String: Tensor]], opset: Int, asked: Bool
  ) throws -> Outcome {
    let alternative = try Calibration.activationQuantizers(
      uncorrected, sites: sites, config: config, batchNormStatistics: statistics, batches: batches)
    let comparison = try OutputComparison(float: float, batches: batches, samples: samples)
    let with = try comparison.loss(QDQBuilder.build(corrected, sites: sites, quantizers: quantizers, opset: opset))
    let without = try comparison.loss(QDQBuilder.build(
      uncorrected, sites: sites, quantizers: quantizers.merging(alternative) { _, new in new }, opset: opset))
    let kept = asked || with <= without
    let figures = String(format: "quantized output loss %.4g corrected, %.4g uncorrected", with, without)
    let verdict = kept ? (with <= without ? "kept" : "kept as asked, although it raises the loss") : "undone: it raises the loss"
    return Outcome(
      kept: kept, uncorrected: (uncorrected, alternative), summary: "\(verdict); \(figures) (\(comparison.sizes.reduce(0, +)) samples)")
  }
}
