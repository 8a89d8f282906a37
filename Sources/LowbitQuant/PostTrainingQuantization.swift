import Dispatch
import LowbitCore
import LowbitData

/// One timed step of a pipeline, for the log and the JSON report.
public struct StepTiming: Sendable, Codable, Equatable {
  public var step: String
  public var seconds: Double
  public var detail: String?
  /// The process's peak resident memory (bytes) when the step ended: the high-water mark, so a
  /// step that raised it holds more than the steps before it.
  public var peakBytes: Int?
  /// Processor seconds (user + system, all threads) the step used: `processorSeconds / seconds`
  /// is how many cores it kept busy.
  public var processorSeconds: Double?

  public init(
    step: String, seconds: Double, detail: String?, peakBytes: Int? = peakResidentBytes(), processorSeconds: Double? = nil
  ) {
    self.step = step
    self.seconds = seconds
    self.detail = detail
    self.peakBytes = peakBytes
    self.processorSeconds = processorSeconds
  }

  enum CodingKeys: String, CodingKey {
    case step, seconds, detail, peakBytes = "peak_bytes", processorSeconds = "processor_seconds"
  }
}

/// Why an optional data-driven step (block reconstruction, quantizer tuning) did not run: the
/// log names the node in the way.
public struct StepFallback: Error, Sendable, Equatable {
  public var message: String
}

/// What post-training quantization produced.
public struct QuantizationResult: Sendable {
  /// The float reference: the model simplified, BatchNorm folded (what FP32 accuracy is measured on).
  public var floatGraph: Graph
  /// The float model after BatchNorm folding, equalization and absorption: the original function
  /// (each transform checked), before any weight is quantized.
  public var equalizedGraph: Graph
  /// The float graph the quantizers were placed on: after equalization and absorption, with
  /// AdaRound's quantized weights and corrected biases.
  public var transformedGraph: Graph
  /// The quantized graph with QuantizeLinear/DequantizeLinear nodes: the simulation and the file.
  public var graph: Graph
  public var sites: [QuantizerSite]
  public var quantizers: [String: TensorQuantizer]
  public var batchNormStatistics: [String: BatchNormStatistics]
  /// Each float transform's check against the original model (none without calibration data).
  public var transformChecks: [TransformCheck] = []
  public var equalized: [EqualizedPair] = []
  public var absorbed: [AbsorbedPair] = []
  /// Per group of linear layers reading one activation: what channel-scale migration did.
  public var migration: [MigrationRecord] = []
  /// Per layer: AdaRound's and empirical bias correction's effect.
  public var layers: [LayerRefinement] = []
  /// True when the end-to-end check found round-to-nearest closer to the original model than the
  /// learned rounding and the written weights are rounded to nearest.
  public var adaRoundUndone = false
  /// Per block: block reconstruction's effect (AdaRound over blocks).
  public var blocks: [BlockRefinement] = []
  /// Per MatMul/Gemm layer: GPTQ's proxy loss against round to nearest's.
  public var gptq: [GPTQLayerRecord] = []
  /// True when the end-to-end check found round-to-nearest closer to the original model than
  /// GPTQ and the written weights are rounded to nearest.
  public var gptqUndone = false
  /// Layers corrected analytically.
  public var analyticallyCorrected: [String] = []
  /// Quantizer tuning's losses, when it ran.
  public var tuning: QuantizerTuningRecord?
  /// Per activation quantizer, largest first: its output loss alone and its final bit width
  /// (when mixed precision ran).
  public var sensitivity: [SensitivityRecord] = []
  /// Per weight quantizer, largest first, when weight mixed precision ran.
  public var weightSensitivity: [SensitivityRecord] = []
  /// Whether the file stores Conv/Gemm biases as int32 (`QuantConfig.integerBiases`).
  public var integerBiases = true
  public var steps: [StepTiming]
}

extension QuantizationResult {
  /// Bits of the quantized weights' integers, `sum_w count(w) * bits(w)` (scales and zero points
  /// not counted): the model size mixed precision trades against fidelity.
  public var weightStorageBits: Int {
    sites.reduce(0) { total, site in
      guard site.kind == .weight, let q = quantizers[site.name], let w = transformedGraph.initializers[site.name] else { return total }
      return total + w.count * q.grid.bits
    }
  }
}

/// Progress of a long step: its name, units done, units in all.
public typealias ProgressHandler = (_ step: String, _ done: Int, _ total: Int) -> Void

