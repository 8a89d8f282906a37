import LowbitCore
import LowbitData

extension PostTrainingQuantization {
  /// The activation quantizers named in `chosen`, and every quantizer sharing a grid with one
  /// of them (`Calibration.closedOverSharedGrids`), set again from `batches` at
  /// `config.mixedPrecisionBits`: the white paper's mixed precision for the activations whose
  /// quantization alone costs the most output loss. Returns the new quantizers and the names raised.
  static func widened(
    _ chosen: Set<String>, graph: Graph, sites: [QuantizerSite], activations: Set<String>, config: QuantConfig,
    statistics: [String: BatchNormStatistics], batches: FeedBatches
  ) throws -> (quantizers: [String: TensorQuantizer], raised: Set<String>) {
    let raised = Calibration.closedOverSharedGrids(chosen, graph, quantized: activations, config: config)
    var wide = config
    wide.activationBits = config.mixedPrecisionBits
    let refitted = try Calibration.activationQuantizers(
      graph, sites: sites.filter { raised.contains($0.name) }, config: wide, batchNormStatistics: statistics,
      batches: batches)
    return (refitted, raised)
  }

  // What a run would give with one setting changed, derived from a run: the debugging flow's
  // trials that need no whole run.

  /// `result` with its activation quantizers (those named in `only`, when given) set again under
  /// `config`'s range methods and bit width, and its QDQ graph written again. Weights, equalization, AdaRound's
  /// rounding and bias correction stay as they were: what a change of activation ranges alone
  /// costs, without a whole run.
  public static func recalibratingActivations(
    _ result: QuantizationResult, config: QuantConfig, batches: FeedBatches, only: Set<String>? = nil
  ) throws -> QuantizationResult {
    try config.validate()
    let all = activationSites(result)
    // A quantizer tied to others (one grid for a Concat's inputs and output) is set with them.
    let names = only.map { Calibration.closedOverSharedGrids($0, result.transformedGraph, quantized: Set(all.map(\.name)), config: config) }
    let sites = all.filter { names?.contains($0.name) ?? true }
    let activations = try Calibration.activationQuantizers(
      result.transformedGraph, sites: sites, config: config, batchNormStatistics: result.batchNormStatistics,
      batches: batches)
    return try replacing(result, activations)
  }

  /// Every activation quantizer of `result` set again at `config.mixedPrecisionBits`, for
  /// `mixingPrecision`.
  public static func widenedActivations(
    _ result: QuantizationResult, config: QuantConfig, batches: FeedBatches
  ) throws -> [String: TensorQuantizer] {
    try config.validate()
    let all = Set(activationSites(result).map(\.name))
    return try widened(
      all, graph: result.transformedGraph, sites: result.sites, activations: all, config: config,
      statistics: result.batchNormStatistics, batches: batches
    ).quantizers
  }

  /// `result` with its `count` activation quantizers first in `ranking` (largest loss first),
  /// and every quantizer sharing a grid with one of them, taken from `widened`
  /// (`widenedActivations`): the mixed precision `QuantConfig.mixedPrecision = count` gives,
  /// without a whole run.
  public static func mixingPrecision(
    _ result: QuantizationResult, count: Int, ranking: [SensitivityRecord], widened: [String: TensorQuantizer], config: QuantConfig
  ) throws -> QuantizationResult {
    let activations = Set(activationSites(result).map(\.name))
    let raised = Calibration.closedOverSharedGrids(
      Set(ranking.prefix(count).map(\.name)), result.transformedGraph, quantized: activations, config: config)
    var r = try replacing(result, widened.filter { raised.contains($0.key) })
    r.sensitivity = ranking.map { SensitivityRecord(name: $0.name, loss: $0.loss, bits: r.quantizers[$0.name]?.grid.bits ?? $0.bits) }
    return r
  }

  private static func activationSites(_ result: QuantizationResult) -> [QuantizerSite] {
    result.sites.filter { $0.kind == .activation && result.quantizers[$0.name] != nil }
  }

  /// `result` with `quantizers` in place of its own of the same names, its QDQ graph written again.
  private static func replacing(_ result: QuantizationResult, _ quantizers: [String: TensorQuantizer]) throws -> QuantizationResult {
    var r = result
    r.quantizers.merge(quantizers) { _, new in new }
    r.graph = try QDQBuilder.build(
      r.transformedGraph, sites: r.sites, quantizers: r.quantizers, opset: r.graph.opset, integerBiases: r.integerBiases)
    return r
  }

  /// Each activation quantizer of `result` ranked by the output loss it causes alone
  /// (`ActivationSensitivity`), largest first, on the first samples of `batches`.
  public static func activationSensitivity(_ result: QuantizationResult, batches: FeedBatches) throws -> [SensitivityRecord] {
    let names = Set(activationSites(result).map(\.name))
    let activations = result.quantizers.filter { names.contains($0.key) }
    return try ActivationSensitivity.measure(
      result.transformedGraph, sites: result.sites, quantizers: activations, batches: batches,
      opset: max(result.transformedGraph.opset, 13)
    ).map { SensitivityRecord(name: $0.name, loss: $0.loss, bits: activations[$0.name]!.grid.bits) }
  }
}
