import Foundation
import LowbitCore
import LowbitData
import LowbitQuant
import LowbitTestSupport
import Testing

@testable import LowbitONNX

/// Seeded inputs shaped like Fashion-MNIST images, as calibration batches.
func syntheticBatches(_ count: Int, batch: Int = 16, seed: UInt64 = 1) -> [[String: Tensor]] {
  (0..<count).map { i in ["input": randomTensor([batch, 1, 28, 28], seed: seed + UInt64(i), in: -0.8...2.0)] }
}

@Suite struct QuantizedModelTests {
  @Test func resnet20PlacementFollowsThePaper() throws {
    let graph = try ONNXReader.load(contentsOf: demoModelPath("fm_resnet20"))
    let (float, _) = try PostTrainingQuantization.prepare(graph)
    let sites = QuantizerPlacement.sites(in: float, config: QuantConfig())
    let activations = Set(sites.filter { $0.kind == .activation }.map(\.name))
    let readers = float.consumers()
    // After BN folding there is no BatchNormalization left to quantize after.
    #expect(!float.nodes.contains { $0.opType == "BatchNormalization" })
    // One weight quantizer per Conv and Gemm.
    #expect(sites.filter { $0.kind == .weight }.count == 22)
    for node in float.nodes {
      let out = node.outputs[0]
      let next = readers[out]?.count == 1 ? float.nodes[readers[out]![0]] : nil
      switch node.opType {
      case "Conv":
        // conv + ReLU unit: quantizer after the ReLU, none between; a conv without ReLU: after the conv.
        if next?.opType == "Relu" {
          #expect(!activations.contains(out), "quantizer between \(node.name) and its ReLU")
          #expect(activations.contains(next!.outputs[0]), "no quantizer after the ReLU of \(node.name)")
        } else {
          #expect(activations.contains(out), "no quantizer after \(node.name)")
        }
      case "Add":
        // residual add: one quantizer after it (after its ReLU when one follows).
        let end = next?.opType == "Relu" ? next!.outputs[0] : out
        #expect(activations.contains(end), "no quantizer after residual add \(node.name)")
      default: break
      }
    }
    #expect(activations.contains("input"))
    #expect(activations.contains("logits"))
    // Exactly: the input, 19 ReLU ends (10 conv + ReLU, 9 add + ReLU), 11 convs without ReLU
    // (9 second convs of a block, 2 downsampling 1x1), the average pool and the logits.
    #expect(activations.contains(float.nodes.first { $0.opType == "GlobalAveragePool" }!.outputs[0]))
    let expected = 1 + 19 + 11 + 1 + 1
    #expect(activations.count == expected)
  }

  @Test func withEveryQuantizerOffTheSimulationEqualsTheFloatEngine() throws {
    let graph = try ONNXReader.load(contentsOf: demoModelPath("fm_mobilenetv2"))
    var config = QuantConfig.rangeSettingOnly
    config.quantizeWeights = false
    config.quantizeActivations = false
    let result = try PostTrainingQuantization.quantize(graph, config: config, batches: [])
    #expect(!result.graph.nodes.contains { $0.opType == "QuantizeLinear" || $0.opType == "DequantizeLinear" })
    let x = randomTensor([4, 1, 28, 28], seed: 3)
    let reference = try Interpreter(graph).run(["input": x])["logits"]!
    let simulated = try Interpreter(result.graph).run(["input": x])["logits"]!
    #expect(maxRelativeError(simulated.floats, reference.floats) < 1e-5)
  }

