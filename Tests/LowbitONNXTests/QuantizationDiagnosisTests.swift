import Foundation
import LowbitCore
import LowbitData
@testable import LowbitQuant
import LowbitTestSupport
import Testing

@testable import LowbitONNX

@Suite struct QuantizationDiagnosisTests {
  /// fm_resnet20 with BatchNorm folded and a planted fault the float model does not see: output
  /// channel 0 of features.1's first conv scaled by 1000 (weights and bias), input channel 0 of
  /// the conv after its ReLU divided by 1000. Per-tensor grids then lose every other channel of
  /// that layer, and the flow must rank its quantizers first.
  static func plantedFault() throws -> Graph {
    var (g, _) = try PostTrainingQuantization.prepare(try ONNXReader.load(contentsOf: demoModelPath("fm_resnet20")))
    let first = try #require(g.nodes.first { $0.name == "/features/features.1/c1/c1.0/Conv" })
    let second = try #require(g.nodes.first { $0.name == "/features/features.1/c2/c2.0/Conv" })
    var w = g.initializers[first.inputs[1]]!.floats, b = g.initializers[first.inputs[2]]!.floats
    let wShape = g.initializers[first.inputs[1]]!.shape
    let row = wShape.dropFirst().reduce(1, *)
    for i in 0..<row { w[i] *= 1000 }
    b[0] *= 1000
    g.initializers[first.inputs[1]] = Tensor(shape: wShape, floats: w)
    g.initializers[first.inputs[2]] = Tensor(shape: [b.count], floats: b)
    let v = g.initializers[second.inputs[1]]!
    var u = v.floats
    let (cin, taps) = (v.shape[1], v.shape[2] * v.shape[3])
    for o in 0..<v.shape[0] { for t in 0..<taps { u[(o * cin) * taps + t] /= 1000 } }
    g.initializers[second.inputs[1]] = Tensor(shape: v.shape, floats: u)
    return g
  }

  @Test func plantedFaultIsRankedFirstAndTheNumbersHold() throws {
    let graph = try Self.plantedFault()
    var config = QuantConfig.rangeSettingOnly
    config.inputPerChannel = false
    let result = try PostTrainingQuantization.quantize(graph, config: config, batches: FeedBatches(syntheticBatches(2)))
    let d = try QuantizationDiagnosis.diagnose(result, batches: FeedBatches(syntheticBatches(1, batch: 8)), samples: 8)
    #expect(d.samples == 8)
    // The planted scaling keeps the float function: the sanity check sees float rounding only.
    #expect(d.sanityMaxDifference < 1e-2)
    #expect(d.variants.map(\.name) == ["all quantizers", "weights only", "activations only"])
    let ranked = d.quantizers.sorted { $0.lossAlone > $1.lossAlone }
    let faulty: Set<String> = [
      "/features/features.1/c1/c1.2/Relu_output_0",
      result.sites.first { $0.consumer == "/features/features.1/c1/c1.0/Conv" }!.name,
    ]
    #expect(faulty.contains(ranked[0].name), "ranked first: \(ranked.prefix(3).map(\.name))")
    // Every quantizer's tensor numbers: histogram counts are the values seen, clipped in [0, 1],
    // one range per output channel for weights.
    let layers = result.floatGraph.nodes.filter { ["Conv", "Gemm"].contains($0.opType) }
    #expect(d.layers.count == layers.count)
    for q in d.quantizers {
      #expect((0...1).contains(q.clipped))
      if q.kind == .weight {
        let w = result.equalizedGraph.initializers[q.name]!
        #expect(q.histogram.counts.reduce(0, +) == w.count)
        #expect(q.channelRanges.count == w.shape[0])
        #expect(q.channelRanges.allSatisfy { $0.upperBound <= w.floats.max()! && $0.lowerBound >= w.floats.min()! })
      }
    }
    // The fig. 6 view shows the fault: channel 0's range dwarfs the others'.
    let faultyWeight = d.quantizers.first { $0.kind == .weight && faulty.contains($0.name) }!
    let widths = faultyWeight.channelRanges.map { $0.upperBound - $0.lowerBound }
    #expect(widths[0] > 100 * widths.dropFirst().sorted()[widths.count / 2])
    // ... and the causes name it: a per-tensor grid over channel ranges 1000x apart.
    let cause = try #require(d.causes.first { $0.kind == .weightChannelRanges })
    let i = try #require(cause.quantizers.firstIndex(of: faultyWeight.name))
    #expect(cause.roles[i].node == "/features/features.1/c1/c1.0/Conv" && cause.roles[i].opType == "Conv" && !cause.roles[i].depthwise)
    #expect(cause.measures[i] > 40)  // about 20 log10(1000 / a few) dB
  }

  /// The per-tensor penalty is `10 log10(mean_c (max a / a_c)^2)`; the outlier ratio the range
  /// over the central 99.9%'s bins.
  @Test func causeMeasuresFollowTheirFormulas() {
    func weight(_ amplitudes: [Float]) -> QuantizationDiagnosis.Quantizer {
      .init(
        name: "w", kind: .weight, bits: 8, perChannel: false, tensorSQNR: 0, clipped: 0, lossAlone: 1, lossWithoutIt: 0,
        channelRanges: amplitudes.map { -$0...($0 / 2) }, gridRanges: [], histogram: .init(lower: 0, upper: 1, counts: []))
    }
    // amplitudes 1, 2, 4: mean of (4/1)^2, (4/2)^2, 1 = 7.
    #expect(abs(QuantizationDiagnosis.perTensorPenalty(weight([1, 2, 4]))! - 10 * log10(7.0)) < 1e-9)
    #expect(QuantizationDiagnosis.perTensorPenalty(weight([3])) == nil)
    // 10,000 values in bin 0..9 of 100 bins, one in bin 99: the tail (5 values) drops the
    // outlier, the central bins are 0...9, the ratio 100 / 10.
    var counts = [Int](repeating: 0, count: 100)
    for b in 0..<10 { counts[b] = 1000 }
    counts[99] = 1
    #expect(QuantizationDiagnosis.outlierRatio(.init(lower: -1, upper: 9, counts: counts)) == 10)
    #expect(QuantizationDiagnosis.outlierRatio(.init(lower: 0, upper: 1, counts: [5])) == nil)
  }

  /// The loss and SQNR of "all quantizers" are the QDQ graph's own against the float model.
  @Test func allQuantizersVariantIsTheWrittenGraph() throws {
    let graph = try ONNXReader.load(contentsOf: demoModelPath("fm_mobilenetv2"))
    var config = QuantConfig.rangeSettingOnly
    config.weightBits = 4
    let batches = FeedBatches(syntheticBatches(1, batch: 4))
    let result = try PostTrainingQuantization.quantize(graph, config: config, batches: batches)
    let d = try QuantizationDiagnosis.diagnose(result, batches: batches, samples: 4)
    let float = try Interpreter(result.floatGraph), quantized = try Interpreter(result.graph)
    let feeds = try batches.batch(0)
    let out = result.floatGraph.outputs[0].name
    let (t, y) = (try float.run(feeds)[out]!, try quantized.run(feeds)[out]!)
    #expect(abs(d.variants[0].sqnr - Metrics.sqnr(reference: t.floats, quantized: y.floats)) < 1e-6)
  }
}
