import ArgumentParser
import Foundation
import LowbitCore
import LowbitONNX
import LowbitReport

/// `lowbit info`: what a model takes, gives and holds.
struct InfoCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "info",
    abstract: "Show a model's inputs, outputs, op histogram and parameter count.")

  @Argument(help: "The ONNX model file.")
  var model: String

  @Flag(help: "Print JSON instead of tables.")
  var json = false

  struct Report: Codable {
    struct Value: Codable { var name: String; var dtype: String?; var shape: [String]? }
    var model: String
    var opset: Int
    var producer: String?
    var nodes: Int
    var parameters: Int
    var inputs: [Value]
    var outputs: [Value]
    var ops: [String: Int]
    var unsupportedOps: [String]
    /// Nodes left after simplification (constant and shape folding, Identity removal).
    var simplifiedNodes: Int?
    /// Output shapes as shape inference derives them.
    var inferredOutputs: [Value]?
  }

  func run() throws {
    let graph = try ONNXReader.load(contentsOf: model)
    func value(_ v: ValueInfo) -> Report.Value {
      Report.Value(name: v.name, dtype: v.dtype?.description, shape: v.shape?.map(\.description))
    }
    var report = Report(
      model: model, opset: graph.opset, producer: graph.metadata["producer"],
      nodes: graph.nodes.count, parameters: graph.parameterCount,
      inputs: graph.inputs.map(value), outputs: graph.outputs.map(value), ops: graph.opHistogram,
      unsupportedOps: Set(graph.nodes.filter { Ops.kernel(for: $0) == nil }.map(\.opType)).sorted())
    if report.unsupportedOps.isEmpty, let simple = try? graph.simplified() {
      report.simplifiedNodes = simple.nodes.count
      report.inferredOutputs = simple.outputs.map { o in value(simple.valueInfo[o.name] ?? o) }
    }
    if json {
      try writeJSON(report, to: "-")
      return
    }
    print("\(model): opset \(report.opset), \(report.nodes) nodes, \(report.parameters) parameters"
      + (report.producer.map { ", from \($0)" } ?? ""))
    var io = Table(["value", "name", "type", "shape"])
    for v in report.inputs { io.add(["input", v.name, v.dtype ?? "?", "[" + (v.shape ?? ["?"]).joined(separator: ", ") + "]"]) }
    for v in report.outputs { io.add(["output", v.name, v.dtype ?? "?", "[" + (v.shape ?? ["?"]).joined(separator: ", ") + "]"]) }
    for v in report.inferredOutputs ?? [] {
      io.add(["inferred", v.name, v.dtype ?? "?", "[" + (v.shape ?? ["?"]).joined(separator: ", ") + "]"])
    }
    print(io.render())
    if let n = report.simplifiedNodes { print("after simplification: \(n) nodes") }
    print("")
    var ops = Table(["op", "count"])
    for (op, count) in report.ops.sorted(by: { ($0.value, $1.key) > ($1.value, $0.key) }) {
      ops.add([op + (report.unsupportedOps.contains(op) ? " (unsupported)" : ""), String(count)])
    }
    print(ops.render())
  }
}

/// `lowbit ops`: the operators lowbit executes.
struct OpsCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "ops", abstract: "List the ONNX operators lowbit can run.")

  func run() throws {
    print(Ops.supportedOpTypes.joined(separator: "\n"))
  }
}
