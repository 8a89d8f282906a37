import ArgumentParser
import Foundation
import LowbitCore
import LowbitData
import LowbitONNX
import LowbitQuant
import LowbitReport

extension RangeMethod: ExpressibleByArgument {}
extension ConcatMode: ExpressibleByArgument {}

/// `lowbit ptq`: post-training quantization to a QDQ ONNX file.
struct PTQCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "ptq",
    abstract: "Quantize a float model after training and write it as a QDQ ONNX file.",
    discussion: """
      Folds BatchNorm, places quantizers (white paper sec. 2.3), sets their ranges on the \
      calibration data and writes QuantizeLinear/DequantizeLinear pairs that ONNX Runtime runs. \
      Options given on the command line override the --config file.
      """)

  @Argument(help: "The float ONNX model.")
  var model: String

  @Option(help: "Calibration data spec, e.g. fashion-mnist:train or npy:calib.npy.")
  var calib: String

  @Option(name: .shortAndLong, help: "The quantized ONNX file to write.")
  var output: String

  @Option(name: .customLong("w-bits"), help: "Weight bit width (2-16, default 8).")
  var weightBits: Int?

  @Option(name: .customLong("a-bits"), help: "Activation bit width (2-16, default 8).")
  var activationBits: Int?

  @Flag(help: "Per-output-channel weight scales.")
  var perChannel = false

  @Option(name: .customLong("w-range"), help: "Weight range setting: min-max or mse (default mse).")
  var weightRange: RangeMethod?

  @Option(name: .customLong("a-range"), help: "Activation range setting: min-max, running-min-max, percentile, mse, bn-based (default mse).")
  var activationRange: RangeMethod?

  @Option(help: "Range setting for the logits quantizer (default cross-entropy).")
  var logitsRange: RangeMethod?

  @Option(help: "Concat handling: requantize or shared-grid (default requantize).")
  var concat: ConcatMode?

  @Flag(help: "Cross-layer equalization before quantizing (ReLU6 between equalized layers becomes ReLU, as in DFQ).")
  var cle = false

  @Flag(help: "Restrict scales to powers of two.")
  var powerOfTwo = false

  @Flag(help: "Symmetric activations (signed grid, zero point 0) instead of asymmetric.")
  var symmetricActivations = false

  @Option(help: "Per-group weights: this many input-channel weights share a scale (needs opset 21).")
  var groupSize: Int?

  @Option(help: "Opset of the written model (13-21; 21 allows int4/uint4 and int16/uint16).")
  var opset: Int?

  @Option(help: "A JSON QuantConfig file (see docs/configuration.md).")
  var config: String?

  @Option(help: "Calibration samples to use (default 1024, or all when fewer).")
  var calibSize = 1024

  @Option(help: "Samples per batch for calibration and evaluation.")
  var batchSize = 32

  @Option(help: "Evaluation data: report FP32 and quantized accuracy (or SQNR and cosine without labels).")
  var eval: String?

  @Option(help: "Write a JSON report to this file.")
  var json: String?

  @Option(name: .customLong("disable"), help: "Switch off the quantizer on this value (repeatable).")
  var disabled: [String] = []

  @Flag(help: "Print nothing but errors.")
  var quiet = false

  func validate() throws {
    guard calibSize > 0 else { throw ValidationError("--calib-size must be positive") }
    guard batchSize > 0 else { throw ValidationError("--batch-size must be positive") }
    for (name, bits) in [("--w-bits", weightBits), ("--a-bits", activationBits)] {
      if let b = bits, !IntegerGrid.supportedBits.contains(b) {
        throw ValidationError("\(name) \(b) is not supported: use 2 to 16")
      }
    }
  }

  func quantConfig() throws -> QuantConfig {
    var c = QuantConfig()
    if let path = config {
      guard let data = FileManager.default.contents(atPath: path) else {
        throw LowbitError.io("config file '\(path)' cannot be read")
      }
      do {
        c = try JSONDecoder().decode(QuantConfig.self, from: data)
      } catch {
        throw LowbitError.invalidArgument("config file '\(path)' is not a valid QuantConfig: \(error)")
      }
    }
    if let v = weightBits { c.weightBits = v }
    if let v = activationBits { c.activationBits = v }
    if perChannel { c.perChannel = true }
    if let v = weightRange { c.weightRange = v }
    if let v = activationRange { c.activationRange = v }
    if let v = logitsRange { c.logitsRange = v }
    if let v = concat { c.concat = v }
    if let v = opset { c.opset = v }
    if powerOfTwo { c.powerOfTwo = true }
    if cle { c.crossLayerEqualization = true }
    if symmetricActivations { c.activationSymmetric = true }
    if let v = groupSize { c.weightGroupSize = v }
    c.disabled += disabled
    try c.validate()
    return c
  }

  func run() throws {
    let config = try quantConfig()
    let graph = try ONNXReader.load(contentsOf: model)
    let calibration = try DataSpec.parse(calib).load()
    try calibration.validateFinite()
    let evaluation = try eval.map { try DataSpec.parse($0).load() }
    try evaluation?.validateFinite()
    // Feeds bind by input name only; quantize() simplifies the graph once itself.
    let batches = try PostTrainingQuantization.calibrationBatches(
      calibration, graph: graph, batchSize: batchSize, limit: calibSize)
    var bar: ProgressBar?
    let result = try PostTrainingQuantization.quantize(graph, config: config, batches: batches) { step, done, total in
      if bar == nil { bar = ProgressBar(step, total: total, enabled: !quiet && ProgressBar.terminalAttached) }
      bar?.advance(done - (bar?.done ?? 0))
    }
    bar?.finish()
    try ONNXWriter.write(result.graph, to: output)
    var report = PTQReport(model: model, output: output, config: config, result: result)
    if let data = evaluation {
      report.evaluation = try EvaluationReport.compare(
        float: result.floatGraph, quantized: result.graph, data: data, batchSize: batchSize, quiet: quiet)
    }
    if let path = json { try writeJSON(report, to: path) }
    if !quiet { print(report.render()) }
  }
}
