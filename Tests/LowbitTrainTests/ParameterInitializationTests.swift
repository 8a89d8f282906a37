import Foundation
import LowbitCore
import LowbitONNX
import LowbitTestSupport
@testable import LowbitTrain
import Testing

/// `ParameterInitialization.heNormal` on fm_resnet20's architecture: He-normal weights with the
/// right spread per layer, zero biases, BatchNorm at identity, the same model for the same seed.
@Suite struct ParameterInitializationTests {
  @Test func heNormalMatchesItsFormulaAndTheSeed() throws {
    let trained = try ONNXReader.load(contentsOf: demoModelPath("fm_resnet20")).simplified()
    let a = try ParameterInitialization.heNormal(trained, seed: 7)
    let b = try ParameterInitialization.heNormal(trained, seed: 7)
    let c = try ParameterInitialization.heNormal(trained, seed: 8)
    #expect(a.initializers == b.initializers)
    #expect(a.initializers != c.initializers)
    #expect(a.nodes == trained.nodes)
    for node in a.nodes {
      switch node.opType {
      case "Conv", "Gemm":
        let w = a.initializers[node.inputs[1]]!.floats
        let fanIn = node.opType == "Conv" ? a.initializers[node.inputs[1]]!.shape.dropFirst().reduce(1, *)
          : a.initializers[node.inputs[1]]!.shape[1]
        let mean = w.reduce(0, +) / Float(w.count)
        let std = (w.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(w.count)).squareRoot()
        let expected = (2 / Float(fanIn)).squareRoot()
        // Sampling error of a standard deviation from n draws: about 1/sqrt(2n) relative.
        let tolerance = 4 / (2 * Float(w.count)).squareRoot() + 0.01
        #expect(abs(std / expected - 1) < tolerance, "\(node.name): std \(std), expected \(expected)")
        #expect(abs(mean) < 4 * expected / Float(w.count).squareRoot())
        #expect(w != trained.initializers[node.inputs[1]]!.floats)
        if node.inputs.count > 2 { #expect(a.initializers[node.inputs[2]]!.floats.allSatisfy { $0 == 0 }) }
      case "BatchNormalization":
        #expect(a.initializers[node.inputs[1]]!.floats.allSatisfy { $0 == 1 })
        #expect(a.initializers[node.inputs[2]]!.floats.allSatisfy { $0 == 0 })
        #expect(a.initializers[node.inputs[3]]!.floats.allSatisfy { $0 == 0 })
        #expect(a.initializers[node.inputs[4]]!.floats.allSatisfy { $0 == 1 })
      default: break
      }
    }
  }
}
