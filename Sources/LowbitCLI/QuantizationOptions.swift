import ArgumentParser
import Foundation
import LowbitCore
import LowbitData
import LowbitQuant

/// The options that make a `QuantConfig`, shared by `lowbit ptq` and `lowbit debug`: each
/// overrides the --config file, which overrides the target's defaults.
struct QuantizationOptions: ParsableArguments {
  @Option(name: .customLong("w-bits"), help: "Weight bit width (2-16, default 8).")
  var weightBits: Int?

  @Option(name: .customLong("a-bits"), help: "Activation bit width (2-16, default 8).")
  var activationBits: Int?

  @Flag(help: "Per-output-channel weight scales.")
  var perChannel = false

  @Flag(inversion: .prefixedNo, help: ArgumentHelp(
    "Per-channel grids for activations that no Conv, Gemm or MatMul reads (residual sums, LayerNorm inputs; default: on where SmoothQuant runs).",
    discussion: "The values read only by Add, Sub, Mul, Div or LayerNormalization: in transformers the residual stream, whose few very large hidden dimensions one 8-bit grid cannot hold with the rest."))
  var perChannelActivations: Bool?

  @Flag(inversion: .prefixedNo, help: ArgumentHelp(
    "One grid per colour channel for an image input that only Convs read (default on).",
    discussion: "8-bit pixels normalized per channel lie on a different lattice in each channel; each channel's grid is put on its lattice, so the input is quantized without rounding noise. The first Conv then reads a per-channel grid, which runtimes dequantize."))
  var inputPerChannel: Bool?

  @Option(name: .customLong("w-range"), help: "Weight range setting: min-max or mse (default mse).")
  var weightRange: RangeMethod?

  @Option(name: .customLong("a-range"), help: "Activation range setting: min-max, running-min-max, percentile, mse, bn-based (default mse).")
  var activationRange: RangeMethod?

  @Option(name: .customLong("a-range-at"), help: ArgumentHelp("Range setting of one activation quantizer, VALUE=METHOD (the value it sits on, as --json's quantizers name it); repeatable.", valueName: "value=method"))
  var activationRangeAt: [String] = []

  @Option(help: "Range setting for the logits quantizer (default cross-entropy).")
  var logitsRange: RangeMethod?

  @Option(help: "Concat handling: requantize or shared-grid (default requantize).")
  var concat: ConcatMode?

  @Flag(name: .customLong("average-pool-keeps-grid"), inversion: .prefixedNo, help: "An AveragePool's output takes its input's grid (default: off, on for --target qnn).")
  var averagePoolKeepsGrid: Bool?

  @Flag(name: .customLong("cle"), inversion: .prefixedNo, help: "Cross-layer equalization (ReLU6 between equalized layers keeps its bound, per channel; with calibration data the scales are chosen for the weight and activation quantizers together). Default: on, except with per-channel weights of 8 bits or more.")
  var crossLayerEqualization: Bool?

  @Flag(name: .customLong("no-bias-absorption"), help: "Skip high-bias absorption (on by default).")
  var noBiasAbsorption = false

  @Flag(name: .customLong("adaround"), inversion: .prefixedNo, help: "AdaRound (on by default; --no-adaround rounds the weights GPTQ does not round to nearest; --adaround turns it back on after --range-setting-only).")
  var adaRound: Bool?

  @Flag(name: .customLong("gptq"), inversion: .prefixedNo, help: ArgumentHelp(
    "GPTQ for MatMul and Gemm weights (default: on for --weights-only at 4 bits and fewer).",
    discussion: "Second-order rounding from the calibration inputs' Hessian H = 2/n sum x^T x in the float model: row by row along the reduction axis, the rows not yet quantized absorb each row's error; per-group grids are fitted as each group starts. AdaRound leaves those layers alone. Kept only when the held-out calibration rows confirm it, unless given."))
  var gptq: Bool?

  @Option(name: .customLong("gptq-damping"), help: "GPTQ's dampening λ: H + λ mean(diag H) I (default 0.01).")
  var gptqDamping: Double?

  @Option(name: .customLong("gptq-block-size"), help: "GPTQ: rows quantized between lazy updates of the rest (default 128; the result does not depend on it).")
  var gptqBlockSize: Int?

