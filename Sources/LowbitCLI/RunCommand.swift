import ArgumentParser
import Foundation
import LowbitCore
import LowbitData
import LowbitONNX
import LowbitReport

/// `lowbit run`: run a float (or quantized) model over a data set.
struct RunCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "run",
    abstract: "Run a model over a data set; report top-1 accuracy (with labels) and throughput.")

  @Argument(help: "The ONNX model file.")
  var model: String

  @Option(help: "The data to run on (see `lowbit --help` for the forms), e.g. fashion-mnist:test.")
  var data: String

  @Option(help: "Samples per batch.")
  var batchSize = 32

  @Option(help: "Use only the first N samples.")
  var limit: Int?

  @Option(help: "Write outputs: X.npy gets the first graph output, X.npz every output by name.")
  var saveOutputs: String?

  @Option(help: "Write a JSON summary (model, samples, top1, seconds, samples_per_second) to this file.")
  var json: String?

  @OptionGroup(title: "Images and text (images: and text: data)") var dataInput: DataInputOptions

  @Flag(help: "Print the time spent in each op type.")
  var profile = false

  @Flag(help: "Run a QDQ file as an integer accelerator does: each quantized Conv/Gemm/MatMul whose output (after its Relu/Clip) a per-tensor QuantizeLinear reads accumulates its integer products in int32 and requantizes them with a fixed-point multiplier and shift per channel (gemmlowp / TFLite); other ops as usual.")
  var integer = false

  @Flag(help: "Print nothing but errors.")
  var quiet = false

  func validate() throws {
    guard batchSize > 0 else { throw ValidationError("--batch-size must be positive") }
    if let limit = limit, limit <= 0 { throw ValidationError("--limit must be positive") }
    if let path = saveOutputs, !(path.hasSuffix(".npy") || path.hasSuffix(".npz")) {
      throw ValidationError("--save-outputs must end in .npy or .npz")
    }
  }

  struct Summary: Codable {
    var model: String
    var data: String
    var samples: Int
    var top1: Double?
    var seconds: Double
    var samplesPerSecond: Double
    var batchSize: Int
    var threads: Int
    /// Inputs left out as unreadable (--skip-bad-inputs).
    var skipped: Int
    /// With --integer: the layers requantized in integer arithmetic.
    var integerLayers: Int?

    enum CodingKeys: String, CodingKey {
      case model, data, samples, top1, seconds, threads, skipped
      case integerLayers = "integer_layers"
      case samplesPerSecond = "samples_per_second", batchSize = "batch_size"
    }

    /// Writes every key, `top1` as null when there are no labels.
    func encode(to encoder: Encoder) throws {
      var c = encoder.container(keyedBy: CodingKeys.self)
      try c.encode(model, forKey: .model)
      try c.encode(data, forKey: .data)
      try c.encode(samples, forKey: .samples)
      try c.encode(top1, forKey: .top1)
      try c.encode(seconds, forKey: .seconds)
      try c.encode(samplesPerSecond, forKey: .samplesPerSecond)
      try c.encode(batchSize, forKey: .batchSize)
      try c.encode(threads, forKey: .threads)
      try c.encode(skipped, forKey: .skipped)
      try c.encodeIfPresent(integerLayers, forKey: .integerLayers)
    }
  }

  func run() throws {
    let graph = try ONNXReader.load(contentsOf: model).simplified().foldingBatchNorm().graph
    let interpreter = try Interpreter(graph, integerArithmetic: integer)
    if integer && !quiet {
      FileHandle.standardError.write(Data(
        "integer arithmetic: \(interpreter.requantizedLayers) layers requantized with fixed-point multipliers\n".utf8))
    }
    var dataset = try DataSpec.loaded(data, options: try dataInput.options(), graph: graph)
    if let limit = limit { dataset = dataset.prefix(min(limit, dataset.count)) }
    try dataset.validateFinite()
    let opProfile = profile ? OpProfile() : nil
    let result = try evaluateWithProgress(
      interpreter, on: dataset, batchSize: batchSize, label: "run", quiet: quiet, profile: opProfile)
    if let path = saveOutputs {
      if path.hasSuffix(".npz") {
        let members = graph.outputs.compactMap { o in result.outputs[o.name].map { (o.name, $0) } }
        try NPZ.write(members, to: path)
      } else if let first = graph.outputs.first, let tensor = result.outputs[first.name] {
        try NPY.write(tensor, to: path)
      }
    }
    let summary = Summary(
      model: model, data: data, samples: result.samples, top1: result.top1,
      seconds: result.seconds, samplesPerSecond: Double(result.samples) / max(result.seconds, 1e-9),
      batchSize: batchSize, threads: kernelThreadCount, skipped: dataset.skipped.count,
      integerLayers: integer ? interpreter.requantizedLayers : nil)
    if let path = json { try writeJSON(summary, to: path) }
    if !quiet {
      var table = Table(["model", "samples", "top-1 %", "seconds", "samples/s"])
      table.add([
        (model as NSString).lastPathComponent, String(summary.samples),
        summary.top1.map { String(format: "%.2f", $0) } ?? "-",
        String(format: "%.3f", summary.seconds), String(format: "%.1f", summary.samplesPerSecond),
      ])
      print(table.render())
    }
    if let opProfile = opProfile {
      var table = Table(["op", "calls", "seconds", "share %"])
      let total = opProfile.seconds.values.reduce(0, +)
      for (op, s) in opProfile.seconds.sorted(by: { $0.value > $1.value }) {
        table.add([op, String(opProfile.calls[op] ?? 0), String(format: "%.3f", s),
                   String(format: "%.1f", 100 * s / max(total, 1e-12))])
      }
      print(table.render())
    }
  }
}
