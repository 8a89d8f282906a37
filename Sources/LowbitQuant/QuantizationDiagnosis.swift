import Foundation
import LowbitCore
import LowbitData

/// The white paper's PTQ debugging flow (sec. 4.8, fig. 12) measured on one quantization result,
/// every number against the original float model's outputs on the same samples:
///
/// 1. sanity: the float graph after BatchNorm folding, CLE and bias absorption with no quantizer
///    on computes what the original does (`sanityMaxDifference`);
/// 2. weights only and activations only, each against FP32 (`variants`);
/// 3. per quantizer: the error of its own tensor (SQNR `10 log10(sum x^2 / sum (x - x_hat)^2)`,
///    the share of values outside its grid), the output loss with it alone quantized, and with
///    every quantizer but it (what leaving it in float buys), its float tensor's range per
///    channel (fig. 6's view of depthwise weights) and a histogram of its values;
/// 4. per layer: the SQNR of each Conv/Gemm/MatMul output of the quantized network against the
///    float network's, where error accumulates.
///
/// Losses are `OutputLoss`'s (KL for logits, mean square otherwise), averaged over samples.
public struct QuantizationDiagnosis: Sendable, Codable {
  /// A set of quantizers switched on, against FP32.
  public struct Variant: Sendable, Codable, Equatable {
    public var name: String
    public var loss: Double
    /// SQNR (dB) of all compared outputs together against FP32.
    public var sqnr: Double
  }

  /// Counts of a tensor's values in equal bins over `lower ... upper`.
  public struct Histogram: Sendable, Codable, Equatable {
    public var lower: Float
    public var upper: Float
    public var counts: [Int]
  }

  public struct Quantizer: Sendable, Codable {
    public var name: String
    public var kind: QuantizerSite.Kind
    public var bits: Int
    public var perChannel: Bool
    /// SQNR (dB) of the tensor against its quantized values (activations: on the float model's
    /// values over the samples).
    public var tensorSQNR: Double
    /// The share of the tensor's values outside its grid's range (clipped).
    public var clipped: Double
    /// Output loss with this quantizer alone on (weights with the written rounding).
    public var lossAlone: Double
    /// Output loss with every quantizer on but this one.
    public var lossWithoutIt: Double
    /// The float tensor's smallest and largest value per channel along its quantizer's axis
    /// (weights: output channels; one entry for a tensor without an axis).
    public var channelRanges: [ClosedRange<Float>]
    /// The grid's representable range per parameter set.
    public var gridRanges: [ClosedRange<Float>]
    public var histogram: Histogram
  }

  public struct Layer: Sendable, Codable, Equatable {
    public var node: String
    public var opType: String
    /// SQNR (dB) of the layer's output in the quantized network against the float network's.
    public var sqnr: Double
  }

  /// Samples every measurement runs on.
  public var samples: Int
  /// Largest absolute difference between the transformed float graph's outputs and the original's.
  public var sanityMaxDifference: Double
  /// "all quantizers", "weights only", "activations only".
  public var variants: [Variant]
  /// In placement order.
  public var quantizers: [Quantizer]
  /// In graph order.
  public var layers: [Layer]
  /// What the measurements point at (`causes(_:sites:graph:)`), most telling kind first.
  public var causes: [Cause]

  /// Output loss with every quantizer on.
  public var lossAll: Double { variants.first?.loss ?? 0 }

