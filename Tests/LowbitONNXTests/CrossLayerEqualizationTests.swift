import Foundation
import LowbitCore
import LowbitQuant
import LowbitTestSupport
import Testing

@testable import LowbitONNX

@Suite struct CrossLayerEqualizationTests {
  @Test(arguments: ["fm_resnet20", "fm_mobilenetv2"])
  func equalizationKeepsOutputsAndEqualizesRanges(_ name: String) throws {
    let (float, _) = try PostTrainingQuantization.prepare(try ONNXReader.load(contentsOf: demoModelPath(name)))
    let (equalized, pairs) = CrossLayerEqualization.equalize(float)
    #expect(!pairs.isEmpty)
    // Inputs far outside the data's range, so that ReLU6 clips: the function is the original's.
    let x = randomTensor([4, 1, 28, 28], seed: 21, in: -8...16)
    let a = try Interpreter(float).run(["input": x])["logits"]!
    let b = try Interpreter(equalized).run(["input": x])["logits"]!
    #expect(maxRelativeError(b.floats, a.floats) < 1e-4)
    // Per pair, the first layer's output-channel ranges equal the second's input-channel ranges.
    let byName = Dictionary(uniqueKeysWithValues: equalized.nodes.map { ($0.name, $0) })
    for p in pairs {
      let w1 = equalized.initializers[byName[p.first]!.inputs[1]]!
      let second = byName[p.second]!
      let w2 = equalized.initializers[second.inputs[1]]!
      var groups = 1
      if case .int(let g)? = second.attributes["group"] { groups = g }
      let r1 = CrossLayerEqualization.outputChannelRanges(w1)
      let r2 = CrossLayerEqualization.inputChannelRanges(w2, group: groups, channels: r1.count)
      for (u, v) in zip(r1, r2) where u > 0 && v > 0 {
        #expect(Swift.abs(u - v) <= 1e-3 * Swift.max(u, v), "\(p.first) -> \(p.second): \(u) vs \(v)")
      }
    }
  }

  @Test func depthwiseSeparableChainsAndReLU6AreHandled() throws {
    let (float, _) = try PostTrainingQuantization.prepare(try ONNXReader.load(contentsOf: demoModelPath("fm_mobilenetv2")))
    let (equalized, pairs) = CrossLayerEqualization.equalize(float)
    let groups = { (name: String) -> Int in
      if case .int(let g)? = equalized.nodes.first(where: { $0.name == name })?.attributes["group"] { return g }
      return 1
    }
    // Expand 1x1 -> depthwise and depthwise -> project pairs both appear.
    #expect(pairs.contains { groups($0.second) > 1 })
    #expect(pairs.contains { groups($0.first) > 1 })
    // Each ReLU6 between a pair keeps its bound per channel: 6 / s_i, as Relu then Min.
    let bounds = equalized.nodes.filter { $0.opType == "Min" }
    #expect(bounds.count == pairs.count)
    let byOutput = Dictionary(uniqueKeysWithValues: equalized.nodes.map { ($0.outputs[0], $0) })
    for p in pairs {
      let conv = equalized.nodes.first { $0.name == p.second }!
      let min = byOutput[conv.inputs[0]]!
      #expect(min.opType == "Min" && byOutput[min.inputs[0]]?.opType == "Relu")
      let u = equalized.initializers[min.inputs[1]]!.floats
      for (bound, s) in zip(u, p.scales) { #expect(Swift.abs(bound * s - 6) <= 1e-4 * 6) }
    }
  }
}

@Suite struct HighBiasAbsorptionModelTests {
  /// CLE then high-bias absorption on the demo models: the float function is unchanged on
  /// calibration data (c from the BatchNorm statistics, capped by the data's minima).
  @Test(arguments: ["fm_resnet20", "fm_mobilenetv2"])
  func equalizationAndAbsorptionKeepOutputs(_ name: String) throws {
    let graph = try ONNXReader.load(contentsOf: demoModelPath(name))
    let batches = syntheticBatches(2, batch: 8, seed: 31)
    var config = QuantConfig.rangeSettingOnly
    config.crossLayerEqualization = true
    config.biasAbsorption = true
    let result = try PostTrainingQuantization.quantize(graph, config: config, batches: batches)
    for feeds in batches {
      let a = try Interpreter(result.floatGraph).run(feeds)["logits"]!
      let b = try Interpreter(result.transformedGraph).run(feeds)["logits"]!
      #expect(maxRelativeError(b.floats, a.floats) < 1e-4)
    }
    // (These trained models have no BatchNorm with beta - 3 gamma > 0, so nothing is absorbed:
    // the synthetic BiasAbsorptionTests cover the moves themselves.)
    #expect(result.absorbed.allSatisfy { $0.source == .batchNorm })
  }
}

@Suite struct PipelineStepTests {
  /// Analytical bias correction inside the pipeline corrects the layers whose input comes from a
  /// folded BatchNorm, and the result still runs.
  @Test func analyticalBiasCorrectionCorrectsLayersAfterBatchNorm() throws {
    let graph = try ONNXReader.load(contentsOf: demoModelPath("fm_resnet20"))
    var config = QuantConfig.rangeSettingOnly
    config.weightBits = 4
    config.biasCorrection = .analytical
    let batches = syntheticBatches(1, batch: 4, seed: 3)
    let result = try PostTrainingQuantization.quantize(graph, config: config, batches: batches)
    #expect(result.analyticallyCorrected.count >= 9, "\(result.analyticallyCorrected)")
    #expect(result.steps.contains { $0.step == "bias correction" })
    let y = try Interpreter(result.graph).run(batches[0])["logits"]!
    let finite = y.floats.allSatisfy { $0.isFinite }
    #expect(finite)
  }
}
