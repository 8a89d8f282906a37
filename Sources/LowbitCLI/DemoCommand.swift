import ArgumentParser
import Foundation
import LowbitCore
import LowbitData
import LowbitONNX
import LowbitQuant
import LowbitReport

/// `lowbit demo`: the main job on the embedded Fashion-MNIST models, as a table.
struct DemoCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "demo",
    abstract: "Quantize the demo models and print FP32 vs per-tensor/per-channel W8A8 and W4A8 top-1.",
    discussion: """
      The layout of the white paper's table 6, with lowbit's standard PTQ pipeline (CLE, \
      high-bias absorption, MSE weight ranges, AdaRound, MSE activation ranges, cross-entropy \
      logits; see docs/ptq-pipeline.md). Models come from --models (every fm_*.onnx there); \
      calibration uses the first --calib-size Fashion-MNIST training images, evaluation the test set.
      """)

  @Option(help: "Folder holding the demo models.")
  var models = "assets/models"

  @Option(help: "Folder for the quantized files.")
  var output = "out/demo"

  @Option(help: "Calibration images from the training set.")
  var calibSize = 1024

  @Flag(help: "A quick run: 256 calibration images, the first 2000 test images, 100 AdaRound steps per layer.")
  var quick = false

  @Flag(help: "Range setting only (no CLE, absorption, AdaRound or bias correction).")
  var rangeSettingOnly = false

  @Option(name: .customLong("adaround-iterations"), help: "AdaRound steps per layer (default: the ptq default).")
  var adaRoundIterations: Int?

  @Option(help: "Write the table as JSON to this file.")
  var json: String?

  struct Setting: Codable {
    var name: String
    var perChannel: Bool
    var weightBits: Int
    var activationBits: Int
  }

  static let settings = [
    Setting(name: "PT W8A8", perChannel: false, weightBits: 8, activationBits: 8),
    Setting(name: "PT W4A8", perChannel: false, weightBits: 4, activationBits: 8),
    Setting(name: "PC W8A8", perChannel: true, weightBits: 8, activationBits: 8),
    Setting(name: "PC W4A8", perChannel: true, weightBits: 4, activationBits: 8),
  ]

  struct Row: Codable {
    var model: String
    var fp32: Double
    var quantized: [String: Double]
    var seconds: Double
  }

  func run() throws {
    let names = try FileManager.default.contentsOfDirectory(atPath: models)
      .filter { $0.hasPrefix("fm_") && $0.hasSuffix(".onnx") }.sorted()
    guard !names.isEmpty else { throw LowbitError.io("no fm_*.onnx models in '\(models)'") }
    try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
    let calibration = try DataSpec.parse("fashion-mnist:train:\(quick ? 256 : calibSize)").load()
    let test = try DataSpec.parse(quick ? "fashion-mnist:test:2000" : "fashion-mnist:test").load()
    var rows: [Row] = []
    for file in names {
      let start = monotonicSeconds()
      let model = String(file.dropLast(5))
      let graph = try ONNXReader.load(contentsOf: (models as NSString).appendingPathComponent(file))
      let float = try graph.simplified()
      let fp32 = try evaluate(float, test, label: "\(model) fp32")
      let batches = try PostTrainingQuantization.calibrationBatches(calibration, graph: float, batchSize: 64)
      var row = Row(model: model, fp32: fp32, quantized: [:], seconds: 0)
      for s in Self.settings {
        var config = rangeSettingOnly ? QuantConfig.rangeSettingOnly : QuantConfig()
        if let n = adaRoundIterations ?? (quick ? 100 : nil) { config.adaRoundOptions.iterations = n }
        config.perChannel = s.perChannel
        config.weightBits = s.weightBits
        config.activationBits = s.activationBits
        let progress = StepProgress(prefix: "\(model) \(s.name)", enabled: true)
        let result = try PostTrainingQuantization.quantize(graph, config: config, batches: batches, progress: progress.update)
        progress.finish()
        let path = (output as NSString).appendingPathComponent(
          "\(model)_\(s.name.lowercased().replacingOccurrences(of: " ", with: "_")).onnx")
        try ONNXWriter.write(result.graph, to: path)
        row.quantized[s.name] = try evaluate(result.graph, test, label: "\(model) \(s.name)")
      }
      row.seconds = monotonicSeconds() - start
      rows.append(row)
    }
    var table = Table(["model", "FP32"] + Self.settings.map(\.name) + ["seconds"])
    for r in rows {
      table.add([r.model, String(format: "%.2f", r.fp32)]
        + Self.settings.map { String(format: "%.2f", r.quantized[$0.name] ?? .nan) }
        + [String(format: "%.1f", r.seconds)])
    }
    let pipeline = rangeSettingOnly ? "range setting only" : "standard PTQ pipeline (CLE, absorption, AdaRound, MSE ranges)"
    print("Top-1 % on Fashion-MNIST \(quick ? "test[:2000]" : "test"), \(pipeline); PT per-tensor, PC per-channel weights; files in \(output)/")
    print(table.render())
    if let path = json { try writeJSON(rows, to: path) }
  }

  func evaluate(_ graph: Graph, _ data: Dataset, label: String) throws -> Double {
    let result = try evaluateWithProgress(Interpreter(graph), on: data, batchSize: 64, label: label, quiet: false)
    guard let top1 = result.top1 else { throw LowbitError.invalidInput("the demo data has no labels") }
    return top1
  }
}