  @Test func w8a8SimulationStaysCloseToFloatAndWritesIntegers() throws {
    let graph = try ONNXReader.load(contentsOf: demoModelPath("fm_resnet20"))
    var config = QuantConfig.rangeSettingOnly
    config.perChannel = true
    let result = try PostTrainingQuantization.quantize(graph, config: config, batches: syntheticBatches(3))
    let weights = result.graph.initializers.values.filter { $0.dtype == .int8 && $0.rank == 4 }
    #expect(weights.count == 21)
    // Held at their width: one byte per int8 weight.
    #expect(weights.allSatisfy { $0.isPacked && $0.heldBytes == $0.count })
    let biases = result.graph.initializers.filter { $0.value.dtype == .int32 && $0.key.hasSuffix("_quantized") }
    #expect(biases.count == 22)
    let x = syntheticBatches(1, batch: 8, seed: 99)[0]["input"]!
    let reference = try Interpreter(graph).run(["input": x])["logits"]!
    let simulated = try Interpreter(result.graph).run(["input": x])["logits"]!
    #expect(Metrics.sqnr(reference: reference.floats, quantized: simulated.floats) > 20)
  }

  @Test func writtenFileRunsLikeTheSimulation() throws {
    let graph = try ONNXReader.load(contentsOf: demoModelPath("fm_inception"))
    var config = QuantConfig.rangeSettingOnly
    config.weightBits = 4
    let result = try PostTrainingQuantization.quantize(graph, config: config, batches: syntheticBatches(2))
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("lowbit-q-\(getpid()).onnx").path
    defer { try? FileManager.default.removeItem(atPath: path) }
    try ONNXWriter.write(result.graph, to: path)
    let back = try ONNXReader.load(contentsOf: path)
    let x = syntheticBatches(1, batch: 4, seed: 7)[0]
    #expect(try Interpreter(back).run(x) == (try Interpreter(result.graph).run(x)))
    // 4-bit weights are written as int4 (opset 21 by default), two to a byte, and read back inside [-8, 7].
    #expect(back.opset == 21)
    let w = back.initializers.values.filter { $0.rank == 4 }
    #expect(!w.isEmpty && w.allSatisfy { $0.dtype == .int4 && $0.ints.allSatisfy { (-8...7).contains($0) } })
  }

  @Test func badConfigurationsAreRefusedWithTheirLimits() {
    var c = QuantConfig()
    c.weightBits = 1
    #expect(throws: LowbitError.self) { try c.validate() }
    c = QuantConfig()
    c.activationBits = 17
    let e = #expect(throws: LowbitError.self) { try c.validate() }
    #expect(e?.message.contains("2 to 16") == true)
    c = QuantConfig()
    c.weightBits = 12
    c.opset = 17
    #expect(throws: LowbitError.self) { try c.validate() }
  }

  @Test func calibrationWithoutBatchesIsAnError() throws {
    let graph = try ONNXReader.load(contentsOf: demoModelPath("fm_resnet20"))
    let e = #expect(throws: LowbitError.self) { try PostTrainingQuantization.quantize(graph, config: QuantConfig(), batches: []) }
    #expect(e?.message.contains("at least one batch") == true)
  }
}

@Suite struct GranularityAndConcatTests {
  @Test func sharedGridGivesEveryConcatInputTheSameParameters() throws {
    let graph = try ONNXReader.load(contentsOf: demoModelPath("fm_inception"))
    var config = QuantConfig.rangeSettingOnly
    config.concat = .sharedGrid
    let result = try PostTrainingQuantization.quantize(graph, config: config, batches: syntheticBatches(2))
    let float = result.floatGraph
    let producer = float.producers()
    let concats = float.nodes.filter { $0.opType == "Concat" }
    #expect(concats.count == 3)
    for concat in concats {
      #expect(result.quantizers[concat.outputs[0]] == nil, "shared grid: no quantizer after the concat")
      var params: [QuantParams] = []
      for input in concat.inputs {
        var v = input
        while result.quantizers[v] == nil, let p = producer[v], let src = float.nodes[p].inputs.first,
              QuantizerPlacement.dataMovement.contains(float.nodes[p].opType) { v = src }
        if let q = result.quantizers[v] { params.append(q.params[0]) }
      }
      #expect(params.count == concat.inputs.count)
      #expect(Set(params.map(\.scale)).count == 1 && Set(params.map(\.zeroPoint)).count == 1)
    }
    var requantize = QuantConfig.rangeSettingOnly
    requantize.concat = .requantize
    let other = try PostTrainingQuantization.quantize(graph, config: requantize, batches: syntheticBatches(2))
    #expect(concats.allSatisfy { other.quantizers[$0.outputs[0]] != nil })
  }

