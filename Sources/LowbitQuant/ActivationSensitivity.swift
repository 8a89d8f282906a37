import LowbitCore
import LowbitData

/// One activation quantizer's sensitivity: the output loss when it alone is quantized.
public struct SensitivityRecord: Sendable, Codable, Equatable {
  /// The value the quantizer sits on.
  public var name: String
  /// The loss against the unquantized graph's outputs (`OutputLoss`: KL for logits, mean square
  /// otherwise) with only this quantizer on, over the samples measured.
  public var loss: Double
  /// The bit width the quantizer ends with (raised for the most sensitive ones).
  public var bits: Int
}

/// The white paper's PTQ debugging flow, for activations: every activation
/// quantizer is switched on alone, everything else left in float, and the loss of the graph's
/// outputs against the float outputs is measured. The quantizers whose loss is largest are the
/// ones a per-tensor grid of this bit width cannot serve (in BERT-style transformers, the
/// feed-forward output and the residual sum, which carry a few very large hidden dimensions);
/// mixed precision gives them a wider grid.
public enum ActivationSensitivity {
  /// Samples the measurement runs on: enough to rank quantizers whose losses differ by orders
  /// of magnitude, few enough that one pass per quantizer stays cheap.
  public static let samples = 64

  /// The loss of each activation quantizer in `quantizers` (keyed by site), largest first (ties
  /// in graph order), measured on the first `samples` samples of `batches`.
  /// `kind` .weight ranks the weight quantizers the same way (each weight alone quantized,
  /// rounded to nearest on its grid).
  public static func measure(
    _ graph: Graph, sites: [QuantizerSite], quantizers: [String: TensorQuantizer], batches: FeedBatches,
    opset: Int, kind: QuantizerSite.Kind = .activation, progress: ((Int, Int) -> Void)? = nil
  ) throws -> [(name: String, loss: Double)] {
    let comparison = try OutputComparison(float: graph, batches: batches, samples: samples)
    let candidates = sites.filter { $0.kind == kind && quantizers[$0.name] != nil }
    var losses: [(name: String, loss: Double)] = []
    for (k, site) in candidates.enumerated() {
      let alone = try QDQBuilder.build(graph, sites: [site], quantizers: [site.name: quantizers[site.name]!], opset: opset)
      losses.append((site.name, try comparison.loss(alone)))
      progress?(k + 1, candidates.count)
    }
    return losses.enumerated().sorted { a, b in
      a.element.loss != b.element.loss ? a.element.loss > b.element.loss : a.offset < b.offset
    }.map(\.element)
  }
}