  @Flag(name: .customLong("gptq-act-order"), inversion: .prefixedNo, help: "GPTQ: rows in order of descending diag H, on the grids range setting fitted to each group's original weights (static groups; default on). --no-gptq-act-order takes the rows in order and fits each group's grids to its weights as GPTQ has updated them.")
  var gptqActOrder: Bool?

  @Option(name: .customLong("gptq-mask-input"), help: "The model input [N, L] whose zeros mark token positions (padding) left out of GPTQ's Hessian, the activation ranges and migration's statistics (default attention_mask; '' for none).")
  var gptqMaskInput: String?

  @Option(help: ArgumentHelp(
    "Channel-scale migration before quantizer placement: smoothquant, awq or none (default: smoothquant for quantized activations in graphs with LayerNormalization, awq for --weights-only at 4 bits and fewer).",
    discussion: "y = x W = (x / s)(diag(s) W) per input channel of each MatMul/Gemm group: the float function is the same, the quantizers see x / s and diag(s) W. SmoothQuant takes s_j = max|x_j|^a / max|W_j|^(1-a), AWQ s_j = mean|x_j|^a; a from 0 to 1 (or s = 1) by the least layer output error on calibration rows. 1/s folds into the LayerNormalization before the group, else into a Mul before it."))
  var migration: MigrationMethod?

  @Flag(name: .customLong("rotation"), inversion: .prefixedNo, help: ArgumentHelp(
    "Online Hadamard rotation of linear layers' inputs where it lowers the layer output error (QuaRot; default: on where SmoothQuant runs, target ort).",
    discussion: "y = x W = (x R)(R W) with R block-diagonal Hadamard (blocks of up to 64 channels): the quantizers see x R, whose outlier channels are spread over their block, and R W. R W is folded into the weight; x R runs in float before the layer's input quantizer (Reshape, MatMul by the 64 x 64 block, Reshape). Tried per group of layers after channel-scale migration."))
  var rotation: Bool?

  @Flag(name: .customLong("embedding-tables"), inversion: .prefixedNo, help: ArgumentHelp(
    "Store embedding tables (float constants only Gathers read) as int8 rows with one scale each (default: on, target ort).",
    discussion: "s_v = max|T[v, :]| / 127 per row; the Gather reads the int8 table and dequantizes the rows it picks (Cast, Mul by the gathered scales)."))
  var embeddingTables: Bool?

  @Option(help: "Bias correction: auto (analytical without data, none after AdaRound, else empirical), empirical, analytical or none.")
  var biasCorrection: BiasCorrectionMode?

  @Flag(help: "Range setting only: no equalization, absorption, AdaRound, GPTQ, bias correction or quantizer tuning.")
  var rangeSettingOnly = false

  @Option(help: "Time for fidelity: fast (8-bit weights rounded to nearest with bias correction, lower widths 100 AdaRound steps; no quantizer tuning), default, or best (block AdaRound and quantizer tuning). Options given one by one override it.")
  var effort: Effort?

  @Option(name: .customLong("adaround-iterations"), help: "AdaRound steps per layer, for every weight grid (default 500; 150 for per-channel weights of 8 bits or more).")
  var adaRoundIterations: Int?

  @Option(name: .customLong("adaround-batch-size"), help: "AdaRound rows (conv output positions or samples) per step (default 512).")
  var adaRoundBatchSize: Int?

  @Option(name: .customLong("adaround-lr"), help: "Adam step size on AdaRound's rounding variables (default 0.2).")
  var adaRoundLearningRate: Float?

  @Option(name: .customLong("adaround-unit"), help: "What AdaRound optimizes at once: layer (one layer, the paper's) or block (the layers between single-value cuts together, BRECQ-style; falls back to layer when a block has an op without a gradient rule).")
  var adaRoundUnit: ReconstructionUnit?

  @Option(name: .customLong("adaround-block-batch-size"), help: "Block AdaRound: calibration samples per step (default 32).")
  var adaRoundBlockBatchSize: Int?

  @Option(name: .customLong("adaround-lambda"), help: "Weight of AdaRound's rounding regularizer (default 0.01).")
  var adaRoundLambda: Float?

