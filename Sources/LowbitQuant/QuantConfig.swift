import LowbitCore

/// How a Concat's inputs are quantized.
public enum ConcatMode: String, Sendable, Codable, CaseIterable {
  /// Each input keeps its own grid; one quantizer after the Concat requantizes the result.
  case requantize
  /// All inputs share one grid (the union of their ranges), so the Concat output is on that grid.
  case sharedGrid = "shared-grid"
}

/// Which bias correction the PTQ pipeline applies (white paper sec. 3.3).
public enum BiasCorrectionMode: String, Sendable, Codable, CaseIterable {
  /// Analytical without calibration data; none after AdaRound; empirical when data is given
  /// and AdaRound is off.
  case auto
  /// `b <- b - (E[W_hat x_hat] - E[W x])` per output channel, measured layer by layer.
  case empirical
  /// Data-free: `b <- b - (W_hat - W) E[x]` with `E[x]` from the BatchNorm statistics.
  case analytical
  case none

  /// The mode `auto` stands for, given whether there is data and whether AdaRound runs.
  public func resolved(hasData: Bool, adaRound: Bool) -> BiasCorrectionMode {
    guard self == .auto else { return self }
    if !hasData { return .analytical }
    return adaRound ? .none : .empirical
  }
}

/// Everything that decides how a model is quantized. Validated by `validate()`; read from JSON
/// with `--config` (every field optional there, defaults below).
public struct QuantConfig: Sendable, Equatable, Codable {
  /// Weight bit width, 2...16 (default 8).
  public var weightBits = 8
  /// Activation bit width, 2...16 (default 8).
  public var activationBits = 8
  /// Per-output-channel weight quantization (default per-tensor).
  public var perChannel = false
  /// Blocks of this many input-channel weights share a grid (per-group); nil for none.
  public var weightGroupSize: Int?
  /// Symmetric weights (z = 0, signed grid) as set; nil (the default) for `weightSymmetric`'s rule.
  public var symmetricWeights: Bool?
  /// Symmetric weights (z = 0, signed grid): as set, else true (the paper's hardware argument)
  /// but for weight-only per-group grids of 3 bits and fewer for ONNX Runtime, asymmetric: its
  /// MatMulNBits computes in float with a zero point per block either way, and a signed 2-bit
  /// grid `{-2, -1, 0, 1} s` spends a level on one side only. On MiniLM (2,000 held-out
  /// sentences, `benchmarks/results/weight_only_low_bits.json`) asymmetric grids lifted the mean
  /// embedding cosine at 2 bits, groups of 32, from 0.529 to 0.660 (round to nearest) and at 3
  /// bits from 0.879 to 0.900 (GPTQ 0.952 to 0.962), for 2 or 3 more bits per group.
  public var weightSymmetric: Bool {
    get { symmetricWeights ?? !(quantizeWeights && !quantizeActivations && weightGroupSize != nil && weightBits <= 3 && target == .ort) }
    set { symmetricWeights = newValue }
  }
  /// Symmetric activations (default false: asymmetric, unsigned grid).
  public var activationSymmetric = false
  /// Per-channel grids for the activations that no reader contracts over their channel axis
  /// (`QuantizerPlacement.channelwiseReaders`: residual sums, LayerNorm inputs, the values added
  /// into them), one grid per channel as for weights; inputs of Conv, Gemm and MatMul stay per
  /// tensor. nil (default) turns them on where SmoothQuant runs (`activationPerChannelInUse`).
  public var activationPerChannel: Bool?
  /// One grid per channel for a model input that only Convs read (an image: its colour channels,
  /// normalized by different means and standard deviations, lie on different lattices that one
  /// grid cannot hold; `QuantizerPlacement.inputChannelAxis`). A runtime dequantizes such an input
  /// to run the first Conv; `false` keeps every activation per tensor (default true).
  public var inputPerChannel = true
  /// Scales restricted to powers of two (default false).
  public var powerOfTwo = false
  /// Range setting for weights (default MSE).
  public var weightRange: RangeMethod = .mse
  /// Range setting for activations (default MSE).
  public var activationRange: RangeMethod = .mse
  /// Range setting for the quantizer on the logits (the graph output), default cross-entropy.
  public var logitsRange: RangeMethod = .crossEntropy
  /// Percentile for the percentile method, in percent (default 99.99).
  public var percentile = 99.99
  /// Concat handling (default requantize).
  public var concat: ConcatMode = .requantize
  /// An AveragePool's output quantizer takes its input's grid (default false; on for target qnn,
  /// whose runtime wants one encoding on both sides, as aimet-onnx ties them).
  public var averagePoolKeepsGrid = false
  /// Quantize weights at all (default true).
  public var quantizeWeights = true
  /// Quantize activations at all (default true).
  public var quantizeActivations = true
  /// Quantizers switched off by name (the value name a quantizer sits on).
  public var disabled: [String] = []
  /// Range setting per activation quantizer by name, in place of `activationRange` (or
  /// `logitsRange` on the logits): the debugging flow's fix of one quantizer's range.
  public var activationRangeOverrides: [String: RangeMethod] = [:]
  /// Opset of the written model; nil picks max(model's, 13), or 21 when a bit width needs it.
  public var opset: Int?
  /// Cross-layer equalization before placing quantizers (white paper sec. 3.2); nil (default)
  /// runs it except with per-channel weights of 8 bits or more (`equalizesLayers`).
  public var crossLayerEqualization: Bool?
  /// High-bias absorption after equalization (sec. 3.2; default on).
  public var biasAbsorption = true
  /// AdaRound for the weights when calibration data is given (sec. 3.4; default on).
  public var adaRound = true
  /// AdaRound's settings (see `AdaRoundOptions` for the defaults).
  public var adaRoundOptions = AdaRoundOptions()
  /// GPTQ for MatMul and Gemm weights when calibration data is given (`GPTQ`; the layers it
  /// rounds are left out of AdaRound); nil (default) runs it for weight-only quantization at 4
  /// bits and fewer and in transformers (`gptqInUse(for:)`).
  public var gptq: Bool?
  /// GPTQ's settings (see `GPTQOptions` for the defaults).
  public var gptqOptions = GPTQOptions()
  /// Channel-scale migration between linear layers' inputs and weights before quantizer
  /// placement (`ChannelScaleMigration`); nil (default) picks by `migrationInUse(for:)`.
  public var migration: MigrationMethod?
  /// Whether migration also tries an online Hadamard rotation of each group's input
  /// (`HadamardRotation`), kept per group where it lowers the layer output error; nil (default)
  /// picks by `rotationInUse(for:)`.
  public var rotation: Bool?
  /// Embedding tables (float constants read only by Gathers) stored as int8 rows with one scale
  /// each (`EmbeddingTables`), where weights are quantized. On by default (target ort); the
  /// other targets' presets keep the tables float.
  public var embeddingTables = true
  /// Bias correction (sec. 3.3; default auto: analytical without data, none after AdaRound).
  public var biasCorrection: BiasCorrectionMode = .auto
  /// Quantizer tuning after range setting, when calibration data is given (`QuantizerTuning`);
  /// nil (default) runs it when activations have fewer than 8 bits, where it pays for its time.
  public var quantizerTuning: Bool?
  /// Quantizer tuning's settings (see `QuantizerTuningOptions` for the defaults).
  public var quantizerTuningOptions = QuantizerTuningOptions()
  /// Mixed precision: this many activation quantizers, the most sensitive first
  /// (`ActivationSensitivity`), get `mixedPrecisionBits` (default 0: every activation at
  /// `activationBits`).
  public var mixedPrecision = 0
  /// The bit width of the activations mixed precision raises (default 16).
  public var mixedPrecisionBits = 16
  /// Mixed precision for weights: this many weight quantizers, the most sensitive first (the
  /// output loss with each weight alone quantized, `ActivationSensitivity.measure(kind: .weight)`),
  /// get `mixedPrecisionWeightBits` (default 0: every weight at `weightBits`).
  public var mixedPrecisionWeights = 0
  /// The bit width of the weights mixed precision raises (default 8).
  public var mixedPrecisionWeightBits = 8
  /// The runtime the file is written for (default ort): `validate()` refuses what it cannot run,
  /// and the fields it constrains default to what it requires (`DeploymentTarget.preset`).
  public var target: DeploymentTarget = .ort
  /// Signed weight grids without their lowest integer, `[-(2^(b-1) - 1), 2^(b-1) - 1]` (default
  /// false; TensorRT's INT8 weights).
  public var weightNarrowRange = false
  /// Conv/Gemm biases stored as int32 at scale `s_w s_x` where the weight and the input are
  /// quantized (default true; TensorRT keeps them float).
  public var integerBiases = true

