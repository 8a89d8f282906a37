import Foundation
import LowbitCore
import LowbitTestSupport
import Testing

@testable import LowbitQuant

/// `x [N, 40] -> MatMul(w [40, 24]) -> y`: K = 40 is not a multiple of the groups of 16, so the
/// last block of each column is padded.
private func oneLayer() -> Graph {
  Graph(
    nodes: [Node(name: "fc", opType: "MatMul", inputs: ["x", "w"], outputs: ["y"])],
    inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(40)])],
    outputs: [ValueInfo(name: "y", dtype: .float32)],
    initializers: ["w": randomTensor([40, 24], seed: 7, in: -0.5...0.5)])
}

@Suite struct MatMulNBitsWritingTests {
  /// Weight-only files at 2 to 8 bits, symmetric (signed grids) and asymmetric (unsigned, with
  /// zero points): each blocked DequantizeLinear -> MatMul becomes one MatMulNBits of the
  /// narrowest width ONNX Runtime runs that holds the grid (2 at 2 bits, 4 at 3 and 4, 8 at 5 to
  /// 8), the packed bytes are `K`-padded blocks of `bits * block / 8`, and the interpreter's run
  /// of the packed file is the DequantizeLinear file's, value for value (the same weight).
  @Test(arguments: [2, 3, 4, 5, 8], [true, false])
  func packsTheNarrowestWidthOnnxRuntimeRuns(bits: Int, symmetric: Bool) throws {
    var config = QuantConfig.rangeSettingOnly
    config.quantizeActivations = false
    config.weightBits = bits
    config.weightGroupSize = 16
    config.weightSymmetric = symmetric
    let g = oneLayer()
    let result = try PostTrainingQuantization.quantize(g, config: config, batches: [["x": randomTensor([4, 40], seed: 1)]])
    let blocked = try QDQBuilder.build(result.transformedGraph, sites: result.sites, quantizers: result.quantizers, opset: 21)
    let packed = try QDQBuilder.usingMatMulNBits(blocked)
    let node = try #require(packed.nodes.first { $0.opType == "MatMulNBits" })
    let width = bits == 2 ? 2 : bits <= 4 ? 4 : 8
    #expect(node.attributes["bits"] == .int(width) && node.attributes["block_size"] == .int(16))
    #expect(packed.initializers[node.inputs[1]]?.shape == [24, 3, 16 * width / 8])
    #expect((node.inputs.count == 4) == !symmetric)  // symmetric grids: the default zero point 2^(bits-1)
    #expect(result.graph.nodes.map(\.opType) == packed.nodes.map(\.opType))  // what ptq writes for ONNX Runtime
    let x = randomTensor([3, 40], seed: 2)
    let expected = try Interpreter(blocked).run(["x": x])["y"]!.floats
    let got = try Interpreter(packed).run(["x": x])["y"]!.floats
    for (a, b) in zip(got, expected) { #expect(abs(a - b) <= 1e-5 * max(1, abs(b))) }
  }

  /// Weight-only per-group grids of 3 bits and fewer for ONNX Runtime are asymmetric unless set
  /// (`"weight_symmetric"` decodes into the setting); every other default stays symmetric.
  @Test func lowBitWeightOnlyGridsAreAsymmetricByDefault() throws {
    var c = QuantConfig()
    c.quantizeActivations = false
    c.weightGroupSize = 32
    for bits in 2...8 {
      c.weightBits = bits
      #expect(c.weightSymmetric == (bits > 3), "\(bits) bits")
    }
    c.weightBits = 2
    var other = c
    other.target = .qnn
    var whole = c
    whole.quantizeActivations = true
    var perChannel = c
    perChannel.weightGroupSize = nil
    #expect(other.weightSymmetric && whole.weightSymmetric && perChannel.weightSymmetric)
    c.weightSymmetric = true
    #expect(c.weightGrid.signed)
    let decoded = try JSONDecoder().decode(QuantConfig.self, from: Data(#"{"weight_symmetric": true, "weight_bits": 2}"#.utf8))
    #expect(decoded.symmetricWeights == true && QuantConfig().symmetricWeights == nil)
  }

  /// Integers wider than 8 bits have no MatMulNBits form: the blocked DequantizeLinear stays.
  @Test func keepsDequantizeLinearAboveEightBits() throws {
    var config = QuantConfig.rangeSettingOnly
    config.quantizeActivations = false
    config.weightBits = 12
    config.weightGroupSize = 16
    let result = try PostTrainingQuantization.quantize(oneLayer(), config: config, batches: [["x": randomTensor([4, 40], seed: 1)]])
    #expect(result.graph.nodes.map(\.opType).sorted() == ["DequantizeLinear", "MatMul"])
  }
}