  @Flag(inversion: .prefixedNo, help: "Quantizer tuning after range setting: scales and zero points trained end to end towards the float model's outputs on the calibration data, the weights' integers fixed (default: on when activations have fewer than 8 bits).")
  var tuneQuantizers: Bool?

  @Option(name: .customLong("tuning-iterations"), help: "Quantizer tuning: Adam steps (default 200).")
  var tuningIterations: Int?

  @Option(name: .customLong("tuning-lr"), help: "Quantizer tuning: Adam step size on the log of each scale (default 0.002).")
  var tuningLearningRate: Float?

  @Option(name: .customLong("mixed-precision"), help: "Mixed precision: measure each activation quantizer alone (the debugging flow's sensitivity) and give the N most sensitive --mixed-precision-bits bits (default 0: none).")
  var mixedPrecision: Int?

  @Option(name: .customLong("mixed-precision-bits"), help: "Bit width of the activations --mixed-precision raises (default 16; above 8 needs opset 21, chosen automatically).")
  var mixedPrecisionBits: Int?

  @Option(name: .customLong("mixed-precision-weights"), help: "Mixed precision for weights: measure each weight quantizer alone and give the N most sensitive --mixed-precision-weight-bits bits (default 0: none).")
  var mixedPrecisionWeights: Int?

  @Option(name: .customLong("mixed-precision-weight-bits"), help: "Bit width of the weights --mixed-precision-weights raises (default 8).")
  var mixedPrecisionWeightBits: Int?

  @Option(help: "Seed for AdaRound's sampling (default 0): the same seed gives the same file.")
  var seed: UInt64?

  @Flag(help: "Quantize the weights only (activations stay float). With --group-size, MatMul weights are written as ONNX Runtime's MatMulNBits (target ort): 4-bit weights an eighth of their float size, 2-bit ones a sixteenth, 3-bit ones in 4-bit fields (ONNX Runtime runs 2, 4 and 8 bits only); at 4 bits and fewer GPTQ rounds them (--no-gptq for AdaRound).")
  var weightsOnly = false

  @Flag(help: "Restrict scales to powers of two.")
  var powerOfTwo = false

  @Flag(help: "Symmetric activations (signed grid, zero point 0) instead of asymmetric.")
  var symmetricActivations = false

  @Option(help: "Per-group weights: this many input-channel weights share a scale (needs opset 21).")
  var groupSize: Int?

  @Option(help: "Opset of the written model (13-21; 21 allows int4/uint4 and int16/uint16).")
  var opset: Int?

  @Option(help: "The runtime the file is for: ort (default), openvino, tensorrt or qnn. Settings it cannot run with integer kernels are refused; the settings it requires are the defaults (tensorrt: symmetric activations, weights in [-127, 127], float biases; every target but ort: activations per tensor). See docs/deployment.md.")
  var target: DeploymentTarget?

  @Option(help: "A JSON QuantConfig file (see docs/configuration.md).")
  var config: String?

  @Option(name: .customLong("disable"), help: "Switch off the quantizer on this value (repeatable).")
  var disabled: [String] = []

  func validate() throws {
    for (name, bits) in [("--w-bits", weightBits), ("--a-bits", activationBits)] {
      if let b = bits, !IntegerGrid.supportedBits.contains(b) {
        throw ValidationError("\(name) \(b) is not supported: use 2 to 16")
      }
    }
  }

