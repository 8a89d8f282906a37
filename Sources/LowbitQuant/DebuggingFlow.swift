import LowbitCore
import LowbitData

/// The second half of the white paper's debugging flow (sec. 4.8, fig. 12): the fixes it lists,
/// each tried on top of the best configuration so far (at `--effort fast`, and a fix of the
/// activation ranges on the best trial's weights, so that a trial costs a fraction of a run) and measured on held-out data by the
/// output loss against the original float model (KL for logits, mean square otherwise), kept
/// when it lowers that loss by more than `QuantizationFix.margin`. The result is the
/// recommended configuration and its loss measured with the settings given, and the front of loss against the number
/// of activation quantizers mixed precision widens.
public struct QuantizationFix: Sendable, Codable, Equatable, Hashable {
  public enum Kind: String, Sendable, Codable {
    case perChannelWeights = "per-channel weights"
    case crossLayerEqualization = "cross-layer equalization"
    case activationRange = "activation range"
    case biasCorrection = "bias correction"
    case adaRound = "AdaRound"
    case mixedPrecision = "mixed precision"
    case weightMixedPrecision = "weight mixed precision"
    case quantizerRange = "range of one quantizer"

    /// Whether the fix changes the activation quantizers alone (a trial sets them again on the
    /// best run's weights).
    var activationsOnly: Bool { self == .activationRange || self == .mixedPrecision || self == .quantizerRange }
  }

  public var kind: Kind
  /// On or off, for the switches.
  public var enabled: Bool?
  public var rangeMethod: RangeMethod?
  public var biasCorrection: BiasCorrectionMode?
  /// Activation quantizers given `QuantConfig.mixedPrecisionBits` bits (weight quantizers
  /// given `mixedPrecisionWeightBits`, for weight mixed precision).
  public var quantizers: Int?
  /// The activation quantizer (the value it sits on), for the range of one quantizer.
  public var quantizer: String?

  /// A fix must lower the held-out loss by more than this share to be kept.
  public static let margin = 0.02

  public func applied(to config: QuantConfig) -> QuantConfig {
    var c = config
    switch kind {
    case .perChannelWeights: c.perChannel = true
    case .crossLayerEqualization: c.crossLayerEqualization = enabled
    case .activationRange: c.activationRange = rangeMethod ?? c.activationRange
    case .biasCorrection: c.biasCorrection = biasCorrection ?? c.biasCorrection
    case .adaRound: c.adaRound = enabled ?? c.adaRound
    case .mixedPrecision: c.mixedPrecision = quantizers ?? 0
    case .weightMixedPrecision: c.mixedPrecisionWeights = quantizers ?? 0
    case .quantizerRange: if let q = quantizer, let m = rangeMethod { c.activationRangeOverrides[q] = m }
    }
    return c
  }

  /// The fixes worth trying on `config`: the ones that change it.
  static func candidates(for config: QuantConfig) -> [QuantizationFix] {
    var fixes: [QuantizationFix] = []
    if !config.perChannel && config.quantizeWeights { fixes.append(.init(kind: .perChannelWeights)) }
    let cle = config.equalizesLayers
    fixes.append(.init(kind: .crossLayerEqualization, enabled: !cle))
    if config.quantizeActivations {
      for m in [RangeMethod.mse, .percentile, .minMax] where m != config.activationRange {
        fixes.append(.init(kind: .activationRange, rangeMethod: m))
      }
    }
    if !config.adaRound { fixes.append(.init(kind: .adaRound, enabled: true)) }
    if config.biasCorrection != .empirical { fixes.append(.init(kind: .biasCorrection, biasCorrection: .empirical)) }
    return fixes.filter { $0.applied(to: config) != config }
  }
}

public enum DebuggingFlow {
  /// One configuration measured on the held-out samples.
  public struct Measurement: Sendable, Codable, Equatable {
    public var loss: Double
    public var sqnr: Double
    /// Mean cosine similarity of the output rows with the float model's.
    public var cosine: Double
    /// Bits of the quantized weights' integers (`QuantizationResult.weightStorageBits`).
    public var weightBits: Int
    public var seconds: Double
  }

