import Foundation
import LowbitCore

extension QuantizationDiagnosis {
  /// Where a quantizer sits in the graph, for naming it: the layer a weight belongs to, or the
  /// op producing an activation and the ops reading it.
  public struct Role: Sendable, Codable, Equatable {
    /// The weight's layer, or the activation's producer (nil for a model input).
    public var node: String?
    public var opType: String?
    /// A Conv with one input channel per group (`group` = input channels > 1).
    public var depthwise: Bool
    /// An Add of two computed values (not a bias): a residual sum.
    public var residualSum: Bool
    /// The op types reading the activation, in graph order, each once.
    public var readers: [String]
  }

  /// One reason the quantized model loses fidelity, read off the measurements: a kind, the
  /// quantizers it concerns (worst first, among those whose loss alone is at least
  /// `Cause.lossFloor` of the worst's) and, per quantizer, the measure it rests on.
  public struct Cause: Sendable, Codable, Equatable {
    public enum Kind: String, Sendable, Codable {
      /// A per-tensor weight grid over output channels whose ranges differ widely (the white
      /// paper's fig. 6, depthwise layers): the narrow channels get a few levels. Measure: the
      /// SQNR (dB) the one grid loses against a grid per channel, `perTensorPenalty`.
      case weightChannelRanges = "weight channel ranges"
      /// An activation whose few largest values stretch its grid far past the bulk (BERT's
      /// residual stream, sec. 4.8 and the paper's transformer discussion): the bulk gets a few
      /// levels. Measure: the value range over the range holding the central 99.9% of values.
      case activationOutliers = "activation outliers"
      /// An activation grid that clips a notable share of its values. Measure: the share.
      case activationClipping = "activation clipping"
    }

    public var kind: Kind
    public var quantizers: [String]
    public var roles: [Role]
    public var measures: [Double]
    /// The summed loss alone of these quantizers over that of every quantizer of their kind
    /// (weights or activations).
    public var lossShare: Double

    /// Quantizers whose loss alone is below this share of the worst one's are not examined.
    public static let lossFloor = 0.1
    /// At most this many quantizers are examined, worst first.
    public static let examined = 12
    /// Per-tensor penalty (dB) from which a weight grid counts as too wide: one bit.
    public static let perTensorPenalty = 6.02
    /// Range over central range from which an activation counts as having outliers.
    public static let outlierRatio = 6.0
    /// Clipped share from which an activation counts as clipped.
    public static let clippedShare = 0.01
  }

  /// The causes in `quantizers`, weight channel ranges first, then outliers, then clipping
  /// (a kind appears when one examined quantizer shows it). `graph` is the float graph the
  /// quantizers were placed on.
  static func causes(_ quantizers: [Quantizer], sites: [QuantizerSite], graph: Graph) -> [Cause] {
    let worst = quantizers.map(\.lossAlone).max() ?? 0
    guard worst > 0 else { return [] }
    let examined = quantizers.filter { $0.lossAlone >= Cause.lossFloor * worst }
      .sorted { $0.lossAlone > $1.lossAlone }.prefix(Cause.examined)
    let byName = Dictionary(sites.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    let producers = graph.producers(), consumers = graph.consumers()
    func role(_ q: Quantizer) -> Role {
      let site = byName[q.name]
      if q.kind == .weight, let layer = site?.consumer, let node = graph.nodes.first(where: { $0.name == layer }) {
        return Role(node: node.name, opType: node.opType, depthwise: isDepthwise(node, graph), residualSum: false, readers: [])
      }
      let producer = producers[q.name].map { graph.nodes[$0] }
      var readers: [String] = []
      for i in consumers[q.name] ?? [] where !readers.contains(graph.nodes[i].opType) { readers.append(graph.nodes[i].opType) }
      let residual = producer.map { $0.opType == "Add" && $0.inputs.allSatisfy { graph.initializers[$0] == nil } } ?? false
      return Role(node: producer?.name, opType: producer?.opType, depthwise: false, residualSum: residual, readers: readers)
    }
    func total(_ kind: QuantizerSite.Kind) -> Double { quantizers.filter { $0.kind == kind }.map(\.lossAlone).reduce(0, +) }
    var found: [Cause] = []
    func add(_ kind: Cause.Kind, _ rows: [(Quantizer, Double)]) {
      guard let first = rows.first?.0 else { return }
      let share = rows.map(\.0.lossAlone).reduce(0, +) / max(total(first.kind), .leastNormalMagnitude)
      found.append(Cause(kind: kind, quantizers: rows.map(\.0.name), roles: rows.map { role($0.0) }, measures: rows.map(\.1), lossShare: share))
    }
    add(.weightChannelRanges, examined.compactMap { q in
      guard q.kind == .weight, !q.perChannel, let r = perTensorPenalty(q), r >= Cause.perTensorPenalty else { return nil }
      return (q, r)
    })
    add(.activationOutliers, examined.compactMap { q in
      guard q.kind == .activation, let r = outlierRatio(q.histogram), r >= Cause.outlierRatio else { return nil }
      return (q, r)
    })
    add(.activationClipping, examined.compactMap { q in
      q.kind == .activation && q.clipped >= Cause.clippedShare ? (q, q.clipped) : nil
    })
    return found
  }

  /// The SQNR (dB) a per-tensor grid loses against one grid per channel, with each channel's
  /// noise power proportional to its step squared and its signal to its amplitude
  /// `a_c = max |w_c|` squared: `10 log10(mean_c (max_c' a_c' / a_c)^2)` (nil with one channel;
  /// channels of zeros left out).
  static func perTensorPenalty(_ q: Quantizer) -> Double? {
    let amplitudes = q.channelRanges.map { Double(max(abs($0.lowerBound), abs($0.upperBound))) }.filter { $0 > 0 }
    guard amplitudes.count > 1, let top = amplitudes.max() else { return nil }
    let mean = amplitudes.map { (top / $0) * (top / $0) }.reduce(0, +) / Double(amplitudes.count)
    return 10 * log10(mean)
  }

  /// The histogram's range over the width of the bins holding its central 99.9% of values (the
  /// 0.05% in each tail left out); nil for an empty or one-bin histogram.
  static func outlierRatio(_ h: Histogram) -> Double? {
    let n = h.counts.reduce(0, +), bins = h.counts.count
    guard n > 0, bins > 1, h.upper > h.lower else { return nil }
    let tail = Int((0.0005 * Double(n)).rounded(.down))
    var low = 0, seen = 0
    while low < bins - 1 && seen + h.counts[low] <= tail { seen += h.counts[low]; low += 1 }
    var high = bins - 1
    seen = 0
    while high > low && seen + h.counts[high] <= tail { seen += h.counts[high]; high -= 1 }
    return Double(bins) / Double(high - low + 1)
  }

  static func isDepthwise(_ node: Node, _ graph: Graph) -> Bool {
    guard node.opType == "Conv", case .int(let group)? = node.attributes["group"], group > 1,
          node.inputs.count > 1, let w = graph.initializers[node.inputs[1]], w.shape.count > 1 else { return false }
    return w.shape[1] == 1
  }
}