  /// Runs the flow on `result` with the first `samples` samples of `batches` (held-out data when
  /// there is some). `progress` counts the passes.
  public static func diagnose(
    _ result: QuantizationResult, batches: FeedBatches, samples: Int = 64, bins: Int = 48,
    progress: ((Int, Int) -> Void)? = nil
  ) throws -> QuantizationDiagnosis {
    let comparison = try OutputComparison(float: result.floatGraph, batches: batches, samples: samples)
    let sites = result.sites.filter { result.quantizers[$0.name] != nil }
    let opset = result.graph.opset
    let equalized = result.equalizedGraph, transformed = result.transformedGraph
    func build(_ graph: Graph, _ chosen: [QuantizerSite]) throws -> Graph {
      try QDQBuilder.build(graph, sites: chosen, quantizers: result.quantizers, opset: opset, integerBiases: result.integerBiases)
    }
    let passes = 2 * sites.count + 7
    var done = 0
    func step() {
      done += 1
      progress?(done, passes)
    }

    var sanity = 0.0
    let float = try Interpreter(equalized)
    for (b, feeds) in comparison.batches.enumerated() {
      let y = try float.run(feeds)
      for output in comparison.outputs {
        guard let a = y[output.name], let t = comparison.targets[b][output.name], a.shape == t.shape else { continue }
        sanity = max(sanity, zip(a.floats, t.floats).map { Double(abs($0 - $1)) }.max() ?? 0)
      }
    }
    step()

    var variants: [Variant] = []
    for (name, graph) in [
      ("all quantizers", result.graph),
      ("weights only", try build(transformed, sites.filter { $0.kind == .weight })),
      ("activations only", try build(equalized, sites.filter { $0.kind == .activation })),
    ] {
      let m = try comparison.measure(graph)
      variants.append(Variant(name: name, loss: m.loss, sqnr: m.sqnr))
      step()
    }

    let tensors = try TensorStatistics.measure(
      sites: sites, quantizers: result.quantizers, equalized: equalized, transformed: transformed,
      batches: comparison.batches, bins: bins)
    step()
    step()

    var quantizers: [Quantizer] = []
    for site in sites {
      let q = result.quantizers[site.name]!
      let alone = try build(withWrittenWeight(site, equalized, from: transformed), [site])
      let lossAlone = try comparison.loss(alone)
      step()
      let lossWithout = try comparison.loss(try build(transformed, sites.filter { $0.name != site.name }))
      step()
      let s = tensors[site.name]!
      let perChannel: Bool
      if case .perTensor = q.granularity { perChannel = false } else { perChannel = true }
      quantizers.append(Quantizer(
        name: site.name, kind: site.kind, bits: q.grid.bits, perChannel: perChannel, tensorSQNR: s.sqnr,
        clipped: s.clipped, lossAlone: lossAlone, lossWithoutIt: lossWithout, channelRanges: s.channelRanges,
        gridRanges: q.params.map { UniformQuantizer.representableRange($0, q.grid) }, histogram: s.histogram))
    }

    let layers = try layerSQNR(quantized: result.graph, float: equalized, batches: comparison.batches)
    step()
    return QuantizationDiagnosis(
      samples: comparison.sizes.reduce(0, +), sanityMaxDifference: sanity, variants: variants,
      quantizers: quantizers, layers: layers, causes: causes(quantizers, sites: sites, graph: equalized))
  }

  /// `graph` with the weight of a weight site (and its layer's bias) as the result writes them
  /// (AdaRound's rounding, the corrected bias), so that quantizing it alone measures the file's
  /// weights; activation sites get `graph` unchanged.
  static func withWrittenWeight(_ site: QuantizerSite, _ graph: Graph, from written: Graph) -> Graph {
    guard site.kind == .weight, let w = written.initializers[site.name] else { return graph }
    var g = graph
    g.initializers[site.name] = w
    if let consumer = site.consumer, let node = written.nodes.first(where: { $0.name == consumer }), node.inputs.count > 2,
       let b = written.initializers[node.inputs[2]], g.initializers[node.inputs[2]] != nil {
      g.initializers[node.inputs[2]] = b
    }
    return g
  }

  /// Per Conv/Gemm/MatMul with a float output, the SQNR of its output in `quantized` against `float`
  /// (values matched by name; activations not fused, so every layer output is seen).
  static func layerSQNR(quantized: Graph, float: Graph, batches: [[String: Tensor]]) throws -> [Layer] {
    let layerOps: Set<String> = ["Conv", "ConvTranspose", "Gemm", "MatMul"]
    let layers = float.nodes.filter { layerOps.contains($0.opType) && !($0.outputs.first ?? "").isEmpty }
    let wanted = Set(layers.map { $0.outputs[0] })
    var sums: [String: SQNRSums] = [:]
    let f = try Interpreter(float, fuseActivations: false), q = try Interpreter(quantized, fuseActivations: false)
    for feeds in batches {
      var reference: [String: Tensor] = [:]
      _ = try f.run(feeds) { node, results in
        for (name, t) in zip(node.outputs, results) where wanted.contains(name) { reference[name] = t }
      }
      _ = try q.run(feeds) { node, results in
        for (name, t) in zip(node.outputs, results) where wanted.contains(name) {
          guard let r = reference[name], r.shape == t.shape, t.dtype.isFloatingPoint else { continue }
          sums[name, default: SQNRSums()].add(reference: r.floats, quantized: t.floats)
        }
      }
    }
    return layers.compactMap { node in
      let out = node.outputs[0]
      guard let s = sums[out] else { return nil }
      return Layer(node: node.name, opType: node.opType, sqnr: s.decibels)
    }
  }
}

/// Each quantizer's own tensor: SQNR, clipped share, ranges per channel and a histogram.
struct TensorStatistics {
  var sqnr: Double
  var clipped: Double
  var channelRanges: [ClosedRange<Float>]
  var histogram: QuantizationDiagnosis.Histogram

