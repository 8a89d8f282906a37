import ArgumentParser
import Foundation
import LowbitCore
import LowbitData
import LowbitONNX
import LowbitQuant
import LowbitReport

extension RangeMethod: ExpressibleByArgument {}
extension ConcatMode: ExpressibleByArgument {}
extension BiasCorrectionMode: ExpressibleByArgument {}
extension DeploymentTarget: ExpressibleByArgument {}
extension AIMETEncodings.Version: ExpressibleByArgument {}
extension ReconstructionUnit: ExpressibleByArgument {}
extension Effort: ExpressibleByArgument {}

/// `lowbit ptq`: post-training quantization to a QDQ ONNX file.
struct PTQCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "ptq",
    abstract: "Quantize a float model after training and write it as a QDQ ONNX file.",
    discussion: """
      Runs the white paper's standard PTQ pipeline (fig. 8): BatchNorm folding, cross-layer \
      equalization with high-bias absorption, quantizer placement, MSE weight ranges, AdaRound \
      on the calibration data, bias correction where it applies, MSE activation ranges \
      (cross-entropy for the logits); then writes QuantizeLinear/DequantizeLinear pairs that \
      ONNX Runtime runs. Each step can be switched off (--no-cle, --no-bias-absorption, \
      --no-adaround, --bias-correction none); --range-setting-only keeps just the ranges. \
      The log shows every step with its time. Options given on the command line override the \
      --config file.
      """)

  @Argument(help: "The float ONNX model.")
  var model: String

  @Option(help: "Calibration data spec, e.g. fashion-mnist:train or npy:calib.npy (not with --load-encodings).")
  var calib: String?

  @Option(name: .shortAndLong, help: "The quantized ONNX file to write.")
  var output: String

  @Option(name: .customLong("w-bits"), help: "Weight bit width (2-16, default 8).")
  var weightBits: Int?

  @Option(name: .customLong("a-bits"), help: "Activation bit width (2-16, default 8).")
  var activationBits: Int?

  @Flag(help: "Per-output-channel weight scales.")
  var perChannel = false

  @Flag(help: ArgumentHelp(
    "Per-channel grids for activations that no Conv, Gemm or MatMul reads (residual sums, LayerNorm inputs).",
    discussion: "The values read only by Add, Sub, Mul, Div or LayerNormalization: in transformers the residual stream, whose few very large hidden dimensions one 8-bit grid cannot hold with the rest."))
  var perChannelActivations = false

  @Flag(inversion: .prefixedNo, help: ArgumentHelp(
    "One grid per colour channel for an image input that only Convs read (default on).",
    discussion: "8-bit pixels normalized per channel lie on a different lattice in each channel; each channel's grid is put on its lattice, so the input is quantized without rounding noise. The first Conv then reads a per-channel grid, which runtimes dequantize."))
  var inputPerChannel: Bool?

  @Option(name: .customLong("w-range"), help: "Weight range setting: min-max or mse (default mse).")
  var weightRange: RangeMethod?

  @Option(name: .customLong("a-range"), help: "Activation range setting: min-max, running-min-max, percentile, mse, bn-based (default mse).")
  var activationRange: RangeMethod?

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

  @Flag(name: .customLong("no-adaround"), help: "Round weights to nearest instead of AdaRound (AdaRound is on by default).")
  var noAdaRound = false

  @Option(help: "Bias correction: auto (analytical without data, none after AdaRound, else empirical), empirical, analytical or none.")
  var biasCorrection: BiasCorrectionMode?

  @Flag(help: "Range setting only: no equalization, absorption, AdaRound, bias correction or quantizer tuning.")
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

  @Option(help: "Seed for AdaRound's sampling (default 0): the same seed gives the same file.")
  var seed: UInt64?

  @Flag(help: "Quantize the weights only (activations stay float). With --group-size, MatMul weights are written as ONNX Runtime's MatMulNBits (target ort), 4-bit weights an eighth of their float size.")
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

  @Option(help: "Calibration samples to use (default 1024, or all when fewer).")
  var calibSize = 1024

  @Option(help: "Samples per batch for calibration and evaluation.")
  var batchSize = 32

  @Option(help: "GiB AdaRound and bias correction may hold calibration values in (default 6); past it they keep the first batches that fit, and the log says so.")
  var memoryBudget: Double = PostTrainingQuantization.defaultMemoryBudget / 1_073_741_824

  @Option(help: "Evaluation data: report FP32 and quantized accuracy (or SQNR and cosine without labels).")
  var eval: String?

  @Option(help: "Write a JSON report to this file.")
  var json: String?

  @Option(name: .customLong("disable"), help: "Switch off the quantizer on this value (repeatable).")
  var disabled: [String] = []

  @Option(help: ArgumentHelp(
    "Also write the hand-over to Qualcomm's toolchain: PREFIX.encodings (every quantizer in AIMET's encodings format) and PREFIX.onnx (the float model they apply to: BatchNorm folded, equalized, AdaRound's weights, corrected biases).",
    valueName: "prefix"))
  var encodings: String?

  @Option(help: "AIMET encodings version to write: 0.6.1, 1.0.0 (default) or 2.0.0.")
  var encodingsVersion: AIMETEncodings.Version = .v1_0_0

  @Option(help: ArgumentHelp(
    "Quantize with the grids of an AIMET encodings file (0.6.1, 1.0.0 or 2.0.0; lowbit's --encodings or aimet-onnx's) instead of calibrating: writes the QDQ file of the model and those quantizers.",
    valueName: "file"))
  var loadEncodings: String?

  @Option(name: .customLong("float-output"), help: "Also write the float model after BatchNorm folding, cross-layer equalization and bias absorption (the original function, checked on the calibration data) to this file.")
  var floatOutput: String?

  @OptionGroup var modelOutput: ModelOutputOptions

  @OptionGroup(title: "Images and text (images: and text: data)") var dataInput: DataInputOptions

  @Option(help: ArgumentHelp(
    "Also write an HTML report of the run and of the white paper's debugging flow (sanity check, weights vs activations, every quantizer's error alone and left in float, SQNR layer by layer, per-channel ranges and histograms).",
    discussion: "Measured on the first 64 samples of the --eval data, else of the calibration data; every number is also in --json."))
  var report: String?

  @Flag(help: "Print nothing but errors.")
  var quiet = false

  func validate() throws {
    guard calibSize > 0 else { throw ValidationError("--calib-size must be positive") }
    if loadEncodings == nil && calib == nil { throw ValidationError("--calib is needed (calibration data), unless --load-encodings gives the grids") }
    if loadEncodings != nil && calib != nil { throw ValidationError("--load-encodings takes the grids from the file: leave out --calib") }
    guard batchSize > 0 else { throw ValidationError("--batch-size must be positive") }
    guard memoryBudget > 0, memoryBudget.isFinite else { throw ValidationError("--memory-budget must be a positive number of GiB") }
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
    if perChannel { c.perChannel = true }
    if perChannelActivations { c.activationPerChannel = true }
    if let v = inputPerChannel { c.inputPerChannel = v }
    if let v = weightRange { c.weightRange = v }
    if let v = activationRange { c.activationRange = v }
    if let v = logitsRange { c.logitsRange = v }
    if let v = concat { c.concat = v }
    if let v = averagePoolKeepsGrid { c.averagePoolKeepsGrid = v }
    if let v = opset { c.opset = v }
    if powerOfTwo { c.powerOfTwo = true }
    if let e = effort { c = e.applied(to: c) }  // a preset for these bit widths: the options below override it
    if rangeSettingOnly {
      c.crossLayerEqualization = false
      c.biasAbsorption = false
      c.adaRound = false
      c.biasCorrection = .none
      c.quantizerTuning = false
    }
    if let v = crossLayerEqualization { c.crossLayerEqualization = v }
    if noBiasAbsorption { c.biasAbsorption = false }
    if noAdaRound { c.adaRound = false }
    if let v = biasCorrection { c.biasCorrection = v }
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

  /// The --eval data, checked to be finite and to fit the model's inputs before any long step.
  func evaluationData(_ graph: Graph, _ options: DataOptions) throws -> Dataset? {
    guard let spec = eval else { return nil }
    let data = try DataSpec.loaded(spec, options: options, graph: graph)
    try data.validateFinite()
    try checkFeedsFit(data, graph)
    return data
  }

  /// The `data` object of the --config file, overridden by the options given.
  func dataOptions() throws -> DataOptions {
    var o = DataOptions()
    if let path = config, let data = try configFile() {
      struct File: Decodable { var data: DataOptions? }
      do {
        o = try JSONDecoder().decode(File.self, from: data).data ?? o
      } catch {
        throw LowbitError.invalidArgument("config file '\(path)': its data object is not valid: \(error)")
      }
    }
    return o.overridden(by: try dataInput.options())
  }

  func run() throws {
    let config = try quantConfig()
    // Fail before the long steps on anything that can be checked up front.
    try checkWritableDestination(output)
    if let path = json, path != "-" { try checkWritableDestination(path) }
    if let path = floatOutput { try checkWritableDestination(path) }
    if let path = report { try checkWritableDestination(path) }
    if let prefix = encodings {
      for path in [prefix + ".encodings", prefix + ".onnx"] { try checkWritableDestination(path) }
    }
    let graph = try ONNXReader.load(contentsOf: model)
    let dataOptions = try self.dataOptions()
    if let path = loadEncodings {
      try runFromEncodings(graph, path: path, config: config, dataOptions: dataOptions)
      return
    }
    let calibration = try DataSpec.loaded(calib ?? "", options: dataOptions, graph: graph)
    try calibration.validateFinite()
    let evaluation = try evaluationData(graph, dataOptions)
    // Feeds bind by input name only; quantize() simplifies the graph once itself.
    let batches = try PostTrainingQuantization.calibrationBatches(
      calibration, graph: graph, batchSize: batchSize, limit: calibSize)
    let progress = StepProgress(enabled: !quiet)
    let result = try PostTrainingQuantization.quantize(
      graph, config: config, batches: batches, memoryBudget: memoryBudget * 1_073_741_824, progress: progress.update)
    progress.finish()
    try ONNXWriter.write(result.graph, to: output, externalData: modelOutput.layout)
    if let path = floatOutput { try ONNXWriter.write(result.equalizedGraph, to: path, externalData: modelOutput.layout) }
    if let prefix = encodings {
      let file = try result.encodings(version: encodingsVersion, config: config)
      try writeAtomically(try file.json(), to: prefix + ".encodings")
      try ONNXWriter.write(result.transformedGraph, to: prefix + ".onnx", externalData: modelOutput.layout)
    }
    try finish(result, config: config, evaluation: evaluation, skipped: calibration.skipped.count, calibration: batches)
  }

  /// The report of a run, with the evaluation when asked.
  func finish(
    _ result: QuantizationResult, config: QuantConfig, evaluation: Dataset?, skipped: Int, calibration: FeedBatches?
  ) throws {
    var summary = PTQReport(model: model, output: output, config: config, result: result)
    summary.skippedInputs = skipped + (evaluation?.skipped.count ?? 0)
    if let data = evaluation {
      summary.evaluation = try EvaluationReport.compare(
        float: result.floatGraph, quantized: result.graph, data: data, batchSize: batchSize, quiet: quiet)
    }
    if let path = report {
      let held = try evaluation.map { try FeedBatches($0, graph: result.floatGraph, batchSize: batchSize) }
      guard let batches = held ?? calibration else {
        throw LowbitError.invalidArgument("--report measures on data: give --eval (or --calib)")
      }
      let progress = StepProgress(enabled: !quiet)
      summary.diagnosis = try QuantizationDiagnosis.diagnose(result, batches: batches) { progress.update("diagnose", $0, $1) }
      progress.finish()
      try writeAtomically(Data(DiagnosisPage.html(summary, diagnosis: summary.diagnosis!).utf8), to: path)
    }
    if let path = json { try writeJSON(summary, to: path) }
    if !quiet { print(summary.render()) }
  }

  /// `--load-encodings`: the QDQ file of the model with the file's grids.
  func runFromEncodings(_ graph: Graph, path: String, config: QuantConfig, dataOptions: DataOptions) throws {
    let file = try AIMETEncodings(json: try contents(of: path, "encodings file"), source: path)
    let evaluation = try evaluationData(graph, dataOptions)
    let result = try PostTrainingQuantization.quantize(graph, encodings: file, config: config)
    try ONNXWriter.write(result.graph, to: output, externalData: modelOutput.layout)
    try finish(result, config: config, evaluation: evaluation, skipped: 0, calibration: nil)
  }
}
