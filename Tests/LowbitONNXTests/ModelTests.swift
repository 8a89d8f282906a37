import Foundation
import LowbitCore
import LowbitTestSupport
import Testing

@testable import LowbitONNX

@Suite struct ModelTests {
  @Test(arguments: ["fm_resnet20", "fm_mobilenetv2", "fm_inception"])
  func simplifyingAndFoldingKeepTheDemoModelsOutputs(_ name: String) throws {
    let graph = try ONNXReader.load(contentsOf: demoModelPath(name))
    let x = randomTensor([3, 1, 28, 28], seed: 5)
    let reference = try Interpreter(graph, fuseActivations: false).run(["input": x])["logits"]!
    let simple = try graph.simplified()
    let folded = try simple.foldingBatchNorm()
    #expect(!folded.graph.nodes.contains { $0.opType == "BatchNormalization" })
    #expect(folded.statistics.count == graph.opHistogram["BatchNormalization"])
    let out = try Interpreter(folded.graph).run(["input": x])["logits"]!
    #expect(out.shape == [3, 10])
    #expect(maxRelativeError(out.floats, reference.floats) < 1e-5)
    #expect(simple.valueInfo["logits"]?.shape == [.symbol("N"), .fixed(10)])
  }

  @Test func writtenModelRunsIdentically() throws {
    let graph = try ONNXReader.load(contentsOf: demoModelPath("fm_inception")).simplified()
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("lowbit-rt-\(getpid()).onnx").path
    defer { try? FileManager.default.removeItem(atPath: path) }
    try ONNXWriter.write(graph, to: path)
    let back = try ONNXReader.load(contentsOf: path)
    let x = randomTensor([2, 1, 28, 28], seed: 6)
    #expect(try Interpreter(back).run(["input": x]) == (try Interpreter(graph).run(["input": x])))
  }
}

@Suite struct BatchConsistencyTests {
  /// Large batches run GEMMs on several threads at once: every row must equal the same image run
  /// alone (this caught a BLAS build that is not safe for concurrent calls).
  @Test(arguments: ["fm_mobilenetv2", "fm_resnet20"])
  func batchedRowsEqualSingleImageRuns(_ name: String) throws {
    let interpreter = try Interpreter(try ONNXReader.load(contentsOf: demoModelPath(name)).simplified())
    let x = randomTensor([48, 1, 28, 28], seed: 33)
    let batched = try interpreter.run(["input": x])["logits"]!.floats
    for i in stride(from: 0, to: 48, by: 7) {
      let one = Tensor(shape: [1, 1, 28, 28], floats: Array(x.floats[(i * 784)..<((i + 1) * 784)]))
      let single = try interpreter.run(["input": one])["logits"]!.floats
      #expect(maxRelativeError(Array(batched[(i * 10)..<((i + 1) * 10)]), single) < 1e-5, "row \(i)")
    }
    for _ in 0..<3 { #expect(try interpreter.run(["input": x])["logits"]!.floats == batched) }
  }
}
