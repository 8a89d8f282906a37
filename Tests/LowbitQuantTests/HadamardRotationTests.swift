import LowbitCore
import LowbitQuant
import LowbitTestSupport
import Testing

/// The online Hadamard rotation (`--rotation`): `R` is orthogonal and the butterflies multiply by
/// it; migration keeps it for a group whose input carries an outlier channel after a nonlinear
/// op, the float function stays the same, and the quantizer sits after the rotation.
@Suite struct HadamardRotationTests {
  @Test func theBlockIsOrthogonalAndTheButterfliesMultiplyByIt() {
    for b in [16, 32, 64] {
      let h = HadamardRotation.matrix(b)
      for i in 0..<b {
        for j in 0..<b {
          let dot = (0..<b).reduce(Float(0)) { $0 + h[i * b + $1] * h[j * b + $1] }
          #expect(abs(dot - (i == j ? 1 : 0)) < 1e-5)
        }
      }
    }
    #expect(HadamardRotation.block(for: 1536) == 64 && HadamardRotation.block(for: 48) == 16 && HadamardRotation.block(for: 40) == nil)
    // x [3, 64] rotated by blocks of 32 equals x diag(H_32, H_32); W [64, 5] rotated equals diag(H_32, H_32) W.
    let k = 64, b = 32, h = HadamardRotation.matrix(b)
    let x = randomTensor([3, k], seed: 5).floats, w = randomTensor([k, 5], seed: 6).floats
    func r(_ i: Int, _ j: Int) -> Float { i / b == j / b ? h[(i % b) * b + j % b] : 0 }
    var rx = x, rw = w
    HadamardRotation.rotate(&rx, k: k, inner: 1, block: b)
    HadamardRotation.rotate(&rw, k: k, inner: 5, block: b)
    for row in 0..<3 {
      for j in 0..<k {
        let expected = (0..<k).reduce(Float(0)) { $0 + x[row * k + $1] * r($1, j) }
        #expect(abs(rx[row * k + j] - expected) < 1e-4)
      }
    }
    for i in 0..<k {
      for c in 0..<5 {
        let expected = (0..<k).reduce(Float(0)) { $0 + r(i, $1) * w[$1 * 5 + c] }
        #expect(abs(rw[i * 5 + c] - expected) < 1e-4)
      }
    }
  }

  /// `y = Relu(x W1) W2` with column 7 of `W1` positive and 40 times the rest: the Relu output
  /// carries one massive channel into `W2`, where no migration can fold `1/s` (a Relu is in the
  /// way) but a rotation spreads it over its block.
  static let width = 64
  static func graph() -> Graph {
    let c = width
    var w1 = randomTensor([c, c], seed: 81).floats
    for i in 0..<c { w1[i * c + 7] = abs(w1[i * c + 7]) * 40 }
    return Graph(
      nodes: [
        Node(name: "fc1", opType: "MatMul", inputs: ["x", "w1"], outputs: ["p"]),
        Node(name: "act", opType: "Relu", inputs: ["p"], outputs: ["h"]),
        Node(name: "fc2", opType: "MatMul", inputs: ["h", "w2"], outputs: ["y"]),
      ],
      inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.symbol("N"), .symbol("L"), .fixed(c)])],
      outputs: [ValueInfo(name: "y", dtype: .float32)],
      initializers: ["w1": Tensor(shape: [c, c], floats: w1), "w2": randomTensor([c, 8], seed: 82)])
  }

  static func batches() -> [[String: Tensor]] {
    (0..<6).map { ["x": randomTensor([8, 4, width], seed: 90 + UInt64($0), in: 0...1)] }
  }

  static func outputError(_ quantized: Graph) throws -> Double {
    try outputMeanSquare(quantized, graph(), batches: batches())
  }

  @Test func theOutlierGroupIsRotatedAndTheQuantizerSitsAfterTheRotation() throws {
    var config = QuantConfig()
    config.migration = MigrationMethod.none
    config.perChannel = true
    config.adaRound = false
    config.biasCorrection = .none
    config.rotation = true
    let rotated = try PostTrainingQuantization.quantize(Self.graph(), config: config, batches: Self.batches())
    let record = try #require(rotated.migration.first { $0.layers == ["fc2"] })
    #expect(record.rotationBlock == 64 && record.alpha == nil && record.error < 0.5 * record.unscaledError, "\(record)")
    // The float function is unchanged (checked against the original) and the rotation is float.
    #expect(rotated.transformChecks.contains { $0.transform == "channel-scale migration" && $0.kept })
    let rotation = try #require(rotated.transformedGraph.nodes.first { HadamardRotation.isRotation($0, in: rotated.transformedGraph) })
    let sites = Set(rotated.quantizers.keys)
    #expect(sites.contains(rotation.outputs[0]) && !sites.contains("h") && !sites.contains(rotation.inputs[1]))
    config.rotation = false
    let plain = try PostTrainingQuantization.quantize(Self.graph(), config: config, batches: Self.batches())
    #expect(plain.migration.isEmpty)
    let (a, b) = (try Self.outputError(rotated.graph), try Self.outputError(plain.graph))
    print("rotation: output mean square \(b) -> \(a)")
    #expect(a < 0.7 * b)
  }

  /// On by default where SmoothQuant runs (a graph with LayerNormalization, quantized weights and
  /// activations, target ort); off for the integer-accelerator targets and elsewhere.
  @Test func onByDefaultWhereSmoothQuantRunsForOnnxRuntime() {
    let transformer = PerChannelActivationTests.block()
    #expect(QuantConfig().rotationInUse(for: transformer))
    #expect(!QuantConfig().rotationInUse(for: Self.graph()))
    for target in [DeploymentTarget.tensorrt, .openvino, .qnn] { #expect(!QuantConfig(target: target).rotationInUse(for: transformer)) }
    var off = QuantConfig()
    off.rotation = false
    #expect(!off.rotationInUse(for: transformer))
  }
}
