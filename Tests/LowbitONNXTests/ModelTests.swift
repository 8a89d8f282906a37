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
