import ArgumentParser
import Foundation
import LowbitCore
import LowbitData
import LowbitONNX
import LowbitQuant
import LowbitReport

/// `lowbit debug`: the white paper's debugging flow (sec. 4.8, fig. 12) as one command.
struct DebugCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "debug",
    abstract: "Find why quantization loses accuracy, try the white paper's fixes, and write an HTML report.",
    discussion: """
      Quantizes the model as `lowbit ptq` would with the same options, then measures on the \
      --eval data: the simulation with quantizers off against FP32, weights only against \
      activations only, every quantizer alone and left in float, SQNR layer by layer, per-channel \
      weight ranges and activation histograms; then tries the paper's fixes one after another \
      (per-channel weights, CLE on or off, each activation range method, AdaRound, empirical bias \
      correction), keeping each that lowers the held-out loss by more than 2%, and the front of \
      mixed precision for the 1, 2, 4, ... most sensitive activation quantizers (the front; the \
      recommendation widens at most --widen-at-most of them), and below 8-bit weights the front \
      of weight mixed precision against model size (within --size-budget). Trials run at --effort fast. Ends with the \
      recommended `lowbit ptq` command and its measured result.
      """)

  @Argument(help: "The float ONNX model.")
  var model: String

  @Option(help: "Calibration data spec, e.g. fashion-mnist:train or npy:calib.npy.")
  var calib: String

  @Option(help: "Held-out data the flow measures on (its first --samples samples).")
  var eval: String

  @Option(name: .shortAndLong, help: "The HTML report to write.")
  var output: String

  @Option(help: "Write every number of the report as JSON to this file ('-' for stdout).")
  var json: String?

  @Option(help: "Held-out samples each measurement runs on.")
  var samples = 64

  @Option(help: "The weight bits the recommendation may reach, as a multiple of the options given's (weight mixed precision; the front shows every point).")
  var sizeBudget = DebuggingFlow.defaultSizeBudget

  @Option(help: "The most activation quantizers the recommendation may widen (mixed precision; the front in the report shows them all).")
  var widenAtMost = DebuggingFlow.defaultWidenAtMost

  @OptionGroup(title: "Quantization (as for lowbit ptq)") var quantization: QuantizationOptions

  @Option(help: "Calibration samples to use (default 1024, or all when fewer).")
  var calibSize = 1024

  @Option(help: "Samples per batch.")
  var batchSize = 32

  @OptionGroup(title: "Images and text (images: and text: data)") var dataInput: DataInputOptions

  @Flag(help: "Print nothing but errors.")
  var quiet = false

  func validate() throws {
    guard calibSize > 0, batchSize > 0, samples > 0 else {
      throw ValidationError("--calib-size, --batch-size and --samples must be positive")
    }
    guard widenAtMost >= 0 else { throw ValidationError("--widen-at-most must be 0 or more") }
    guard sizeBudget.isFinite && sizeBudget >= 1 else { throw ValidationError("--size-budget must be 1 or more (a multiple of the model's weight bits)") }
  }

  /// What `--json` holds: the run, its diagnosis and the fixes tried.
  struct Report: Encodable {
    var run: PTQReport
    var flow: DebuggingFlow.Outcome
    var recommendedCommand: String

    enum CodingKeys: String, CodingKey {
      case run, flow
      case recommendedCommand = "recommended_command"
    }
  }

  func run() throws {
    let config = try quantization.quantConfig()
    try checkWritableDestination(output)
    if let path = json, path != "-" { try checkWritableDestination(path) }
    let graph = try ONNXReader.load(contentsOf: model)
    let dataOptions = try quantization.dataOptions(dataInput)
    let calibration = try DataSpec.loaded(calib, options: dataOptions, graph: graph)
    try calibration.validateFinite()
    let held = try DataSpec.loaded(eval, options: dataOptions, graph: graph)
    try held.validateFinite()
    try checkFeedsFit(held, graph)
    let batches = try PostTrainingQuantization.calibrationBatches(calibration, graph: graph, batchSize: batchSize, limit: calibSize)
    let heldOut = try FeedBatches(held, graph: graph, batchSize: batchSize, limit: samples)

    let progress = StepProgress(enabled: !quiet)
    let result = try PostTrainingQuantization.quantize(graph, config: config, batches: batches, progress: progress.update)
    var run = PTQReport(model: model, output: output, config: config, result: result)
    run.diagnosis = try QuantizationDiagnosis.diagnose(result, batches: heldOut, samples: samples) {
      progress.update("diagnose", $0, $1)
    }
    let flow = try DebuggingFlow.run(
      graph, config: config, calibration: batches, heldOut: heldOut, samples: samples, baseline: result,
      widenAtMost: widenAtMost, sizeBudget: sizeBudget, progress: { progress.update("fixes: \($0)", $1, $2) })
    progress.finish()
    let command = recommendedCommand(flow.recommendedFixes)

    var page = DiagnosisPage.page(run, diagnosis: run.diagnosis!)
    DiagnosisPage.fixes(flow, command: command, into: &page)
    try writeAtomically(Data(page.html().utf8), to: output)
    if let path = json { try writeJSON(Report(run: run, flow: flow, recommendedCommand: command), to: path) }
    if !quiet {
      let causes = DiagnosisPage.causeSentences(run.diagnosis!)
      if !causes.isEmpty { print("likely causes:\n" + causes.map { "- " + $0 }.joined(separator: "\n") + "\n") }
      print(summary(flow, command: command))
    }
  }

  /// The `lowbit ptq` command of this run's options with the kept fixes.
  func recommendedCommand(_ fixes: [QuantizationFix]) -> String {
    var args = Array(CommandLine.arguments.dropFirst())
    if let i = args.firstIndex(of: "debug") { args[i] = "ptq" }
    // Options of debug alone, with their values.
    for option in ["-o", "--output", "--json", "--samples", "--widen-at-most", "--size-budget"] {
      while let i = args.firstIndex(of: option) { args.removeSubrange(i..<min(i + 2, args.count)) }
    }
    func drop(_ flags: [String]) { args.removeAll { flags.contains($0) } }
    func replace(_ option: String, _ value: String) {
      while let i = args.firstIndex(of: option) { args.removeSubrange(i..<min(i + 2, args.count)) }
      args += [option, value]
    }
    for fix in fixes {
      switch fix.kind {
      case .perChannelWeights: args.append("--per-channel")
      case .crossLayerEqualization:
        drop(["--cle", "--no-cle"])
        args.append(fix.enabled == true ? "--cle" : "--no-cle")
      case .activationRange: replace("--a-range", fix.rangeMethod?.rawValue ?? "mse")
      case .biasCorrection: replace("--bias-correction", fix.biasCorrection?.rawValue ?? "empirical")
      case .adaRound:
        drop(["--adaround", "--no-adaround"])
        args.append(fix.enabled == true ? "--adaround" : "--no-adaround")
      case .mixedPrecision: replace("--mixed-precision", String(fix.quantizers ?? 0))
      case .weightMixedPrecision: replace("--mixed-precision-weights", String(fix.quantizers ?? 0))
      case .quantizerRange:
        if let q = fix.quantizer, let m = fix.rangeMethod {
          // One --a-range-at per quantizer: a later fix of the same one replaces it.
          while let i = args.indices.dropLast().first(where: { args[$0] == "--a-range-at" && args[$0 + 1].hasPrefix(q + "=") }) {
            args.removeSubrange(i...(i + 1))
          }
          args += ["--a-range-at", "\(q)=\(m.rawValue)"]
        }
      }
    }
    let stem = URL(fileURLWithPath: model).deletingPathExtension().lastPathComponent
    args += ["-o", "\(stem).quantized.onnx"]
    return "lowbit " + args.map(Self.quoted).joined(separator: " ")
  }

  static func quoted(_ s: String) -> String {
    s.allSatisfy({ $0.isLetter || $0.isNumber || "-_./:=,+@".contains($0) }) && !s.isEmpty ? s : "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
  }

  func summary(_ flow: DebuggingFlow.Outcome, command: String) -> String {
    var t = Table(["configuration", "held-out loss", "SQNR dB", "cosine", "weight MB", "seconds", "kept"])
    func row(_ name: String, _ m: DebuggingFlow.Measurement, _ kept: String) {
      t.add([name, HTMLReport.number(m.loss), String(format: "%.2f", m.sqnr), String(format: "%.5f", m.cosine),
             String(format: "%.3f", Double(m.weightBits) / 8e6), String(format: "%.1f", m.seconds), kept])
    }
    row("baseline", flow.baseline, "")
    row("baseline, trial settings", flow.trialBaseline, "")
    for trial in flow.trials + flow.weightFront + flow.mixedPrecisionFront { row(DiagnosisPage.describe(trial.fix), trial.measurement, trial.kept ? "yes" : "") }
    return t.render() + "\n\nrecommended (held-out loss \(HTMLReport.number(flow.recommendedMeasurement.loss)), SQNR "
      + String(format: "%.2f dB", flow.recommendedMeasurement.sqnr) + "):\n  " + command + "\nreport: \(output)"
  }
}