  /// Weights from the initializers (the float tensor of `equalized` against the quantized values
  /// of `transformed`'s, which carry AdaRound's rounding); activations from two passes of the
  /// float graph over `batches` (ranges first, then histogram and error).
  static func measure(
    sites: [QuantizerSite], quantizers: [String: TensorQuantizer], equalized: Graph, transformed: Graph,
    batches: [[String: Tensor]], bins: Int
  ) throws -> [String: TensorStatistics] {
    var result: [String: TensorStatistics] = [:]
    for site in sites where site.kind == .weight {
      guard let w = equalized.initializers[site.name], let q = quantizers[site.name] else { continue }
      let written = transformed.initializers[site.name] ?? w
      var acc = Accumulator(bins: bins, axis: site.channelAxis, lower: w.floats.min() ?? 0, upper: w.floats.max() ?? 0)
      acc.add(w.floats, shape: w.shape, quantized: q.fakeQuantize(written.floats, shape: w.shape), quantizer: q)
      result[site.name] = acc.statistics
    }
    let activations = sites.filter { $0.kind == .activation }
    guard !activations.isEmpty else { return result }
    let names = Set(activations.map(\.name))
    let interpreter = try Interpreter(equalized, fuseActivations: false)
    func each(_ body: @escaping (String, Tensor) -> Void) throws {
      for feeds in batches {
        for input in equalized.inputs where names.contains(input.name) {
          if let t = feeds[input.name] { body(input.name, t) }
        }
        _ = try interpreter.run(feeds) { node, results in
          for (name, t) in zip(node.outputs, results) where names.contains(name) && t.dtype.isFloatingPoint { body(name, t) }
        }
      }
    }
    var bounds: [String: (Float, Float)] = [:]
    try each { name, t in
      let v = t.floats
      let (lo, hi) = bounds[name] ?? (.infinity, -.infinity)
      bounds[name] = (min(lo, v.min() ?? lo), max(hi, v.max() ?? hi))
    }
    var accumulators: [String: Accumulator] = [:]
    for site in activations {
      let (lo, hi) = bounds[site.name] ?? (0, 0)
      accumulators[site.name] = Accumulator(bins: bins, axis: site.channelAxis, lower: lo, upper: hi)
    }
    try each { name, t in
      guard let q = quantizers[name] else { return }
      let v = t.floats
      accumulators[name]?.add(v, shape: t.shape, quantized: q.fakeQuantize(v, shape: t.shape), quantizer: q)
    }
    for (name, acc) in accumulators { result[name] = acc.statistics }
    return result
  }

  struct Accumulator {
    var sums = SQNRSums()
    var count = 0, clipped = 0
    var channelRanges: [ClosedRange<Float>] = []
    var counts: [Int]
    let lower: Float, upper: Float, axis: Int?

    init(bins: Int, axis: Int?, lower: Float, upper: Float) {
      counts = [Int](repeating: 0, count: max(bins, 1))
      (self.axis, self.lower, self.upper) = (axis, lower.isFinite ? lower : 0, upper.isFinite ? upper : 0)
    }

    mutating func add(_ x: [Float], shape: [Int], quantized: [Float], quantizer q: TensorQuantizer) {
      let index = TensorQuantizer.paramIndex(q.granularity, for: shape)
      let ranges = q.params.map { UniformQuantizer.representableRange($0, q.grid) }
      let width = upper > lower ? Float(counts.count) / (upper - lower) : 0
      sums.add(reference: x, quantized: quantized)
      for i in x.indices {
        if !ranges[index(i)].contains(x[i]) { clipped += 1 }
        let bin = Int(((x[i] - lower) * width).rounded(.down))
        counts[min(max(bin, 0), counts.count - 1)] += 1
      }
      count += x.count
      // Per channel along the axis (counted from the end for activations), else one range.
      let rank = shape.count
      let a = axis.map { $0 < 0 ? $0 + rank : $0 } ?? -1
      let channels = (0..<rank).contains(a) ? shape[a] : 1
      let inner = (0..<rank).contains(a) ? shape[(a + 1)...].reduce(1, *) : 1
      if channelRanges.count != channels {
        channelRanges = [ClosedRange<Float>](repeating: Float.infinity...Float.infinity, count: channels)
      }
      for i in x.indices where x[i].isFinite {
        let c = channels == 1 ? 0 : (i / inner) % channels
        let r = channelRanges[c]
        channelRanges[c] = r.lowerBound == .infinity ? x[i]...x[i] : min(r.lowerBound, x[i])...max(r.upperBound, x[i])
      }
    }

    var statistics: TensorStatistics {
      TensorStatistics(
        sqnr: sums.decibels,
        clipped: count == 0 ? 0 : Double(clipped) / Double(count),
        channelRanges: channelRanges.map { $0.lowerBound == .infinity ? 0...0 : $0 },
        histogram: .init(lower: lower, upper: upper, counts: counts))
    }
  }
}
