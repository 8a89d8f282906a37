import Foundation
import LowbitCore
import LowbitData
import LowbitQuant
import LowbitReport

/// Float vs quantized results on evaluation data.
struct EvaluationReport: Codable {
  var samples: Int
  var floatTop1: Double?
  var quantizedTop1: Double?
  var sqnrDB: Double
  var meanCosine: Double
  var argmaxAgreement: Double
  /// Mean KL divergence of the quantized model's softmax from the float model's (nats).
  var klDivergence: Double
  var floatSeconds: Double
  var quantizedSeconds: Double

  enum CodingKeys: String, CodingKey {
    case samples, floatTop1 = "fp32_top1", quantizedTop1 = "quantized_top1", sqnrDB = "sqnr_db"
    case meanCosine = "mean_cosine", argmaxAgreement = "argmax_agreement", klDivergence = "kl_divergence"
    case floatSeconds = "fp32_seconds", quantizedSeconds = "quantized_seconds"
  }

  /// Runs both graphs over `data` and compares their first outputs.
  static func compare(float: Graph, quantized: Graph, data: Dataset, batchSize: Int, quiet: Bool) throws -> EvaluationReport {
    func evaluate(_ g: Graph, _ label: String) throws -> Evaluation {
      try evaluateWithProgress(Interpreter(g), on: data, batchSize: batchSize, label: label, quiet: quiet)
    }
    let f = try evaluate(float, "eval fp32")
    let q = try evaluate(quantized, "eval quantized")
    guard let name = float.outputs.first?.name, let a = f.outputs[name], let b = q.outputs[name],
          a.dtype.isFloatingPoint, b.dtype.isFloatingPoint, a.shape == b.shape else {
      throw LowbitError.invalidInput("the float and quantized models give different outputs")
    }
    let width = a.shape.last ?? 1
    return EvaluationReport(
      samples: f.samples, floatTop1: f.top1, quantizedTop1: q.top1,
      sqnrDB: Metrics.sqnr(reference: a.floats, quantized: b.floats),
      meanCosine: Metrics.meanCosine(reference: a.floats, quantized: b.floats, width: max(width, 1)),
      argmaxAgreement: Metrics.argmaxAgreement(a.floats, b.floats, width: max(width, 1)),
      klDivergence: Metrics.meanKLDivergence(reference: a.floats, quantized: b.floats, width: max(width, 1)),
      floatSeconds: f.seconds, quantizedSeconds: q.seconds)
  }
}

/// The summary `lowbit ptq` prints and writes as JSON.
struct PTQReport: Codable {
  var model: String
  var output: String
  var config: QuantConfig
  var opset: Int
  var weightQuantizers: Int
  var activationQuantizers: Int
  var steps: [StepTiming]
  var evaluation: EvaluationReport?
  var quantizers: [QuantizerEntry]
  /// Per layer: AdaRound's reconstruction errors and the empirical bias shift.
  var layers: [LayerRefinement]
  var blocks: [BlockRefinement]
  /// Per MatMul/Gemm layer: GPTQ's proxy loss against round to nearest's (absent when GPTQ did
  /// not run).
  var gptq: [GPTQLayerRecord]?
  /// True when round-to-nearest beat GPTQ end to end and was written instead.
  var gptqUndone: Bool
  /// Per group of linear layers: channel-scale migration's α and layer output errors (absent
  /// when it did not run).
  var migration: [MigrationRecord]?
  /// Quantizer tuning's loss before and after, when it ran.
  var tuning: QuantizerTuningRecord?
  /// Mixed precision's ranking: each activation quantizer's output loss alone, largest first,
  /// and its bit width (absent when mixed precision did not run).
  var sensitivity: [SensitivityRecord]?
  var absorbed: [AbsorbedPair]
  /// Each float transform checked against the original model, and whether it was kept.
  var transformChecks: [TransformCheck]
  /// True when round-to-nearest beat AdaRound end to end and was written instead.
  var adaRoundUndone: Bool
  var equalizedPairs: Int
  var totalSeconds: Double
  /// The process's peak resident memory (bytes) when the report was made, after the file was written.
  var peakBytes: Int?
  /// Calibration and evaluation inputs left out as unreadable (--skip-bad-inputs).
  var skippedInputs = 0
  /// The debugging flow's measurements (`--report`).
  var diagnosis: QuantizationDiagnosis?

  /// One quantizer as the JSON lists it: where it sits and its grid.
  struct QuantizerEntry: Codable {
    var name: String
    var kind: String
    var node: String?
    var bits: Int
    var granularity: String
    var scale: [Float]
    var zeroPoint: [Int]
    var range: [Float]