/// The white paper's standard PTQ pipeline (sec. 4.1, fig. 8), each step switchable in
/// `QuantConfig`:
///
///     BN folding -> cross-layer equalization (+ high-bias absorption) -> quantizer placement
///     -> weight ranges (MSE) -> AdaRound (with data) -> bias correction (analytical without
///     data; empirical only when asked after AdaRound) -> activation ranges (MSE; cross-entropy
///     for the logits) -> QDQ graph
public enum PostTrainingQuantization {
  /// Simplifies `graph` and folds its BatchNorms, keeping their statistics.
  public static func prepare(_ graph: Graph) throws -> (graph: Graph, statistics: [String: BatchNormStatistics]) {
    try graph.simplified().foldingBatchNorm()
  }

  /// How many BatchNormalization nodes folding took into the layer before them, and which it
  /// left in place (no Conv or Gemm right before them: they get a quantizer of their own).
  static func batchNormSummary(before: Graph, after: Graph) -> String {
    let count = before.nodes.filter { $0.opType == "BatchNormalization" }.count
    let left = after.nodes.filter { $0.opType == "BatchNormalization" }.map(\.name)
    if count == 0 { return "no BatchNormalization" }
    var summary = "\(count - left.count) of \(count) BatchNormalization folded"
    if !left.isEmpty {
      summary += "; left in place (no Conv or Gemm before them): " + left.map { "'\($0)'" }.listed()
    }
    return summary
  }

  /// Feeds for the first `limit` samples of `data`, in batches of `batchSize`, read from the
  /// data set each time a pass asks for them.
  public static func calibrationBatches(
    _ data: Dataset, graph: Graph, batchSize: Int, limit: Int? = nil
  ) throws -> FeedBatches {
    try FeedBatches(data, graph: graph, batchSize: batchSize, limit: limit)
  }

  /// The memory the layer-by-layer steps may hold their calibration values in unless told
  /// otherwise: 6 GiB.
  public static let defaultMemoryBudget: Double = 6 * 1_073_741_824

  /// Quantizes `graph` (a float model as loaded) with `config`, calibrating on `batches`
  /// (which may be empty for the data-free steps); AdaRound and bias correction keep the
  /// calibration batches that fit `memoryBudget` bytes (`LayerwiseRefinement.batchesWithinBudget`).
  public static func quantize(
    _ graph: Graph, config: QuantConfig, batches: [[String: Tensor]], memoryBudget: Double = defaultMemoryBudget,
    progress: ProgressHandler? = nil
  ) throws -> QuantizationResult {
    try quantize(graph, config: config, batches: FeedBatches(batches), memoryBudget: memoryBudget, progress: progress)
  }

