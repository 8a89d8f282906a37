import LowbitCore
import LowbitQuant
import LowbitTestSupport
import Testing

/// The nodes a QDQ file adds are named after the values they write; graphs built by hand (and
/// some exporters) name each node after its output too.
@Suite struct QDQNodeNameTests {
  /// `x -> MatMul 'hidden' -> MatMul 'logits'`, each node named as the value it writes and
  /// `logits` the graph output: the DequantizeLinear that writes `logits` after quantization is
  /// not named `logits` again, every node name is unique, and the file computes what it did.
  @Test func nodesNamedAfterTheirOutputsKeepEveryNodeNameUnique() throws {
    let g = Graph(
      nodes: [
        Node(name: "hidden", opType: "MatMul", inputs: ["x", "w1"], outputs: ["hidden"]),
        Node(name: "logits", opType: "MatMul", inputs: ["hidden", "w2"], outputs: ["logits"]),
      ],
      inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(8)])],
      outputs: [ValueInfo(name: "logits", dtype: .float32)],
      initializers: ["w1": randomTensor([8, 6], seed: 1), "w2": randomTensor([6, 5], seed: 2)])
    var config = QuantConfig()
    config.adaRound = false
    let batches = (0..<2).map { ["x": randomTensor([16, 8], seed: 10 + UInt64($0))] }
    let result = try PostTrainingQuantization.quantize(g, config: config, batches: batches)
    let names = result.graph.nodes.map(\.name)
    #expect(Set(names).count == names.count, "\(names)")
    let writer = result.graph.nodes.first { $0.outputs.contains("logits") }
    #expect(writer?.opType == "DequantizeLinear" && writer?.name == "logits_1")
    #expect(result.graph.nodes.first { $0.name == "logits" }?.opType == "MatMul")
    let float = try Interpreter(g).run(batches[0])["logits"]!.floats
    let quantized = try Interpreter(result.graph).run(batches[0])["logits"]!.floats
    let largest = float.map(abs).max()!
    #expect(zip(float, quantized).allSatisfy { abs($0 - $1) < 0.05 * largest })
  }
}
