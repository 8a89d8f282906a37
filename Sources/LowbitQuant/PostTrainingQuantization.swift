import Dispatch
import LowbitCore
import LowbitData

/// One timed step of a pipeline, for the log and the JSON report.
public struct StepTiming: Sendable, Codable, Equatable {
  public var step: String
  public var seconds: Double
  public var detail: String?
}

/// What post-training quantization produced.
public struct QuantizationResult: Sendable {
  /// The float graph the quantizers were placed on (simplified, BatchNorm folded).
  public var floatGraph: Graph
  /// The quantized graph with QuantizeLinear/DequantizeLinear nodes: the simulation and the file.
  public var graph: Graph
  public var sites: [QuantizerSite]
  public var quantizers: [String: TensorQuantizer]
  public var batchNormStatistics: [String: BatchNormStatistics]
  public var steps: [StepTiming]
}

/// Progress of a long step: its name, units done, units in all.
public typealias ProgressHandler = (_ step: String, _ done: Int, _ total: Int) -> Void

/// Post-training quantization with range setting (white paper sec. 3.1, fig. 8 without the
/// optional algorithms): BN folding -> quantizer placement -> weight ranges -> activation ranges
/// -> QDQ graph.
public enum PostTrainingQuantization {
  /// Simplifies `graph` and folds its BatchNorms, keeping their statistics.
  public static func prepare(_ graph: Graph) throws -> (graph: Graph, statistics: [String: BatchNormStatistics]) {
    try graph.simplified().foldingBatchNorm()
  }

  /// Feed dictionaries for the first `limit` samples of `data`, in batches of `batchSize`.
  public static func calibrationBatches(
    _ data: Dataset, graph: Graph, batchSize: Int, limit: Int? = nil
  ) throws -> [[String: Tensor]] {
    let d = limit.map { data.prefix(min($0, data.count)) } ?? data
    return try d.batches(size: batchSize).map { try d.feeds(for: graph, batch: $0) }
  }

  /// Quantizes `graph` (a float model as loaded) with `config`, calibrating on `batches`.
  public static func quantize(
    _ graph: Graph, config: QuantConfig, batches: [[String: Tensor]], progress: ProgressHandler? = nil
  ) throws -> QuantizationResult {
    try config.validate()
    var steps: [StepTiming] = []
    func timed<T>(_ name: String, _ detail: String? = nil, _ body: () throws -> T) rethrows -> T {
      let start = monotonicSeconds()
      let value = try body()
      steps.append(StepTiming(step: name, seconds: monotonicSeconds() - start, detail: detail))
      return value
    }
    let prepared = try timed("fold batchnorm") { try prepare(graph) }
    var float = prepared.graph, stats = prepared.statistics
    if config.crossLayerEqualization {
      let (equalized, pairs) = timed("cross-layer equalization") { CrossLayerEqualization.equalize(float) }
      float = equalized
      // A layer's output channel i was divided by s_i: so were its BN's gamma_i and beta_i.
      for pair in pairs {
        guard var s = stats[pair.first], s.gamma.count == pair.scales.count else { continue }
        s.gamma = zip(s.gamma, pair.scales).map { $0 / $1 }
        s.beta = zip(s.beta, pair.scales).map { $0 / $1 }
        stats[pair.first] = s
      }
      steps[steps.count - 1].detail = "\(pairs.count) pairs; ReLU6 between pairs replaced by ReLU (DFQ)"
    }
    let sites = timed("place quantizers") { QuantizerPlacement.sites(in: float, config: config) }
    var quantizers = try timed("weight ranges", config.weightRange.rawValue) {
      try Calibration.weightQuantizers(float, sites: sites, config: config)
    }
    let activations = try timed("activation ranges", config.activationRange.rawValue) {
      try Calibration.activationQuantizers(
        float, sites: sites, config: config, batchNormStatistics: stats, batches: batches,
        progress: { progress?("calibrate", $0, batches.count) })
    }
    quantizers.merge(activations) { a, _ in a }
    let opset = config.outputOpset(modelOpset: float.opset)
    let qdq = try timed("write QDQ graph", "opset \(opset)") {
      try QDQBuilder.build(float, sites: sites, quantizers: quantizers, opset: opset)
    }
    return QuantizationResult(
      floatGraph: float, graph: qdq, sites: sites, quantizers: quantizers, batchNormStatistics: stats, steps: steps)
  }
}
