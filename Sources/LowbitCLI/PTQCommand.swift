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
extension MigrationMethod: ExpressibleByArgument {}
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

  @OptionGroup(title: "Quantization") var quantization: QuantizationOptions

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
  }

  /// The --eval data, checked to be finite and to fit the model's inputs before any long step.
  func evaluationData(_ graph: Graph, _ options: DataOptions) throws -> Dataset? {
    guard let spec = eval else { return nil }
    let data = try DataSpec.loaded(spec, options: options, graph: graph)
    try data.validateFinite()
    try checkFeedsFit(data, graph)
    return data
  }

  func run() throws {
    let config = try quantization.quantConfig()
    // Fail before the long steps on anything that can be checked up front.
    try checkWritableDestination(output)
    if let path = json, path != "-" { try checkWritableDestination(path) }
    if let path = floatOutput { try checkWritableDestination(path) }
    if let path = report { try checkWritableDestination(path) }
    if let prefix = encodings {
      for path in [prefix + ".encodings", prefix + ".onnx"] { try checkWritableDestination(path) }
    }
    let graph = try ONNXReader.load(contentsOf: model)
    let dataOptions = try quantization.dataOptions(dataInput)
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
    let file = try AIMETEncodings(json: try quantization.contents(of: path, "encodings file"), source: path)
    let evaluation = try evaluationData(graph, dataOptions)
    let result = try PostTrainingQuantization.quantize(graph, encodings: file, config: config)
    try ONNXWriter.write(result.graph, to: output, externalData: modelOutput.layout)
    try finish(result, config: config, evaluation: evaluation, skipped: 0, calibration: nil)
  }
}