  func quantConfig() throws -> QuantConfig {
    var c = QuantConfig(target: target ?? .ort)
    if let path = config, let data = try configFile() {
      let decoder = JSONDecoder()
      if let target { decoder.userInfo[QuantConfig.targetOverride] = target }
      do {
        c = try decoder.decode(QuantConfig.self, from: data)
      } catch {
        throw LowbitError.invalidArgument("config file '\(path)' is not a valid QuantConfig: \(error)")
      }
    }
    if let v = weightBits { c.weightBits = v }
    if let v = activationBits { c.activationBits = v }
    for pair in activationRangeAt {
      guard let eq = pair.lastIndex(of: "="), let m = RangeMethod(rawValue: String(pair[pair.index(after: eq)...])), eq != pair.startIndex else {
        throw ValidationError("--a-range-at takes VALUE=METHOD with METHOD one of \(RangeMethod.allCases.map(\.rawValue).joined(separator: ", ")), got '\(pair)'")
      }
      c.activationRangeOverrides[String(pair[..<eq])] = m
    }
    if perChannel { c.perChannel = true }
    if let v = perChannelActivations { c.activationPerChannel = v }
    if let v = inputPerChannel { c.inputPerChannel = v }
    if let v = weightRange { c.weightRange = v }
    if let v = activationRange { c.activationRange = v }
    if let v = logitsRange { c.logitsRange = v }
    if let v = concat { c.concat = v }
    if let v = averagePoolKeepsGrid { c.averagePoolKeepsGrid = v }
    if let v = opset { c.opset = v }
    if powerOfTwo { c.powerOfTwo = true }
    if let e = effort { c = e.applied(to: c) }  // a preset for these bit widths: the options below override it
    if rangeSettingOnly { c.keepRangeSettingOnly() }
    if let v = crossLayerEqualization { c.crossLayerEqualization = v }
    if noBiasAbsorption { c.biasAbsorption = false }
    if let v = adaRound { c.adaRound = v }
    if let v = biasCorrection { c.biasCorrection = v }
    if let v = gptq { c.gptq = v }
    if let v = migration { c.migration = v }
    if let v = rotation { c.rotation = v }
    if let v = embeddingTables { c.embeddingTables = v }
    if let v = gptqDamping { c.gptqOptions.damping = v }
    if let v = gptqBlockSize { c.gptqOptions.blockSize = v }
    if let v = gptqActOrder { c.gptqOptions.actOrder = v }
    if let v = gptqMaskInput { c.gptqOptions.maskInput = v }
    if let v = adaRoundIterations { c.adaRoundOptions.setIterations(v) }
    if let v = adaRoundBatchSize { c.adaRoundOptions.batchSize = v }
    if let v = adaRoundLambda { c.adaRoundOptions.regularization = v }
    if let v = adaRoundLearningRate { c.adaRoundOptions.learningRate = v }
    if let v = adaRoundUnit { c.adaRoundOptions.unit = v }
    if let v = adaRoundBlockBatchSize { c.adaRoundOptions.blockBatchSize = v }
    if let v = seed { c.adaRoundOptions.seed = v; c.quantizerTuningOptions.seed = v }
    if let v = tuneQuantizers { c.quantizerTuning = v }
    if let v = tuningIterations { c.quantizerTuningOptions.iterations = v }
    if let v = tuningLearningRate { c.quantizerTuningOptions.learningRate = v }
    if let v = mixedPrecision { c.mixedPrecision = v }
    if let v = mixedPrecisionBits { c.mixedPrecisionBits = v }
    if let v = mixedPrecisionWeights { c.mixedPrecisionWeights = v }
    if let v = mixedPrecisionWeightBits { c.mixedPrecisionWeightBits = v }
    if symmetricActivations { c.activationSymmetric = true }
    if let v = groupSize { c.weightGroupSize = v }
    if weightsOnly { c.quantizeActivations = false }
    c.disabled += disabled
    try c.validate()
    return c
  }

  /// The bytes of the --config file, when one is given.
  func configFile() throws -> Data? { try config.map { try contents(of: $0, "config file") } }

  /// The bytes of the file at `path` (`what` names it in the error).
  func contents(of path: String, _ what: String) throws -> Data {
    guard let data = FileManager.default.contents(atPath: path) else { throw LowbitError.io("\(what) '\(path)' cannot be read") }
    return data
  }

  /// The `data` object of the --config file, overridden by the options given.
  func dataOptions(_ input: DataInputOptions) throws -> DataOptions {
    var o = DataOptions()
    if let path = config, let data = try configFile() {
      struct File: Decodable { var data: DataOptions? }
      do {
        o = try JSONDecoder().decode(File.self, from: data).data ?? o
      } catch {
        throw LowbitError.invalidArgument("config file '\(path)': its data object is not valid: \(error)")
      }
    }
    return o.overridden(by: try input.options())
  }
}
