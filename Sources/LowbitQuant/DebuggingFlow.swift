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

    /// Whether the fix changes the activation quantizers alone (a trial sets them again on the
    /// best run's weights).
    var activationsOnly: Bool { self == .activationRange || self == .mixedPrecision }
  }

  public var kind: Kind
  /// On or off, for the switches.
  public var enabled: Bool?
  public var rangeMethod: RangeMethod?
  public var biasCorrection: BiasCorrectionMode?
  /// Activation quantizers given `QuantConfig.mixedPrecisionBits` bits.
  public var quantizers: Int?

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
    public var recommended: QuantConfig
    public var recommendedFixes: [QuantizationFix]
    public var recommendedMeasurement: Measurement
    /// The fixes the trials kept when, measured with the settings given, they did not beat the
    /// options given (the recommendation is then the options given).
    public var rejectedFixes: [QuantizationFix]
    public var rejectedMeasurement: Measurement?
  }

  /// The most activation quantizers the recommendation widens unless told otherwise (the front
  /// shows them all).
  public static let defaultWidenAtMost = 8

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
    widenAtMost: Int = defaultWidenAtMost, progress: ((String, Int, Int) -> Void)? = nil
  ) throws -> Outcome {
    let float = try PostTrainingQuantization.prepare(graph).graph
    let comparison = try OutputComparison(float: float, batches: heldOut, samples: samples)
    func measured(_ start: Double, _ result: QuantizationResult) throws -> Measurement {
      let m = try comparison.measure(result.graph)
      return Measurement(loss: m.loss, sqnr: m.sqnr, cosine: m.cosine, seconds: monotonicSeconds() - start)
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
    func recalibrated(_ c: QuantConfig, from best: QuantizationResult) throws -> (Measurement, QuantizationResult) {
      let start = monotonicSeconds()
      let result = try PostTrainingQuantization.recalibratingActivations(best, config: trialSettings(c), batches: calibration)
      return (try measured(start, result), result)
    }
    let fixes = QuantizationFix.candidates(for: config)
    var rejected: (fixes: [QuantizationFix], measurement: Measurement)?
    let activationCount = config.quantizeActivations ? Set(baselineResult?.sites.filter { $0.kind == .activation }.map(\.name) ?? []).count : 0
    let total = 2 + fixes.count + (config.quantizeActivations ? frontSizes(activationCount).count + 1 : 0)
    var done = 0
    func step(_ name: String) {
      done += 1
      progress?(name, done, total)
    }
    let baseline = try baselineResult.map { r in
      let m = try comparison.measure(r.graph)
      return Measurement(loss: m.loss, sqnr: m.sqnr, cosine: m.cosine, seconds: r.steps.map(\.seconds).reduce(0, +))
    } ?? measure(config).0
    step("baseline")
    let (trialBaseline, trialResult) = try measure(trialSettings(config))
    var best = (config: config, measurement: trialBaseline, fixes: [QuantizationFix](), result: trialResult)
    step("baseline, trial settings")
    var trials: [Trial] = []
    for fix in fixes {
      // A range method replaces the one kept before: try it on the configuration without it.
      let c = fix.applied(to: best.config)
      guard c != best.config else { continue }  // a fix kept before made it moot
      let (m, result) = try fix.kind.activationsOnly ? recalibrated(c, from: best.result) : measure(trialSettings(c, adaRound: fix.kind == .adaRound))
      let kept = m.loss < best.measurement.loss * (1 - QuantizationFix.margin)
      if kept {
        best.fixes.removeAll { $0.kind == fix.kind }
        best = (c, m, best.fixes + [fix], result)
      }
      trials.append(Trial(fix: fix, measurement: m, kept: kept))
      step(fix.kind.rawValue)
    }
    var front: [Trial] = []
    if config.quantizeActivations {
      // Ranked once, every quantizer widened once: each point of the front takes its share.
      var start = monotonicSeconds()
      let ranking = try PostTrainingQuantization.activationSensitivity(best.result, batches: calibration)
      let widened = try PostTrainingQuantization.widenedActivations(best.result, config: best.config, batches: calibration)
      step("sensitivity")
      for k in frontSizes(ranking.count) {
        let fix = QuantizationFix(kind: .mixedPrecision, quantizers: k)
        let result = try PostTrainingQuantization.mixingPrecision(
          best.result, count: k, ranking: ranking, widened: widened, config: best.config)
        front.append(Trial(fix: fix, measurement: try measured(start, result), kept: false))
        start = monotonicSeconds()
        step("mixed precision")
      }
      // Within the budget, the fewest widened quantizers that keep 90% of the best gain there,
      // if that gain counts.
      let bestLoss = front.filter { ($0.fix.quantizers ?? 0) <= widenAtMost }.map(\.measurement.loss).min() ?? best.measurement.loss
      if bestLoss < best.measurement.loss * (1 - QuantizationFix.margin) {
        let target = best.measurement.loss - 0.9 * (best.measurement.loss - bestLoss)
        if let i = front.firstIndex(where: { $0.measurement.loss <= target && ($0.fix.quantizers ?? 0) <= widenAtMost }) {
          front[i].kept = true
          best = (front[i].fix.applied(to: best.config), front[i].measurement, best.fixes + [front[i].fix], best.result)
        }
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
      baseline: baseline, trialBaseline: trialBaseline, trials: trials, mixedPrecisionFront: front,
      recommended: best.config, recommendedFixes: best.fixes, recommendedMeasurement: recommended,
      rejectedFixes: rejected?.fixes ?? [], rejectedMeasurement: rejected?.measurement)
  }
}