  public struct Trial: Sendable, Codable, Equatable {
    public var fix: QuantizationFix
    public var measurement: Measurement
    /// Whether it lowered the best loss so far by more than the margin (and is in the recommendation).
    public var kept: Bool
  }

  public struct Outcome: Sendable, Codable {
    /// The options given, with their own settings.
    public var baseline: Measurement
    /// The options given with the trials' settings (AdaRound capped at `Effort.fastAdaRoundIterations`
    /// steps, no quantizer tuning): what the trials compare against.
    public var trialBaseline: Measurement
    public var trials: [Trial]
    /// The front of mixed precision: loss with the k most sensitive activation quantizers widened.
    public var mixedPrecisionFront: [Trial]
    /// The front of weight mixed precision: loss against weight bits with the k most sensitive
    /// weight quantizers widened to `QuantConfig.mixedPrecisionWeightBits` (weights of fewer bits).
    public var weightFront: [Trial]
    public var recommended: QuantConfig
    public var recommendedFixes: [QuantizationFix]
    public var recommendedMeasurement: Measurement
    /// The fixes the trials kept when, measured with the settings given, they did not beat the
    /// options given (the recommendation is then the options given).
    public var rejectedFixes: [QuantizationFix]
    public var rejectedMeasurement: Measurement?
  }

  /// How many of the most sensitive activation quantizers try the other range methods alone.
  public static let rangeTrials = 4

  /// The most activation quantizers the recommendation widens unless told otherwise (the front
  /// shows them all).
  public static let defaultWidenAtMost = 8

  /// The weight bits the recommendation may reach unless told otherwise, as a multiple of the
  /// options given's (the weight front shows every point).
  public static let defaultSizeBudget = 1.25

  /// Numbers of widened activation quantizers the front tries, of `count`: the powers of two
  /// below it, and all of them.
  public static func frontSizes(_ count: Int) -> [Int] {
    guard count > 0 else { return [] }
    return Array(sequence(first: 1) { $0 * 2 }.prefix { $0 < count }) + [count]
  }