    enum CodingKeys: String, CodingKey {
      case name, kind, node, bits, granularity, scale, range
      case zeroPoint = "zero_point"
    }
  }

  enum CodingKeys: String, CodingKey {
    case model, output, config, opset, steps, evaluation, quantizers, layers, blocks, gptq, tuning, sensitivity, absorbed, migration
    case transformChecks = "transform_checks", adaRoundUndone = "adaround_undone", gptqUndone = "gptq_undone"
    case equalizedPairs = "equalized_pairs", totalSeconds = "total_seconds", peakBytes = "peak_bytes"
    case skippedInputs = "skipped_inputs", diagnosis
    case weightQuantizers = "weight_quantizers", activationQuantizers = "activation_quantizers"
  }

  init(model: String, output: String, config: QuantConfig, result: QuantizationResult) {
    self.model = model
    self.output = output
    self.config = config
    self.opset = result.graph.opset
    let placed = result.sites.filter { result.quantizers[$0.name] != nil }
    self.weightQuantizers = placed.filter { $0.kind == .weight }.count
    self.activationQuantizers = placed.filter { $0.kind == .activation }.count
    self.steps = result.steps
    self.layers = result.layers
    self.blocks = result.blocks
    self.gptq = result.gptq.isEmpty ? nil : result.gptq
    self.gptqUndone = result.gptqUndone
    self.migration = result.migration.isEmpty ? nil : result.migration
    self.tuning = result.tuning
    self.sensitivity = result.sensitivity.isEmpty ? nil : result.sensitivity
    self.absorbed = result.absorbed
    self.transformChecks = result.transformChecks
    self.adaRoundUndone = result.adaRoundUndone
    self.equalizedPairs = result.equalized.count
    self.totalSeconds = result.steps.map(\.seconds).reduce(0, +)
    self.peakBytes = peakResidentBytes()
    self.quantizers = placed.compactMap { site in
      guard let q = result.quantizers[site.name] else { return nil }
      let granularity: String
      switch q.granularity {
      case .perTensor: granularity = "per-tensor"
      case .perChannel(let axis): granularity = "per-channel(axis \(axis))"
      case .perGroup(let axis, let size): granularity = "per-group(axis \(axis), size \(size))"
      }
      let ranges = q.params.map { UniformQuantizer.representableRange($0, q.grid) }
      return QuantizerEntry(
        name: site.name, kind: site.kind.rawValue, node: site.consumer ?? site.producer, bits: q.grid.bits,
        granularity: granularity, scale: q.params.map(\.scale), zeroPoint: q.params.map(\.zeroPoint),
        range: [ranges.map(\.lowerBound).min() ?? 0, ranges.map(\.upperBound).max() ?? 0])
    }
  }

  func render() -> String {
    let c = config
    var lines = [
      "\(model) -> \(output): W\(c.weightBits)A\(c.activationBits) \(c.perChannel ? "per-channel" : "per-tensor"), "
        + "\(weightQuantizers) weight and \(activationQuantizers) activation quantizers, opset \(opset)",
      "",
    ]
    var steps = Table(["step", "seconds", "cores", "peak MiB", "detail"])
    func mib(_ bytes: Int?) -> String { bytes.map { String($0 >> 20) } ?? "-" }
    // Cores busy: processor seconds over wall seconds, for steps long enough to tell.
    func cores(_ s: StepTiming) -> String {
      guard let p = s.processorSeconds, s.seconds >= 0.5 else { return "" }
      return String(format: "%.1f", p / s.seconds)
    }
    for s in self.steps { steps.add([s.step, String(format: "%.3f", s.seconds), cores(s), mib(s.peakBytes), s.detail ?? ""]) }
    steps.add(["total", String(format: "%.3f", totalSeconds), "", mib(peakBytes), skippedInputs > 0 ? "\(skippedInputs) unreadable inputs left out" : ""])
    lines.append(steps.render())
    if let e = evaluation {
      lines.append("")
      var t = Table(["model", "top-1 %", "SQNR dB", "cosine", "argmax agree %", "KL", "seconds"])
      t.add(["fp32", e.floatTop1.map { String(format: "%.2f", $0) } ?? "-", "-", "-", "-", "-", String(format: "%.2f", e.floatSeconds)])
      t.add([
        "W\(c.weightBits)A\(c.activationBits)", e.quantizedTop1.map { String(format: "%.2f", $0) } ?? "-",
        String(format: "%.2f", e.sqnrDB), String(format: "%.5f", e.meanCosine),
        String(format: "%.2f", 100 * e.argmaxAgreement), String(format: "%.4f", e.klDivergence),
        String(format: "%.2f", e.quantizedSeconds),
      ])
      lines.append(t.render())
    }
    return lines.joined(separator: "\n")
  }
}
