import ArgumentParser
import Foundation
import LowbitCore
import LowbitData
import LowbitONNX
import LowbitQuant
import LowbitReport
import LowbitTrain

/// `lowbit demo`: the main job on the embedded Fashion-MNIST models, as a table.
struct DemoCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "demo",
    abstract: "Quantize the demo models with PTQ and QAT and print the white paper's tables.",
    discussion: """
      1. Models: every fm_*.onnx in --models (the trained copies); a model whose architecture is \
      in --architectures but has no trained copy is first trained from scratch on Fashion-MNIST \
      (--train-epochs, `lowbit train --from-scratch` settings) and cached in --models.
      2. PTQ, the layout of the white paper's table 6 (FP32 | per-tensor W8A8, W4A8 | \
      per-channel W8A8, W4A8) with lowbit's standard PTQ pipeline (CLE, high-bias absorption, \
      MSE weight ranges, AdaRound, MSE activation ranges, cross-entropy logits; see \
      docs/ptq-pipeline.md), calibrated on the first --calib-size training images.
      3. QAT at W4A4, per-tensor and per-channel (table 10's hardest columns): the PTQ pipeline \
      (`lowbit qat`'s start), then one epoch of `lowbit qat` on the first --qat-samples training images \
      (--quick: fm_resnet20 only).
      Evaluation: the Fashion-MNIST test set (its first 2000 images with --quick).
      """)

  @Option(help: "Folder holding the demo models.")
  var models = "assets/models"

  @Option(help: "Folder of the untrained architectures, for demo models without a trained copy.")
  var architectures = "assets/architectures"

  @Option(help: "Epochs of from-scratch training for a demo model without a trained copy.")
  var trainEpochs = 1

  @Option(help: "Training images for from-scratch training (default: all 60000).")
  var trainSamples: Int?

  @Option(help: "Training images per QAT run (default 2048; 512 with --quick).")
  var qatSamples: Int?

  @Flag(help: "Skip the QAT table.")
  var noQAT = false

  @Option(help: "Folder for the quantized files.")
  var output = "out/demo"

  @Option(help: "Calibration images from the training set.")
  var calibSize = 1024

  @Flag(help: "A quick run: 256 calibration images, the first 2000 test images, 100 AdaRound steps per layer, QAT on fm_resnet20 only.")
  var quick = false

  @Flag(help: "Range setting only (no CLE, absorption, AdaRound or bias correction), for PTQ and QAT's start.")
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
    let names = try demoModels()
    try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
    let calibration = try DataSpec.loaded("fashion-mnist:train:\(quick ? 256 : calibSize)")
    let test = try DataSpec.loaded(quick ? "fashion-mnist:test:2000" : "fashion-mnist:test")
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
        if let n = adaRoundIterations ?? (quick ? 100 : nil) { config.adaRoundOptions.setIterations(n) }
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
    var report = DemoReport(ptq: rows, qat: [])
    if !noQAT {
      report.qat = try qatTable(names, test: test, fp32: Dictionary(uniqueKeysWithValues: rows.map { ($0.model, $0.fp32) }))
    }
    if let path = json { try writeJSON(report, to: path) }
  }

  /// The demo models' file names: the trained copies in `models`, after training any model
  /// whose architecture has no trained copy yet.
  func demoModels() throws -> [String] {
    let fm = { (dir: String) in
      ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasPrefix("fm_") && $0.hasSuffix(".onnx") }
    }
    let trained = Set(fm(models))
    for file in fm(architectures).sorted() where !trained.contains(file) {
      try FileManager.default.createDirectory(atPath: models, withIntermediateDirectories: true)
      try trainFromScratch(file)
    }
    let names = fm(models).sorted()
    guard !names.isEmpty else { throw LowbitError.io("no fm_*.onnx models in '\(models)' and no architectures in '\(architectures)'") }
    return names
  }

  /// Trains `architectures/file` from scratch on Fashion-MNIST and writes it to `models/file`.
  func trainFromScratch(_ file: String) throws {
    let model = String(file.dropLast(5))
    print("\(model): no trained copy in \(models)/, training it from scratch (\(trainEpochs) epoch(s) on \(trainSamples.map(String.init) ?? "all") training images)")
    let architecture = try ONNXReader.load(contentsOf: (architectures as NSString).appendingPathComponent(file)).simplified()
    let graph = try ParameterInitialization.heNormal(architecture, seed: 0)
    let data = try DataSpec.loaded("fashion-mnist:train" + (trainSamples.map { ":\($0)" } ?? ""))
    var loop = try TrainingLoop(graph: graph, training: data, config: TrainingConfig(epochs: trainEpochs))
    var bar: ProgressBar?
    try loop.run(batchProgress: { epoch, done in
      if bar == nil || bar!.done > done { bar?.finish(); bar = ProgressBar("\(model) train epoch \(epoch)", total: data.count, enabled: true) }
      bar?.advance(done - bar!.done)
    }, onEpoch: { _, result in
      bar?.finish()
      bar = nil
      print(TrainCommand.line(result, epochs: trainEpochs))
    })
    try ONNXWriter.write(loop.trainer.graph, to: (models as NSString).appendingPathComponent(file))
  }

  /// W4A4 per-tensor and per-channel: QAT's start (`lowbit qat`'s default, the PTQ pipeline) and
  /// one epoch of QAT, per model.
  /// `fp32` holds the PTQ table's float top-1 per model (same test data), so it is not measured twice.
  func qatTable(_ names: [String], test: Dataset, fp32: [String: Double]) throws -> [QATRow] {
    let samples = qatSamples ?? (quick ? 512 : 2048)
    let data = try DataSpec.loaded("fashion-mnist:train:\(samples)")
    var rows: [QATRow] = []
    // --quick: one model (fm_resnet20 when present) keeps the demo within its budget.
    let chosen = quick ? [names.first { $0 == "fm_resnet20.onnx" } ?? names[0]] : names
    for file in chosen {
      let model = String(file.dropLast(5))
      let graph = try ONNXReader.load(contentsOf: (models as NSString).appendingPathComponent(file))
      var row = QATRow(model: model, fp32: fp32[model] ?? .nan, start: [:], qat: [:], seconds: 0)
      let start = monotonicSeconds()
      for perChannel in [false, true] {
        let name = perChannel ? "PC W4A4" : "PT W4A4"
        var config = (rangeSettingOnly ? QATStart.rangeSetting : .ptq).config(weightBits: 4, activationBits: 4, perChannel: perChannel)
        if let n = adaRoundIterations ?? (quick ? 100 : nil) { config.adaRoundOptions.setIterations(n) }
        let progress = StepProgress(prefix: "\(model) \(name) qat", enabled: true)
        var bar: ProgressBar?
        let run = try QuantizationAwareTraining.run(
          graph, config: config, training: data, trainingConfig: QATCommand.defaultConfig(epochs: 1),
          progress: progress.update,
          epochProgress: { _, done in
            progress.finish()
            if bar == nil { bar = ProgressBar("\(model) \(name) qat epoch", total: data.count, enabled: true) }
            bar?.advance(done - bar!.done)
          })
        bar?.finish()
        row.start[name] = try evaluate(run.setup.ptq.graph, test, label: "\(model) \(name) ptq")
        row.qat[name] = try evaluate(run.qdq, test, label: "\(model) \(name) qat")
        try ONNXWriter.write(run.qdq, to: (output as NSString).appendingPathComponent(
          "\(model)_qat_\(name.lowercased().replacingOccurrences(of: " ", with: "_")).onnx"))
      }
      row.seconds = monotonicSeconds() - start
      rows.append(row)
    }
    let columns = ["PT W4A4", "PC W4A4"]
    var table = Table(["model", "FP32"] + columns.flatMap { ["\($0) PTQ", "\($0) QAT"] } + ["seconds"])
    for r in rows {
      table.add([r.model, String(format: "%.2f", r.fp32)]
        + columns.flatMap { [String(format: "%.2f", r.start[$0] ?? .nan), String(format: "%.2f", r.qat[$0] ?? .nan)] }
        + [String(format: "%.1f", r.seconds)])
    }
    print("")
    let c = QATCommand.defaultConfig(epochs: 1)
    print("Top-1 % at W4A4: \((rangeSettingOnly ? QATStart.rangeSetting : .ptq).summary) (QAT's start) and after one epoch of QAT on \(samples) training images (lowbit qat defaults: \(c.optimizer.rawValue) lr \(c.learningRate) \(c.schedule.rawValue))")
    print(table.render())
    return rows
  }

  struct QATRow: Codable {
    var model: String
    var fp32: Double
    var start: [String: Double]
    var qat: [String: Double]
    var seconds: Double
  }

  struct DemoReport: Codable {
    var ptq: [Row]
    var qat: [QATRow]
  }

  func evaluate(_ graph: Graph, _ data: Dataset, label: String) throws -> Double {
    let result = try evaluateWithProgress(Interpreter(graph), on: data, batchSize: 64, label: label, quiet: false)
    guard let top1 = result.top1 else { throw LowbitError.invalidInput("the demo data has no labels") }
    return top1
  }
}
