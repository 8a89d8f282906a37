import Foundation
import LowbitCore

/// Checks empirical bias correction end to end. The correction removes each layer's mean
/// output shift `E[W_hat x] - E[W x]` over every row it sees, and that is the right move only
/// when the shift is what the rows have in common. When the weight error hits a few rows hard
/// (a transformer's outlier tokens, padding the model later ignores), subtracting the mean moves
/// every other row away from the float model. So the graph's outputs are compared with the float
/// model's, weights quantized and activations in float, with and without the corrected biases,
/// on the first `samples` calibration samples (`OutputComparison`).
enum BiasCorrectionCheck {
  static let samples = 64

  struct Outcome {
    /// The graph to go on with: the corrected one, or the one with the biases from before.
    var graph: Graph
    var kept: Bool
    var summary: String
  }

  /// `corrected` is `unrefined` after the layer-wise pass (weights quantized, biases corrected,
  /// zero biases added where a layer had none). Without the correction means: every initializer
  /// that is not a weight back to its value in `unrefined` (the added biases to zero). With
  /// `asked` (the user chose empirical correction) the corrected graph is kept either way.
  static func run(
    float: Graph, corrected: Graph, unrefined: Graph, sites: [QuantizerSite], batches: [[String: Tensor]], asked: Bool
  ) throws -> Outcome {
    let weights = Set(sites.filter { $0.kind == .weight }.map(\.name))
    var uncorrected = corrected
    for (name, t) in corrected.initializers where !weights.contains(name) {
      uncorrected.initializers[name] = unrefined.initializers[name]
        ?? Tensor(dtype: t.dtype, shape: t.shape, storage: .float([Float](repeating: 0, count: t.count)))
    }
    let comparison = try OutputComparison(float: float, batches: batches, samples: samples)
    let with = try comparison.loss(corrected), without = try comparison.loss(uncorrected)
    let kept = asked || with <= without
    let figures = String(format: "output loss with weights quantized %.4g corrected, %.4g uncorrected", with, without)
    let verdict = kept ? (with <= without ? "kept" : "kept as asked, although it raises the loss") : "undone: it raises the loss"
    return Outcome(graph: kept ? corrected : uncorrected, kept: kept, summary: "\(verdict); \(figures) (\(comparison.sizes.reduce(0, +)) samples)")
  }
}
