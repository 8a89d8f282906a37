import ArgumentParser
import LowbitCore
import LowbitONNX
import LowbitReport

/// `lowbit simplify`: the engine's graph simplification, written back as ONNX.
struct SimplifyCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "simplify",
    abstract: "Fold constants and shape subgraphs, drop Identity and dead nodes, and write the model back.",
    discussion: "The written file computes the same outputs; --fold-batchnorm also folds BatchNorm into the layers before it (paper eq. 11-13).")

  @Argument(help: "The ONNX model.")
  var model: String

  @Option(name: .shortAndLong, help: "The ONNX file to write.")
  var output: String

  @Flag(help: "Fold BatchNormalization into the preceding Conv/Gemm.")
  var foldBatchnorm = false

  @OptionGroup var modelOutput: ModelOutputOptions

  @Flag(help: "Print nothing but errors.")
  var quiet = false

  func run() throws {
    let graph = try ONNXReader.load(contentsOf: model)
    var simple = try graph.simplified()
    if foldBatchnorm { simple = try simple.foldingBatchNorm().graph }
    try ONNXWriter.write(simple, to: output, externalData: modelOutput.layout)
    if !quiet {
      var table = Table(["model", "nodes", "initializers"])
      table.add([model, String(graph.nodes.count), String(graph.initializers.count)])
      table.add([output, String(simple.nodes.count), String(simple.initializers.count)])
      print(table.render())
    }
  }
}