  /// Tries the fixes on `config`, one after another, each on top of the ones kept, measuring each
  /// configuration's full PTQ run on the first `samples` samples of `heldOut` (`baseline`, when
  /// given, is `config`'s run already made).
  public static func run(
    _ graph: Graph, config: QuantConfig, calibration: FeedBatches, heldOut: FeedBatches, samples: Int = 64,
    baseline baselineResult: QuantizationResult? = nil, memoryBudget: Double = PostTrainingQuantization.defaultMemoryBudget,
    widenAtMost: Int = defaultWidenAtMost, sizeBudget: Double = defaultSizeBudget, progress: ((String, Int, Int) -> Void)? = nil
  ) throws -> Outcome {
    let float = try PostTrainingQuantization.prepare(graph).graph
    let comparison = try OutputComparison(float: float, batches: heldOut, samples: samples)
    func measured(_ start: Double, _ result: QuantizationResult) throws -> Measurement {
      let m = try comparison.measure(result.graph)
      return Measurement(loss: m.loss, sqnr: m.sqnr, cosine: m.cosine, weightBits: result.weightStorageBits, seconds: monotonicSeconds() - start)
    }
    func measure(_ c: QuantConfig) throws -> (Measurement, QuantizationResult) {
      let start = monotonicSeconds()
      let result = try PostTrainingQuantization.quantize(graph, config: c, batches: calibration, memoryBudget: memoryBudget)
      return (try measured(start, result), result)
    }
    // Trials run at --effort fast (8+ bit weights rounded to nearest, fewer bits AdaRound capped
    // at its steps; no quantizer tuning), AdaRound's own trial with it on at those steps: they
    // rank fixes, and the recommendation is measured once more with the settings given.
    func trialSettings(_ c: QuantConfig, adaRound: Bool = false) -> QuantConfig {
      var t = Effort.fast.applied(to: c)
      if adaRound {
        t.adaRound = true
        t.adaRoundOptions.iterations = min(t.adaRoundOptions.iterations, Effort.fastAdaRoundIterations)
        t.adaRoundOptions.perChannelEightBitIterations = min(t.adaRoundOptions.perChannelEightBitIterations, Effort.fastAdaRoundIterations)
      }
      return t
    }
    // A fix of the activation quantizers alone (range method) keeps the best run's weights and
    // sets only the activations again.
    func recalibrated(_ c: QuantConfig, from best: QuantizationResult, only: Set<String>? = nil) throws -> (Measurement, QuantizationResult) {
      let start = monotonicSeconds()
      let result = try PostTrainingQuantization.recalibratingActivations(best, config: trialSettings(c), batches: calibration, only: only)
      return (try measured(start, result), result)
    }
    let fixes = QuantizationFix.candidates(for: config)
    var rejected: (fixes: [QuantizationFix], measurement: Measurement)?
    func count(_ kind: QuantizerSite.Kind) -> Int { Set(baselineResult?.sites.filter { $0.kind == kind }.map(\.name) ?? []).count }
    let widensWeights = config.quantizeWeights && config.weightBits < config.mixedPrecisionWeightBits
    let total = 2 + fixes.count + (config.quantizeActivations ? frontSizes(count(.activation)).count + 2 * rangeTrials : 0)
      + (widensWeights ? frontSizes(count(.weight)).count : 0)
    var done = 0
    func step(_ name: String) {
      done += 1
      progress?(name, done, total)
    }
    let baseline = try baselineResult.map { r in
      let m = try comparison.measure(r.graph)
      return Measurement(loss: m.loss, sqnr: m.sqnr, cosine: m.cosine, weightBits: r.weightStorageBits, seconds: r.steps.map(\.seconds).reduce(0, +))
    } ?? measure(config).0
    step("baseline")
    let (trialBaseline, trialResult) = try measure(trialSettings(config))
    var best = (config: config, measurement: trialBaseline, fixes: [QuantizationFix](), result: trialResult)
    step("baseline, trial settings")
    var trials: [Trial] = []
    // A trial of `fix` (configuration `c`): kept, in place of a kept fix it replaces (same kind,
    // same quantizer), when it lowers the best loss by more than the margin. Returns whether.
    @discardableResult
    func consider(_ fix: QuantizationFix, _ c: QuantConfig, _ outcome: (Measurement, QuantizationResult)) -> Bool {
      let (m, result) = outcome
      let kept = m.loss < best.measurement.loss * (1 - QuantizationFix.margin)
      if kept {
        best.fixes.removeAll { $0.kind == fix.kind && $0.quantizer == fix.quantizer }
        best = (c, m, best.fixes + [fix], result)
      }
      trials.append(Trial(fix: fix, measurement: m, kept: kept))
      step(fix.kind.rawValue)
      return kept
    }
    for fix in fixes {
      // A range method replaces the one kept before: try it on the configuration without it.
      let c = fix.applied(to: best.config)
      // A fix kept before made it moot, or it changes nothing the run does (CLE "off" where the
      // settings skip it anyway).
      guard c != best.config, fix.kind != .crossLayerEqualization || c.equalizesLayers != best.config.equalizesLayers else { continue }
      try consider(fix, c, fix.kind.activationsOnly ? recalibrated(c, from: best.result) : measure(trialSettings(c, adaRound: fix.kind == .adaRound)))
    }
    // The range method per quantizer: the activation quantizers whose quantization alone costs
    // the most (on the calibration data) each try the other methods on their own.
    // The ranking is measured once and kept for the front unless a fix of a range changed it.
    var ranking: [SensitivityRecord]?
    if config.quantizeActivations {
      ranking = try PostTrainingQuantization.activationSensitivity(best.result, batches: calibration)
      var changed = false
      for record in ranking!.prefix(rangeTrials) {
        guard let site = best.result.sites.first(where: { $0.name == record.name }) else { continue }
        for method in [RangeMethod.mse, .percentile, .minMax] where method != Calibration.method(for: site, best.config) {
          let fix = QuantizationFix(kind: .quantizerRange, rangeMethod: method, quantizer: record.name)
          let c = fix.applied(to: best.config)
          if try consider(fix, c, recalibrated(c, from: best.result, only: [record.name])) { changed = true }
        }
      }
      if changed { ranking = nil }
    }
    // A front: the configuration with the k most sensitive quantizers widened, per k; the recommendation takes the fewest that keep
    // 90% of the best gain among the points `allowed`, if that gain counts.
    func front(
      _ kind: QuantizationFix.Kind, sizes: [Int], since start: Double, allowed: (Trial) -> Bool,
      derive: (Int) throws -> QuantizationResult
    ) throws -> [Trial] {
      var points: [Trial] = [], results: [QuantizationResult] = []
      var start = start
      for k in sizes {
        let result = try derive(k)
        points.append(Trial(fix: QuantizationFix(kind: kind, quantizers: k), measurement: try measured(start, result), kept: false))
        results.append(result)
        start = monotonicSeconds()
        step(kind.rawValue)
      }
      let eligible = points.indices.filter { allowed(points[$0]) }
      let bestLoss = eligible.map { points[$0].measurement.loss }.min() ?? best.measurement.loss
      if bestLoss < best.measurement.loss * (1 - QuantizationFix.margin) {
        let target = best.measurement.loss - 0.9 * (best.measurement.loss - bestLoss)
        if let i = eligible.first(where: { points[$0].measurement.loss <= target }) {
          points[i].kept = true
          best = (points[i].fix.applied(to: best.config), points[i].measurement, best.fixes + [points[i].fix], results[i])
        }
      }
      return points
    }
    // Weights first (each sensitive layer's weights on a wider grid, within the size budget, a
    // whole trial run per point), then activations on top (ranked once, widened once, each
    // point derived from the best trial without a run).
    var weightFront: [Trial] = []
    if widensWeights {
      // Each point a whole trial run: AdaRound's rounding of a layer answers the quantized
      // inputs the layers before it give, so widening some layers in place of a run misleads.
      let baseConfig = best.config
      let budget = Double(trialResult.weightStorageBits) * sizeBudget
      let weightCount = Set(best.result.sites.filter { $0.kind == .weight && best.result.quantizers[$0.name] != nil }.map(\.name)).count
      weightFront = try front(.weightMixedPrecision, sizes: frontSizes(weightCount), since: monotonicSeconds(),
                              allowed: { Double($0.measurement.weightBits) <= budget }) { k in
        try PostTrainingQuantization.quantize(
          graph, config: trialSettings(QuantizationFix(kind: .weightMixedPrecision, quantizers: k).applied(to: baseConfig)),
          batches: calibration, memoryBudget: memoryBudget)
      }
    }
    if weightFront.contains(where: \.kept) { ranking = nil }  // other weights: measure it again
    var activationFront: [Trial] = []
    if config.quantizeActivations {
      let start = monotonicSeconds(), base = best.result, baseConfig = best.config
      let ranking = try ranking ?? PostTrainingQuantization.activationSensitivity(base, batches: calibration)
      let widened = try PostTrainingQuantization.widenedActivations(base, config: baseConfig, batches: calibration)
      activationFront = try front(.mixedPrecision, sizes: frontSizes(ranking.count), since: start, allowed: { ($0.fix.quantizers ?? 0) <= widenAtMost }) {
        try PostTrainingQuantization.mixingPrecision(base, count: $0, ranking: ranking, widened: widened, config: baseConfig)
      }
    }
    // With the settings given, the fixes must beat the options given, or none is recommended.
    var recommended = baseline
    if !best.fixes.isEmpty {
      let m = try measure(best.config).0
      if m.loss < baseline.loss {
        recommended = m
      } else {
        rejected = (best.fixes, m)
        best = (config, baseline, [], best.result)
      }
    }
    return Outcome(
      baseline: baseline, trialBaseline: trialBaseline, trials: trials, mixedPrecisionFront: activationFront, weightFront: weightFront,
      recommended: best.config, recommendedFixes: best.fixes, recommendedMeasurement: recommended,
      rejectedFixes: rejected?.fixes ?? [], rejectedMeasurement: rejected?.measurement)
  }
}