  /// Target qnn ties quantizers as aimet-onnx does: each Concat's inputs share a grid, an
  /// AveragePool's output takes its input's grid, and the groups merge (fm_inception's second
  /// and third AveragePools read a MaxPool of a Concat, so they join that Concat's group); the
  /// encodings give each Concat output its group's entry.
  @Test func qnnTiesConcatAndAveragePoolGridsAndTheirEncodings() throws {
    let graph = try ONNXReader.load(contentsOf: demoModelPath("fm_inception"))
    var config = QuantConfig(target: .qnn)
    (config.crossLayerEqualization, config.biasAbsorption, config.adaRound, config.biasCorrection) = (false, false, false, .none)
    config.quantizerTuning = false
    let result = try PostTrainingQuantization.quantize(graph, config: config, batches: syntheticBatches(2))
    let g = result.transformedGraph
    let pools = g.nodes.filter { $0.opType == "AveragePool" }
    #expect(pools.count == 3)
    let activations = Set(result.sites.filter { $0.kind == .activation }.map(\.name))
    let groups = Calibration.tiedGroups(g, quantized: activations, config: config)
    for pool in pools {
      let out = pool.outputs[0]
      let group = try #require(groups.first { $0.contains(out) }, "\(out) is tied")
      let params = Set(group.compactMap { result.quantizers[$0]?.params[0].scale })
      #expect(params.count == 1, "one grid in the group of \(out): \(group)")
    }
    let encodings = try result.encodings(version: .v1_0_0, config: config)
    for concat in g.nodes where concat.opType == "Concat" {
      let entry = try #require(encodings.activations[concat.outputs[0]])
      let group = try #require(groups.first { $0.contains(concat.outputs[0]) })
      let member = try #require(group.first { result.quantizers[$0] != nil })
      #expect(entry.scales == result.quantizers[member]!.params.map(\.scale))
    }
    var untied = config
    untied.averagePoolKeepsGrid = false
    #expect(DeploymentTarget.qnn.violations(of: untied).contains { $0.contains("AveragePool") })
  }

  @Test func perGroupWeightsUseBlocksAlongTheInputAxis() throws {
    let graph = try ONNXReader.load(contentsOf: demoModelPath("fm_resnet20"))
    var config = QuantConfig.rangeSettingOnly
    config.weightBits = 4
    config.weightGroupSize = 8
    let result = try PostTrainingQuantization.quantize(graph, config: config, batches: syntheticBatches(1))
    #expect(result.graph.opset == 21)
    let site = result.sites.first { $0.kind == .weight && result.floatGraph.initializers[$0.name]!.shape[1] == 16 }!
    let w = result.floatGraph.initializers[site.name]!
    let q = result.quantizers[site.name]!
    #expect(q.granularity == .perGroup(axis: 1, size: 8))
    #expect(q.params.count == w.shape[0] * 2 * w.shape[2] * w.shape[3])
    let dq = result.graph.nodes.first { $0.opType == "DequantizeLinear" && $0.inputs[0].hasPrefix(site.name) }!
    #expect(dq.attributes["block_size"] == .int(8) && dq.attributes["axis"] == .int(1))
    // Each block's grid is fitted to that block: the block's largest |w| maps to 7 or -8.
    let x = syntheticBatches(1, batch: 2, seed: 5)[0]
    let simulated = try Interpreter(result.graph).run(x)["logits"]!
    #expect(simulated.shape == [2, 10] && simulated.floats.allSatisfy(\.isFinite))
  }
}