  /// The same on batches read when each pass asks for them: the passes over every batch (range
  /// setting, statistics) hold one batch at a time; the layer-by-layer steps hold the batches
  /// they fit on (`memoryBudget`).
  public static func quantize(
    _ graph: Graph, config: QuantConfig, batches: FeedBatches, memoryBudget: Double = defaultMemoryBudget,
    progress: ProgressHandler? = nil
  ) throws -> QuantizationResult {
    try config.validate()
    var steps: [StepTiming] = []
    func timed<T>(_ name: String, _ detail: String? = nil, _ body: () throws -> T) rethrows -> T {
      let start = monotonicSeconds(), processor = processorSeconds()
      let value = try body()
      steps.append(StepTiming(
        step: name, seconds: monotonicSeconds() - start, detail: detail,
        processorSeconds: processorSeconds().flatMap { end in processor.map { end - $0 } }))
      return value
    }
    let simple = try graph.simplified()
    let firstBatch = try batches.first()
    if let first = firstBatch {
      let interpreter = try Interpreter(simple)
      for input in simple.inputs {
        guard let t = first[input.name] else { throw LowbitError.invalidInput("calibration data has no input '\(input.name)'") }
        try interpreter.checkFeed(t, for: input)
      }
    }
    // Every float transform is checked against the original model on the first calibration
    // batch, and undone when it changed the outputs.
    let checker = try FloatTransformCheck(original: simple, feeds: firstBatch)
    var checks: [TransformCheck] = []
    func verified(_ candidate: Graph, _ transform: String) throws -> Bool {
      guard let checker else { return true }
      let check = try checker.check(candidate, transform: transform)
      checks.append(check)
      steps[steps.count - 1].detail = [steps[steps.count - 1].detail, check.summary].compactMap { $0 }.joined(separator: "; ")
      return check.kept
    }
    var prepared = try timed("fold batchnorm") { try simple.foldingBatchNorm() }
    steps[steps.count - 1].detail = batchNormSummary(before: graph, after: prepared.graph)
    if !prepared.statistics.isEmpty, try !verified(prepared.graph, "fold batchnorm") { prepared = (simple, [:]) }
    var float = prepared.graph, stats = prepared.statistics
    var equalized: [EqualizedPair] = [], absorbed: [AbsorbedPair] = []
    if config.equalizesLayers {
      let (g, pairs) = try timed("cross-layer equalization") { () throws -> (Graph, [EqualizedPair]) in
        // The scales are chosen for this run's quantizers, activations included, from the
        // statistics of the first calibration batches (DFQ's weight-only rule without data).
        let sample = try batches.prefix(2).loaded()
        let moments = try ChannelMoments.gather(float, values: CrossLayerEqualization.momentsNeeded(float), batches: sample)
        return CrossLayerEqualization.equalize(float, target: config.equalizationTarget, moments: moments)
      }
      let bounded = g.nodes.filter { $0.opType == "Min" }.count - float.nodes.filter { $0.opType == "Min" }.count
      steps[steps.count - 1].detail = "\(pairs.count) pairs" + (batches.isEmpty ? " (weight ranges only, DFQ)" : " (scales for the quantizers' noise, activations included)")
        + (bounded > 0 ? ", \(bounded) bounded ReLUs given per-channel bounds" : "")
      if try pairs.isEmpty || verified(g, "cross-layer equalization") {
        float = g
        equalized = pairs
        // A layer's output channel i was divided by s_i: so were its BN's gamma_i and beta_i.
        for pair in pairs {
          guard var s = stats[pair.first], s.gamma.count == pair.scales.count else { continue }
          s.gamma = zip(s.gamma, pair.scales).map { $0 / $1 }
          s.beta = zip(s.beta, pair.scales).map { $0 / $1 }
          stats[pair.first] = s
        }
      }
    } else if config.crossLayerEqualization == nil {
      steps.append(StepTiming(step: "cross-layer equalization", seconds: 0, detail: "skipped: per-channel weights of \(config.weightBits) bits (--cle runs it)"))
    }
    if config.biasAbsorption {
      var absorbedStats = stats
      let (g, pairs) = try timed("high-bias absorption") { () throws -> (Graph, [AbsorbedPair]) in
        let minima = try BiasAbsorption.preActivationMinima(float, batches: batches)
        return try BiasAbsorption.absorb(float, statistics: &absorbedStats, minima: minima)
      }
      let sources = Set(pairs.map(\.source.rawValue)).sorted().joined(separator: ", ")
      steps[steps.count - 1].detail = pairs.isEmpty
        ? "nothing to absorb: no (bounded) ReLU pair with an unpadded second layer and some channel with c > 0"
        : "\(pairs.count) pairs, c from \(sources)"
      if try pairs.isEmpty || verified(g, "high-bias absorption") {
        float = g
        absorbed = pairs
        stats = absorbedStats
      }
    }
    var migration: [MigrationRecord] = []
    let migrationMethod = config.migrationInUse(for: float)
    let rotation = config.rotationInUse(for: float)
    if (migrationMethod != .none || rotation) && !batches.isEmpty {
      let (g, records) = try timed("channel-scale migration") {
        try ChannelScaleMigration.run(float, method: migrationMethod, config: config, batches: batches, progress: { progress?("migration", $0, $1) })
      }
      let rescaled = records.filter { $0.alpha != nil }.count, rotated = records.filter { $0.rotationBlock != nil }.count
      let before = records.map(\.unscaledError).reduce(0, +), after = records.map(\.error).reduce(0, +)
      steps[steps.count - 1].detail = String(
        format: "%@: %d of %d layer groups rescaled%@, layer output error %.4g -> %.4g on %d sample rows each",
        migrationMethod.rawValue, rescaled, records.count,
        rotation ? ", \(rotated) rotated (online Hadamard)" : "", before, after, ChannelScaleMigration.sampleRows)
      if try rescaled + rotated == 0 || verified(g, "channel-scale migration") {
        float = g
        migration = records
      }
    }
    let heads = QuantizerPlacement.probabilityHeads(in: float).map { "output '\($0.outputs[0])' (\($0.opType)) stays float, its input is quantized" }
    let floatLayers = float.nodes.filter { QuantizerPlacement.floatWeightLayers.contains($0.opType) }
    let floatNote = floatLayers.isEmpty ? [] : [
      "float weights (recurrent, Einsum) in \(floatLayers.count) layer\(floatLayers.count == 1 ? "" : "s"): "
        + floatLayers.map { "\($0.opType) '\($0.name)'" }.listed(),
    ]
    let placementNote = heads + floatNote
    let sites = timed("place quantizers", placementNote.isEmpty ? nil : placementNote.joined(separator: "; ")) {
      QuantizerPlacement.sites(in: float, config: config)
    }
    let unknown = Set(config.activationRangeOverrides.keys).subtracting(sites.filter { $0.kind == .activation }.map(\.name))
    guard unknown.isEmpty else {
      throw LowbitError.invalidArgument(
        "a range method is set for \(unknown.sorted().map { "'\($0)'" }.listed()), but no activation quantizer sits there (the names are the values `--json`'s quantizers list)")
    }
    var quantizers = try timed("weight ranges", config.weightRange.rawValue) {
      try Calibration.weightQuantizers(float, sites: sites, config: config)
    }
    var weightSensitivity: [SensitivityRecord] = []
    if config.mixedPrecisionWeights > 0 && config.quantizeWeights && !batches.isEmpty {
      let ranking = try timed("weight sensitivity") {
        try ActivationSensitivity.measure(
          float, sites: sites, quantizers: quantizers, batches: batches, opset: config.outputOpset(modelOpset: float.opset),
          kind: .weight, progress: { progress?("weight sensitivity", $0, $1) })
      }
      let chosen = Set(ranking.prefix(config.mixedPrecisionWeights).map(\.name))
      var wide = config
      wide.weightBits = config.mixedPrecisionWeightBits
      quantizers.merge(try Calibration.weightQuantizers(float, sites: sites.filter { chosen.contains($0.name) }, config: wide)) { _, new in new }
      weightSensitivity = ranking.map { SensitivityRecord(name: $0.name, loss: $0.loss, bits: quantizers[$0.name]!.grid.bits) }
      func loss(_ i: Int) -> String { i < ranking.count ? String(format: "%.3g", ranking[i].loss) : "-" }
      steps[steps.count - 1].detail =
        "\(ranking.count) weight quantizers, each alone: output loss \(loss(0)) to \(loss(ranking.count - 1)); the \(chosen.count) most sensitive to \(config.mixedPrecisionWeightBits) bits"
    }
    var transformed = float
    if config.embeddingTables && config.quantizeWeights {
      let (g, tables) = timed("embedding tables") { EmbeddingTables.quantize(float) }
      if !tables.isEmpty {
        transformed = g
        let floatBytes = tables.map { 4 * $0.rows * $0.columns }.reduce(0, +)
        let intBytes = tables.map { $0.rows * ($0.columns + 4) }.reduce(0, +)
        steps[steps.count - 1].detail = String(
          format: "%d table%@ in int8 rows (%@), %.1f MB -> %.1f MB, largest error %.3g", tables.count, tables.count == 1 ? "" : "s",
          tables.map { "\($0.rows) x \($0.columns)" }.joined(separator: ", "), Double(floatBytes) / 1e6, Double(intBytes) / 1e6,
          tables.map(\.maxError).max() ?? 0)
      } else {
        steps.removeLast()
      }
    }
    var layers: [LayerRefinement] = []
    // The refining steps fit on `split.fitting`; whether each stays is decided on `split.heldOut`.
    let split = try CalibrationSplit(batches, graph: float)
    // GPTQ rounds the MatMul and Gemm weights first, from the float model's inputs; AdaRound
    // and bias correction then see them rounded, and AdaRound leaves them as they are.
    var gptq: GPTQResult?
    let rangeSet = quantizers
    if config.gptqInUse(for: float) && !batches.isEmpty && config.quantizeWeights {
      let result = try timed("gptq") {
        try GPTQ.run(float, sites: sites, quantizers: quantizers, config: config, batches: split.fitting, memoryBudget: memoryBudget,
                     progress: { progress?("gptq", $0, $1) })
      }
      steps[steps.count - 1].detail = result.summary(config.gptqOptions, batches: split.fitting.count)
      gptq = result
      quantizers = result.quantizers
    }
    let rounded = gptq?.weights ?? [:]
    let learnedSites = sites.filter { rounded[$0.name] == nil }
    let runAdaRound = config.adaRound && !batches.isEmpty && config.quantizeWeights
      && (rounded.isEmpty || learnedSites.contains { $0.kind == .weight && quantizers[$0.name] != nil })
    var uncorrected: Graph?  // the graph without empirical bias correction, to check it against
    var adaRoundUndone = false
    let correction = config.biasCorrection.resolved(hasData: !batches.isEmpty, adaRound: runAdaRound || gptq != nil)
    if correction == .empirical && batches.isEmpty {
      throw LowbitError.invalidArgument("empirical bias correction needs calibration data: use analytical")
    }
    var blocks: [BlockRefinement] = []
    var fallback: String?
    let cached = try LayerwiseRefinement.batchesWithinBudget(float, batches: split.fitting, budget: memoryBudget)
    // Loaded when a layer-by-layer step first needs them, so range setting alone holds one batch.
    var loadedFitting: [[String: Tensor]]?
    func fittingBatches() throws -> [[String: Tensor]] {
      if let b = loadedFitting { return b }
      let b = try split.fittingSample(cached, seed: config.adaRoundOptions.seed).loaded()
      loadedFitting = b
      return b
    }
    let budgetNote = (cached < split.fitting.count
      ? ", \(cached) of \(split.fitting.count) batches, a seeded sample (memory budget \(String(format: "%.3g", memoryBudget / 1_073_741_824)) GiB)" : "")
      + (split.isHeldOut ? ", \(batches.count - split.fitting.count) batches held out for the checks" : "")
    let adaRound = config.adaRoundInUse
    if runAdaRound && adaRound.unit == .block {
      let o = adaRound
      let outcome = try timed("adaround") {
        try BlockReconstruction.run(
          float, sites: learnedSites, quantizers: quantizers, batches: try fittingBatches(), options: o,
          progress: { progress?("adaround", $0, $1) })
      }
      switch outcome {
      case .success(let result):
        transformed = result.graph
        blocks = result.blocks
        let before = blocks.map(\.nearestError).reduce(0, +)
        let after = blocks.map(\.keptError).reduce(0, +)
        let kept = blocks.filter { $0.keptNearest == true }.count
        steps[steps.count - 1].detail = String(
          format: "block reconstruction: %d blocks of %d layers, %d iterations x %d samples, reconstruction error %.4g -> %.4g",
          blocks.count, blocks.map(\.layers.count).reduce(0, +), o.iterations, o.blockBatchSize, before, after) + budgetNote
          + (kept > 0 ? ", \(kept) kept round-to-nearest (learned rounding lost on held-out samples)" : "")
      case .failure(let reason):
        fallback = reason.message
        steps.removeLast()
      }
    }
    let layerwiseAdaRound = runAdaRound && (adaRound.unit == .layer || fallback != nil)
    if layerwiseAdaRound || correction == .empirical {
      let name = layerwiseAdaRound ? (correction == .empirical ? "adaround + bias correction" : "adaround") : "bias correction"
      let unrefined = transformed
      let result = try timed(name) {
        try LayerwiseRefinement.run(
          transformed, sites: correction == .empirical ? sites : learnedSites, quantizers: quantizers, batches: try fittingBatches(),
          adaRound: layerwiseAdaRound ? adaRound : nil, biasCorrection: correction == .empirical, rounded: rounded,
          progress: { progress?(name, $0, $1) })
      }
      transformed = result.graph
      layers = result.layers
      var detail = "\(layers.count) layers" + budgetNote
      if let fallback { detail = "layer-wise (no block reconstruction: \(fallback)), " + detail }
      if layerwiseAdaRound {
        let o = adaRound
        let before = layers.compactMap(\.nearestError).reduce(0, +)
        let after = layers.compactMap(\.keptError).reduce(0, +)
        detail += String(format: ", %d iterations x %d rows, reconstruction error %.4g -> %.4g", o.iterations, o.batchSize, before, after)
        let kept = layers.filter { $0.keptNearest == true }.count
        if kept > 0 { detail += ", \(kept) kept round-to-nearest (learned rounding lost on held-out rows)" }
        let refined = Set(layers.map(\.layer))
        let nearestOnly = learnedSites.filter { $0.kind == .weight && !refined.contains($0.consumer ?? "") }.compactMap(\.consumer)
        if !nearestOnly.isEmpty {
          let ops = Set(nearestOnly.compactMap { c in transformed.nodes.first { $0.name == c }?.opType }).sorted()
          detail += ", round-to-nearest for \(nearestOnly.count) \(ops.joined(separator: "/")) without a layer form ("
            + nearestOnly.map { "'\($0)'" }.listed() + ")"
        }
      }
      if correction == .empirical { detail += ", empirical bias correction" }
      steps[steps.count - 1].detail = detail
      if correction == .empirical { uncorrected = BiasCorrectionCheck.uncorrected(transformed, unrefined: unrefined, sites: sites) }
    }
    transformed.initializers.merge(rounded) { _, new in new }
    var nearestGraph = float  // every weight AdaRound could have learned, rounded to nearest
    nearestGraph.initializers.merge(rounded) { _, new in new }
    var corrected: [String] = []
    if correction == .analytical {
      (transformed, corrected) = timed("bias correction") {
        BiasCorrection.analytical(transformed, sites: sites, quantizers: quantizers, statistics: stats)
      }
      steps[steps.count - 1].detail = "analytical, \(corrected.count) layers with BatchNorm statistics at their input"
    }
    var rangeNotes: [String] = []
    var activations = try timed("activation ranges", config.activationRange.rawValue) {
      try Calibration.activationQuantizers(
        transformed, sites: sites, config: config, batchNormStatistics: stats, batches: batches,
        progress: { progress?("calibrate", $0, batches.count) }, note: { rangeNotes.append($0) })
    }
    if !rangeNotes.isEmpty { steps[steps.count - 1].detail = ([config.activationRange.rawValue] + rangeNotes).joined(separator: "; ") }
    quantizers.merge(activations) { a, _ in a }
    if let uncorrected {
      let check = try timed("bias correction check") {
        try BiasCorrectionCheck.run(
          float: prepared.graph, corrected: transformed, uncorrected: uncorrected, sites: sites, quantizers: quantizers,
          config: config, statistics: stats, batches: batches, heldOut: split.heldOut,
          opset: config.outputOpset(modelOpset: transformed.opset), asked: config.biasCorrection == .empirical)
      }
      steps[steps.count - 1].detail = check.summary
      if !check.kept {
        (transformed, activations) = check.alternative
        quantizers.merge(activations) { _, new in new }
        for k in layers.indices { layers[k].biasShift = nil }
      }
    }
    // AdaRound (or block reconstruction) minimizes each layer's or block's own error: it stays
    // only when the whole quantized model it gives follows the original float model more closely
    // on the held-out rows than round-to-nearest does.
    if runAdaRound && (!layers.isEmpty || !blocks.isEmpty) && correction != .empirical {
      let check = try timed("adaround check") {
        try EndToEndCheck.run(
          float: prepared.graph, candidate: transformed, alternative: nearestGraph, sites: sites, quantizers: quantizers,
          config: config, statistics: stats, batches: batches, heldOut: split.heldOut,
          opset: config.outputOpset(modelOpset: transformed.opset), keep: false, names: ("learned rounding", "nearest"))
      }
      steps[steps.count - 1].detail = check.summary
      if !check.kept {
        (transformed, activations) = check.alternative
        quantizers.merge(activations) { _, new in new }
        adaRoundUndone = true
      }
    }
    // GPTQ, like AdaRound, stays only when the quantized model follows the float one more
    // closely with it on the held-out rows (or when asked for).
    var gptqUndone = false
    if !rounded.isEmpty {
      var alternative = transformed
      let nearest = rangeSet.filter { rounded[$0.key] != nil }
      for name in rounded.keys { alternative.initializers[name] = float.initializers[name] }
      let check = try timed("gptq check") {
        try EndToEndCheck.run(
          float: prepared.graph, candidate: transformed, alternative: alternative, sites: sites, quantizers: quantizers,
          config: config, statistics: stats, batches: batches, heldOut: split.heldOut,
          opset: config.outputOpset(modelOpset: transformed.opset), keep: config.gptq == true, names: ("GPTQ", "nearest"),
          alternativeWeights: nearest)
      }
      steps[steps.count - 1].detail = check.summary
      if !check.kept {
        (transformed, activations) = check.alternative
        quantizers.merge(activations) { _, new in new }
        quantizers.merge(nearest) { _, new in new }
        gptqUndone = true
      }
    }
    var sensitivity: [SensitivityRecord] = []
    if config.mixedPrecision > 0 && !activations.isEmpty && !batches.isEmpty {
      let ranking = try timed("sensitivity") {
        try ActivationSensitivity.measure(
          transformed, sites: sites, quantizers: activations, batches: batches, opset: max(transformed.opset, 13),
          progress: { progress?("sensitivity", $0, $1) })
      }
      let chosen = Set(ranking.prefix(config.mixedPrecision).map(\.name))
      let (refitted, raised) = try timed("mixed precision") {
        try widened(
          chosen, graph: transformed, sites: sites, activations: Set(activations.keys), config: config, statistics: stats,
          batches: batches)
      }
      quantizers.merge(refitted) { _, new in new }
      sensitivity = ranking.map { SensitivityRecord(name: $0.name, loss: $0.loss, bits: quantizers[$0.name]!.grid.bits) }
      func loss(_ i: Int) -> String { i < ranking.count ? String(format: "%.3g", ranking[i].loss) : "-" }
      steps[steps.count - 2].detail =
        "\(ranking.count) activation quantizers, each alone on \(ActivationSensitivity.samples) samples: output loss \(loss(0)) to \(loss(ranking.count - 1))"
      let sharing = raised.count - chosen.count
      steps[steps.count - 1].detail =
        "\(chosen.count) most sensitive to \(config.mixedPrecisionBits) bits (loss alone \(loss(0)) to \(loss(chosen.count - 1)); next \(loss(chosen.count)) at \(config.activationBits) bits)"
        + (sharing > 0 ? ", and \(sharing) more that share a Concat's grid with them" : "")
    }
    var tuning: QuantizerTuningRecord?
    if config.runsQuantizerTuning && !batches.isEmpty {
      let outcome = try timed("quantizer tuning") {
        try QuantizerTuning.run(
          float: prepared.graph, transformed: transformed, sites: sites, quantizers: quantizers,
          batches: try fittingBatches(), heldOut: split.isHeldOut ? try split.heldOut.loaded() : nil, asked: config.quantizerTuning == true,
          opset: transformed.opset,
          options: config.quantizerTuningInUse,
          progress: { progress?("quantizer tuning", $0, $1) })
      }
      switch outcome {
      case .success(let tuned):
        let r = tuned.record
        tuning = r
        quantizers = tuned.quantizers
        transformed = tuned.graph
        let o = config.quantizerTuningInUse
        steps[steps.count - 1].detail = String(
          format: "%d scales, %d zero points, %d iterations x %d samples, %@ on %d %@samples %.4g -> %.4g%@", r.scales,
          r.zeroPoints, o.iterations, o.batchSize, r.loss, r.judgedOn, r.heldOut ? "held-out " : "", r.before, r.after,
          r.kept ? String(format: " (step %d; signed-rank z %.2f%@)", r.step, r.signedRankZ,
                          r.signedRankZ > QuantizerTuning.requiredZ ? "" : ", kept as asked although it could be chance")
            : r.step > 0 ? String(format: " at step %d, signed-rank z %.2f, not above %g (could be chance): range-set quantizers kept",
                                  r.step, r.signedRankZ, QuantizerTuning.requiredZ)
            : " (no checkpoint lower: range-set quantizers kept)")
      case .failure(let reason):
        steps[steps.count - 1].detail = "skipped: \(reason.message)"
      }
    }
    let opset = config.outputOpset(modelOpset: transformed.opset)
    let qdq = try timed("write QDQ graph", "opset \(opset)") {
      let qdq = try QDQBuilder.build(transformed, sites: sites, quantizers: quantizers, opset: opset, integerBiases: config.integerBiases)
      // Weight-only files for ONNX Runtime: blocked MatMul weights as its MatMulNBits.
      return !config.quantizeActivations && config.target == .ort ? try QDQBuilder.usingMatMulNBits(qdq) : qdq
    }
    return QuantizationResult(
      floatGraph: prepared.graph, equalizedGraph: float, transformedGraph: transformed, graph: qdq, sites: sites, quantizers: quantizers,
      batchNormStatistics: stats, transformChecks: checks, equalized: equalized, absorbed: absorbed, migration: migration, layers: layers,
      adaRoundUndone: adaRoundUndone, blocks: blocks, gptq: gptq?.layers ?? [], gptqUndone: gptqUndone, analyticallyCorrected: corrected,
      tuning: tuning, sensitivity: sensitivity, weightSensitivity: weightSensitivity, integerBiases: config.integerBiases, steps: steps)
  }
}