  /// The defaults, with those `target` requires.
  public init(target: DeploymentTarget = .ort) {
    self.target = target
    target.preset(&self)
  }

  /// `JSONDecoder.userInfo` key: a `DeploymentTarget` that overrides the file's `target` (the
  /// command line's `--target`), so the fields the file leaves out take that target's defaults.
  public static let targetOverride = CodingUserInfoKey(rawValue: "lowbit.target")!

  /// Range setting only: the defaults without cross-layer equalization, bias absorption,
  /// AdaRound or bias correction (the white paper's "PTQ with range setting" baseline).
  public static var rangeSettingOnly: QuantConfig {
    var c = QuantConfig()
    c.keepRangeSettingOnly()
    return c
  }

  /// Switches off every step but range setting (see `rangeSettingOnly`).
  public mutating func keepRangeSettingOnly() {
    crossLayerEqualization = false
    biasAbsorption = false
    adaRound = false
    gptq = false
    migration = MigrationMethod.none
    biasCorrection = .none
    quantizerTuning = false
  }

  enum CodingKeys: String, CodingKey {
    case weightBits = "weight_bits", activationBits = "activation_bits", perChannel = "per_channel"
    case weightGroupSize = "weight_group_size", symmetricWeights = "weight_symmetric"
    case activationSymmetric = "activation_symmetric", powerOfTwo = "power_of_two"
    case activationPerChannel = "activation_per_channel", inputPerChannel = "input_per_channel"
    case weightRange = "weight_range", activationRange = "activation_range", logitsRange = "logits_range"
    case percentile, concat, disabled, opset, averagePoolKeepsGrid = "average_pool_keeps_grid"
    case activationRangeOverrides = "activation_range_overrides"
    case crossLayerEqualization = "cross_layer_equalization", biasAbsorption = "bias_absorption"
    case adaRound = "adaround", adaRoundOptions = "adaround_options", biasCorrection = "bias_correction"
    case gptq, gptqOptions = "gptq_options", migration, rotation, embeddingTables = "embedding_tables"
    case quantizeWeights = "quantize_weights", quantizeActivations = "quantize_activations"
    case quantizerTuning = "quantizer_tuning", quantizerTuningOptions = "quantizer_tuning_options"
    case mixedPrecision = "mixed_precision", mixedPrecisionBits = "mixed_precision_bits"
    case mixedPrecisionWeights = "mixed_precision_weights", mixedPrecisionWeightBits = "mixed_precision_weight_bits"
    case target, weightNarrowRange = "weight_narrow_range", integerBiases = "integer_biases"
  }

  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    let target = try (decoder.userInfo[QuantConfig.targetOverride] as? DeploymentTarget)
      ?? c.decodeIfPresent(DeploymentTarget.self, forKey: .target) ?? .ort
    let d = QuantConfig(target: target)
    self.target = target
    weightNarrowRange = try c.decodeIfPresent(Bool.self, forKey: .weightNarrowRange) ?? d.weightNarrowRange
    integerBiases = try c.decodeIfPresent(Bool.self, forKey: .integerBiases) ?? d.integerBiases
    weightBits = try c.decodeIfPresent(Int.self, forKey: .weightBits) ?? d.weightBits
    activationBits = try c.decodeIfPresent(Int.self, forKey: .activationBits) ?? d.activationBits
    activationPerChannel = try c.decodeIfPresent(Bool.self, forKey: .activationPerChannel) ?? d.activationPerChannel
    inputPerChannel = try c.decodeIfPresent(Bool.self, forKey: .inputPerChannel) ?? d.inputPerChannel
    perChannel = try c.decodeIfPresent(Bool.self, forKey: .perChannel) ?? d.perChannel
    weightGroupSize = try c.decodeIfPresent(Int.self, forKey: .weightGroupSize)
    symmetricWeights = try c.decodeIfPresent(Bool.self, forKey: .symmetricWeights)
    activationSymmetric = try c.decodeIfPresent(Bool.self, forKey: .activationSymmetric) ?? d.activationSymmetric
    powerOfTwo = try c.decodeIfPresent(Bool.self, forKey: .powerOfTwo) ?? d.powerOfTwo
    weightRange = try c.decodeIfPresent(RangeMethod.self, forKey: .weightRange) ?? d.weightRange
    activationRange = try c.decodeIfPresent(RangeMethod.self, forKey: .activationRange) ?? d.activationRange
    logitsRange = try c.decodeIfPresent(RangeMethod.self, forKey: .logitsRange) ?? d.logitsRange
    percentile = try c.decodeIfPresent(Double.self, forKey: .percentile) ?? d.percentile
    concat = try c.decodeIfPresent(ConcatMode.self, forKey: .concat) ?? d.concat
    averagePoolKeepsGrid = try c.decodeIfPresent(Bool.self, forKey: .averagePoolKeepsGrid) ?? d.averagePoolKeepsGrid
    quantizeWeights = try c.decodeIfPresent(Bool.self, forKey: .quantizeWeights) ?? d.quantizeWeights
    quantizeActivations = try c.decodeIfPresent(Bool.self, forKey: .quantizeActivations) ?? d.quantizeActivations
    disabled = try c.decodeIfPresent([String].self, forKey: .disabled) ?? d.disabled
    activationRangeOverrides = try c.decodeIfPresent([String: RangeMethod].self, forKey: .activationRangeOverrides) ?? d.activationRangeOverrides
    opset = try c.decodeIfPresent(Int.self, forKey: .opset)
    crossLayerEqualization = try c.decodeIfPresent(Bool.self, forKey: .crossLayerEqualization)
    biasAbsorption = try c.decodeIfPresent(Bool.self, forKey: .biasAbsorption) ?? d.biasAbsorption
    adaRound = try c.decodeIfPresent(Bool.self, forKey: .adaRound) ?? d.adaRound
    adaRoundOptions = try c.decodeIfPresent(AdaRoundOptions.self, forKey: .adaRoundOptions) ?? d.adaRoundOptions
    gptq = try c.decodeIfPresent(Bool.self, forKey: .gptq)
    gptqOptions = try c.decodeIfPresent(GPTQOptions.self, forKey: .gptqOptions) ?? d.gptqOptions
    migration = try c.decodeIfPresent(MigrationMethod.self, forKey: .migration)
    rotation = try c.decodeIfPresent(Bool.self, forKey: .rotation) ?? d.rotation
    embeddingTables = try c.decodeIfPresent(Bool.self, forKey: .embeddingTables) ?? d.embeddingTables
    biasCorrection = try c.decodeIfPresent(BiasCorrectionMode.self, forKey: .biasCorrection) ?? d.biasCorrection
    quantizerTuning = try c.decodeIfPresent(Bool.self, forKey: .quantizerTuning)
    quantizerTuningOptions = try c.decodeIfPresent(QuantizerTuningOptions.self, forKey: .quantizerTuningOptions)
      ?? d.quantizerTuningOptions
    mixedPrecision = try c.decodeIfPresent(Int.self, forKey: .mixedPrecision) ?? d.mixedPrecision
    mixedPrecisionBits = try c.decodeIfPresent(Int.self, forKey: .mixedPrecisionBits) ?? d.mixedPrecisionBits
    mixedPrecisionWeights = try c.decodeIfPresent(Int.self, forKey: .mixedPrecisionWeights) ?? d.mixedPrecisionWeights
    mixedPrecisionWeightBits = try c.decodeIfPresent(Int.self, forKey: .mixedPrecisionWeightBits) ?? d.mixedPrecisionWeightBits
  }

  /// Throws `invalidArgument` saying what is allowed, for the first field out of range.
  public func validate() throws {
    let bits = IntegerGrid.supportedBits
    guard bits.contains(weightBits) else {
      throw LowbitError.invalidArgument("weight bits \(weightBits) are not supported: use \(bits.lowerBound) to \(bits.upperBound)")
    }
    guard bits.contains(activationBits) else {
      throw LowbitError.invalidArgument("activation bits \(activationBits) are not supported: use \(bits.lowerBound) to \(bits.upperBound)")
    }
    if let g = weightGroupSize, g < 1 { throw LowbitError.invalidArgument("weight group size must be positive, got \(g)") }
    guard percentile > 0 && percentile <= 100 else {
      throw LowbitError.invalidArgument("percentile must be in (0, 100], got \(percentile)")
    }
    if let o = opset, !(13...21).contains(o) {
      throw LowbitError.invalidArgument("output opset \(o) is not supported: use 13 to 21 (per-axis QDQ needs 13, 4- and 16-bit types need 21)")
    }
    guard mixedPrecision >= 0 else { throw LowbitError.invalidArgument("mixed precision needs a count of 0 or more quantizers, got \(mixedPrecision)") }
    guard bits.contains(mixedPrecisionBits) else {
      throw LowbitError.invalidArgument("mixed precision bits \(mixedPrecisionBits) are not supported: use \(bits.lowerBound) to \(bits.upperBound)")
    }
    guard mixedPrecisionWeights >= 0 else {
      throw LowbitError.invalidArgument("weight mixed precision needs a count of 0 or more quantizers, got \(mixedPrecisionWeights)")
    }
    guard bits.contains(mixedPrecisionWeightBits) else {
      throw LowbitError.invalidArgument("weight mixed precision bits \(mixedPrecisionWeightBits) are not supported: use \(bits.lowerBound) to \(bits.upperBound)")
    }
    if let o = opset, o < 21, weightBits > 8 || activationBits > 8 || raisesAbove8Bits {
      throw LowbitError.invalidArgument("bit widths above 8 need 16-bit integer types: use opset 21")
    }
    if weightRange == .crossEntropy || weightRange == .bnBased {
      throw LowbitError.invalidArgument("weight range '\(weightRange.rawValue)' applies to activations only: use min-max or mse")
    }
    try adaRoundOptions.validate()
    try quantizerTuningOptions.validate()
    try gptqOptions.validate()
    if weightGroupSize != nil && (opset ?? 21) < 21 {
      throw LowbitError.invalidArgument("per-group weights need blocked QuantizeLinear: use opset 21")
    }
    let refused = target.violations(of: self)
    if !refused.isEmpty {
      throw LowbitError.invalidArgument("target \(target.rawValue) cannot run these settings: " + refused.joined(separator: "; "))
    }
  }

  /// The opset of the written model for a model of opset `modelOpset`: as set, else 21 when a
  /// quantizer needs its types (4-bit integers, stored two per byte; 16-bit ones; blocked
  /// QuantizeLinear for per-group weights), else the model's and at least 13 (per-axis QDQ).
  public func outputOpset(modelOpset: Int) -> Int {
    if let o = opset { return o }
    if needsOpset21 { return max(modelOpset, 21) }
    return max(modelOpset, 13)
  }

  /// Whether some quantizer's integers need opset 21: 4-bit weights (int4, two per byte),
  /// 16-bit types, blocked QuantizeLinear (activations of 4 bits and fewer sit in 8-bit types).
  var needsOpset21: Bool {
    (quantizeWeights && (weightBits <= 4 || weightBits > 8)) || (quantizeActivations && activationBits > 8)
      || raisesAbove8Bits || weightGroupSize != nil
  }

  /// Whether mixed precision gives some activations more than 8 bits (16-bit types: opset 21).
  var raisesAbove8Bits: Bool {
    (mixedPrecision > 0 && quantizeActivations && mixedPrecisionBits > 8)
      || (mixedPrecisionWeights > 0 && quantizeWeights && mixedPrecisionWeightBits > 8)
  }

  /// Whether cross-layer equalization runs: as set, else unless the weights are per channel with
  /// 8 bits or more. CLE makes the per-channel weight ranges of a pair equal, which per-tensor
  /// weights need (table 3); per-channel weights have a grid per channel already, and the
  /// rescaled activation between the pair can take a wider range. Measured with AdaRound on 11
  /// models with equalizable pairs (held-out KL or output MSE): at per-channel W8A8 skipping it
  /// won on 9 (geometric mean -8%, a U-Net -24 to -36%) and tied on 2; at per-channel W4A8 it
  /// was a tie on average (-70% to +100% per model), so 4-bit weights keep it.
  /// The quantizers cross-layer equalization chooses its scales for.
  public var equalizationTarget: EqualizationTarget {
    EqualizationTarget(weightBits: weightBits, activationBits: quantizeActivations ? activationBits : 32, perChannel: perChannel,
                       weightNoiseFactor: adaRound ? EqualizationTarget.learnedRoundingNoise : 1)
  }

  public var equalizesLayers: Bool { crossLayerEqualization ?? !(perChannel && weightBits >= 8) }

  /// Whether quantizer tuning runs (given calibration data): as set, else when activations are
  /// quantized to fewer than 8 bits, or when the weights are quantized per tensor (one scale per
  /// layer, which tuning moves towards the model's outputs). Tuning keeps its result only when
  /// the held-out calibration rows show a gain beyond their noise, so where range setting is
  /// already close the file is the range-set one (docs/ptq-pipeline.md gives the figures).
  public var runsQuantizerTuning: Bool {
    quantizerTuning ?? ((quantizeActivations && activationBits < 8) || perTensorWeights)
  }

  /// Whether GPTQ runs on `graph` (given calibration data): as set, else for weight-only
  /// quantization (activations float) at 4 bits and fewer, where it follows the float model more
  /// closely than round to nearest and AdaRound, and in place of AdaRound for the per-channel or
  /// grouped MatMul and Gemm weights of a transformer (a graph with LayerNormalization) whose
  /// activations are quantized: one Hessian and one pass per layer instead of AdaRound's
  /// iterations (per-tensor weights keep AdaRound: on MiniLM the end-to-end check undid GPTQ's
  /// rounding on one grid per tensor).
  public func gptqInUse(for graph: Graph) -> Bool {
    if let gptq { return gptq }
    guard quantizeWeights else { return false }
    if !quantizeActivations { return weightBits <= 4 }
    return adaRound && !perTensorWeights && graph.nodes.contains { $0.opType == "LayerNormalization" }
  }

  /// The channel-scale migration a run on `graph` uses: as set, else SmoothQuant when
  /// activations are quantized in a graph with LayerNormalization (a transformer, whose residual
  /// stream carries a few outlier channels into its MatMuls' inputs), AWQ for weight-only
  /// quantization at 4 bits and fewer, none otherwise.
  public func migrationInUse(for graph: Graph) -> MigrationMethod {
    if let migration { return migration }
    guard quantizeWeights, graph.nodes.contains(where: { $0.opType == "MatMul" }) else { return .none }
    if !quantizeActivations { return weightBits <= 4 ? .awq : .none }
    return graph.nodes.contains { $0.opType == "LayerNormalization" } ? .smoothQuant : .none
  }

  /// Whether migration tries the online Hadamard rotation on `graph`: as set, else where
  /// SmoothQuant runs (a transformer with quantized activations); the integer-accelerator targets
  /// set it off, as the rotation runs as a float MatMul before the layer's input quantizer.
  /// `benchmarks/bench_minilm.py` measures it (the `-norot` rows).
  public func rotationInUse(for graph: Graph) -> Bool {
    rotation ?? (migrationInUse(for: graph) == .smoothQuant)
  }

  /// Whether the activations no layer reads take one grid per channel on `graph`: as set, else
  /// where SmoothQuant runs (a transformer with quantized activations). SmoothQuant moves the
  /// outlier channels out of the MatMuls' inputs; the residual stream keeps them, and per-channel
  /// grids there are the paper's per-embedding-group ranges at their finest (docs/ptq-pipeline.md;
  /// `benchmarks/bench_minilm.py` measures each part).
  public func activationPerChannelInUse(for graph: Graph) -> Bool {
    activationPerChannel ?? (migrationInUse(for: graph) == .smoothQuant)
  }

  /// Whether every weight has one grid per tensor.
  var perTensorWeights: Bool { quantizeWeights && !perChannel && weightGroupSize == nil }

  /// The quantizer tuning settings a run uses: as set, except that when tuning is on only for
  /// per-tensor weights (8-bit activations or more) and its settings are the defaults, it takes
  /// `QuantizerTuningOptions.light` (at 8 bits the scales move little; 1/8 of the default's work).
  public var quantizerTuningInUse: QuantizerTuningOptions {
    var defaults = QuantizerTuningOptions()
    defaults.seed = quantizerTuningOptions.seed
    let onlyForWeights = quantizerTuning == nil && !(quantizeActivations && activationBits < 8)
    guard onlyForWeights, quantizerTuningOptions == defaults else { return quantizerTuningOptions }
    var light = QuantizerTuningOptions.light
    light.seed = quantizerTuningOptions.seed
    return light
  }

  /// The AdaRound settings a run uses: `adaRoundOptions`, with `perChannelEightBitIterations`
  /// steps per layer when the weights have a grid per channel (or group) of 8 bits or more.
  public var adaRoundInUse: AdaRoundOptions {
    var o = adaRoundOptions
    if quantizeWeights && !perTensorWeights && weightBits >= 8 { o.iterations = o.perChannelEightBitIterations }
    return o
  }

  /// Weight grid: signed when symmetric.
  public var weightGrid: IntegerGrid { IntegerGrid(bits: weightBits, signed: weightSymmetric, narrow: weightNarrowRange) }
  /// Activation grid: unsigned unless symmetric.
  public var activationGrid: IntegerGrid { IntegerGrid(bits: activationBits, signed: activationSymmetric) }
}
