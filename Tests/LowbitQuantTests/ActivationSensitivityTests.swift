import LowbitCore
import LowbitQuant
import LowbitTestSupport
import Testing

/// Mixed precision from the debugging flow: the activation quantizer that hurts the output most
/// when quantized alone is found, and only it gets the wider grid.
@Suite struct ActivationSensitivityTests {
  /// `x [N, 4] -> Gemm -> Relu -> h -> Gemm -> y [N, 3]`. The first layer's channel 3 is 200
  /// times larger than the others and the second layer reads it with a tiny weight, so `h` has
  /// an outlier channel that does not matter: one 8-bit grid over `h` leaves the other
  /// channels, which carry the signal, a handful of levels.
  static func outlierGraph() -> Graph {
    var w1 = randomTensor([4, 4], seed: 41, in: 0.2...1).floats
    for i in 0..<4 { w1[i * 4 + 3] *= 200 }
    var w2 = randomTensor([4, 3], seed: 42).floats
    for j in 0..<3 { w2[3 * 3 + j] *= 0.001 }
    return Graph(
      nodes: [
        Node(name: "fc1", opType: "Gemm", inputs: ["x", "w1", "b1"], outputs: ["p"]),
        Node(name: "relu", opType: "Relu", inputs: ["p"], outputs: ["h"]),
        Node(name: "fc2", opType: "Gemm", inputs: ["h", "w2", "b2"], outputs: ["y"]),
      ],
      inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.symbol("N"), .fixed(4)])],
      outputs: [ValueInfo(name: "y", dtype: .float32)],
      initializers: [
        "w1": Tensor(shape: [4, 4], floats: w1), "b1": Tensor(shape: [4], floats: [0.1, 0.1, 0.1, 0.1]),
        "w2": Tensor(shape: [4, 3], floats: w2), "b2": Tensor(shape: [3], floats: [0, 0, 0]),
      ])
  }

  static func batches() -> [[String: Tensor]] {
    (0..<4).map { ["x": randomTensor([16, 4], seed: 50 + UInt64($0), in: 0...1)] }
  }

  /// Range setting alone (no AdaRound, no bias correction), quantizing what is asked.
  static func rangeSettingOnly(weights: Bool = true, activations: Bool = true) -> QuantConfig {
    var config = QuantConfig()
    config.adaRound = false
    config.biasCorrection = .none
    config.quantizeWeights = weights
    config.quantizeActivations = activations
    return config
  }

  /// The mean square between the written QDQ graph's outputs and the float graph's.
  static func outputError(_ result: QuantizationResult, _ float: Graph) throws -> Double {
    try outputMeanSquare(result.graph, float, batches: batches())
  }

  @Test func theOutlierValueIsTheMostSensitiveAndOnlyItIsRaised() throws {
    let graph = Self.outlierGraph()
    var config = Self.rangeSettingOnly(weights: false)
    let plain = try PostTrainingQuantization.quantize(graph, config: config, batches: Self.batches())
    config.mixedPrecision = 1
    let mixed = try PostTrainingQuantization.quantize(graph, config: config, batches: Self.batches())

    let ranking = mixed.sensitivity
    #expect(ranking.map(\.name).sorted() == ["h", "x", "y"])
    #expect(ranking.first?.name == "h", "\(ranking)")
    #expect(zip(ranking, ranking.dropFirst()).allSatisfy { $0.loss >= $1.loss })
    #expect(ranking.map(\.bits) == [16, 8, 8])
    #expect(mixed.quantizers["h"]?.grid.bits == 16 && mixed.quantizers["x"]?.grid.bits == 8)
    #expect(mixed.graph.opset == 21 && plain.graph.opset < 21)
    #expect(mixed.steps.map(\.step).contains("sensitivity") && mixed.steps.map(\.step).contains("mixed precision"))
    #expect(plain.sensitivity.isEmpty && !plain.steps.map(\.step).contains("sensitivity"))

    let before = try Self.outputError(plain, graph), after = try Self.outputError(mixed, graph)
    print("mixed precision: output mean square \(before) -> \(after); ranking \(ranking)")
    #expect(after < 0.2 * before)
  }

  /// The outlier graph with a second branch `x -> Gemm -> g` concatenated with `h` before the
  /// last layer. Under shared-grid concatenation `h` and `g` are one grid, so raising `h` (the
  /// most sensitive) raises `g` with it, and the two keep equal parameters.
  @Test func raisingOneInputOfASharedGridConcatRaisesItsSiblings() throws {
    var graph = Self.outlierGraph()
    graph.nodes[2].inputs[0] = "hg"
    graph.nodes.insert(contentsOf: [
      Node(name: "fc3", opType: "Gemm", inputs: ["x", "w3", "b1"], outputs: ["g"]),
      Node(name: "join", opType: "Concat", inputs: ["h", "g"], outputs: ["hg"], attributes: ["axis": .int(1)]),
    ], at: 2)
    graph.initializers["w3"] = randomTensor([4, 4], seed: 43)
    graph.initializers["w2"] = randomTensor([8, 3], seed: 44, in: -0.01...0.01)
    var config = Self.rangeSettingOnly(weights: false)
    config.concat = .sharedGrid
    config.mixedPrecision = 1
    let mixed = try PostTrainingQuantization.quantize(graph, config: config, batches: Self.batches())
    let raised = mixed.quantizers.filter { $0.value.grid.bits == 16 }.keys.sorted()
    #expect(raised == ["g", "h"], "\(mixed.sensitivity)")
    #expect(mixed.quantizers["g"]?.params == mixed.quantizers["h"]?.params)
    #expect(mixed.quantizers["x"]?.grid.bits == 8)
    let detail = try #require(mixed.steps.first { $0.step == "mixed precision" }?.detail)
    #expect(detail.contains("and 1 more that share a Concat's grid"), "\(detail)")
  }

  @Test func badSettingsAreRefused() throws {
    var config = QuantConfig()
    config.mixedPrecision = -1
    #expect(throws: LowbitError.self) { try config.validate() }
    config.mixedPrecision = 2
    config.mixedPrecisionBits = 17
    #expect(throws: LowbitError.self) { try config.validate() }
    config.mixedPrecisionBits = 16
    config.opset = 17
    #expect(throws: LowbitError.self) { try config.validate() }  // 16-bit types need opset 21
    config.opset = nil
    #expect(config.outputOpset(modelOpset: 17) == 21)
  }

  /// Weight mixed precision: at 2-bit weights, the weight whose rounding alone hurts the output
  /// most (fc1's, which feeds the signal) is ranked first and only it gets 8 bits; the result
  /// counts its bits in `weightStorageBits`; a target whose kernels take no such width refuses it.
  @Test func theMostSensitiveWeightIsWidened() throws {
    let graph = Self.outlierGraph()
    var config = Self.rangeSettingOnly(activations: false)
    config.weightBits = 2
    let plain = try PostTrainingQuantization.quantize(graph, config: config, batches: Self.batches())
    config.mixedPrecisionWeights = 1
    let mixed = try PostTrainingQuantization.quantize(graph, config: config, batches: Self.batches())
    let ranking = mixed.weightSensitivity
    #expect(ranking.map(\.name).sorted() == ["w1", "w2"])
    #expect(ranking[0].loss >= ranking[1].loss)
    #expect(ranking.map(\.bits) == [8, 2])
    #expect(mixed.quantizers[ranking[0].name]?.grid.bits == 8 && mixed.quantizers[ranking[1].name]?.grid.bits == 2)
    #expect(plain.weightStorageBits == 2 * (16 + 12))
    #expect(mixed.weightStorageBits == (ranking[0].name == "w1" ? 8 * 16 + 2 * 12 : 8 * 12 + 2 * 16))
    let before = try Self.outputError(plain, graph), after = try Self.outputError(mixed, graph)
    #expect(after < before)

    var qnn = QuantConfig(target: .qnn)
    qnn.weightBits = 4
    qnn.mixedPrecisionWeights = 2
    qnn.mixedPrecisionWeightBits = 6
    #expect(DeploymentTarget.qnn.violations(of: qnn).contains { $0.hasPrefix("widened weights:") })
    qnn.mixedPrecisionWeightBits = 8
    #expect(DeploymentTarget.qnn.violations(of: qnn).isEmpty)
  }

  /// A range method set for one quantizer by name changes that quantizer alone; a name no
  /// activation quantizer sits on is refused, naming it.
  @Test func aRangeMethodForOneQuantizer() throws {
    let graph = Self.outlierGraph()
    var config = Self.rangeSettingOnly(weights: false)
    let plain = try PostTrainingQuantization.quantize(graph, config: config, batches: Self.batches())
    config.percentile = 50
    config.activationRangeOverrides = ["h": .percentile]
    let one = try PostTrainingQuantization.quantize(graph, config: config, batches: Self.batches())
    #expect(one.quantizers["h"] != plain.quantizers["h"])
    #expect(one.quantizers["x"] == plain.quantizers["x"] && one.quantizers["y"] == plain.quantizers["y"])
    config.activationRangeOverrides = ["nowhere": .minMax]
    #expect(throws: LowbitError.self) { try PostTrainingQuantization.quantize(graph, config: config, batches: Self.batches()) }
  }
}
