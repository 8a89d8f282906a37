import LowbitCore

/// One equalized pair of layers and what changed, for the log and the report.
public struct EqualizedPair: Sendable, Equatable, Codable {
  public var first: String
  public var second: String
  /// The product over iterations of the scales `s_i` the first layer's output channels were
  /// divided by (BatchNorm statistics folded into it scale the same way).
  public var scales: [Float]
  /// Per-channel weight ranges of the pair after equalization (equal up to rounding).
  public var rangesAfter: [Float]
}

/// Cross-layer equalization (white paper sec. 3.2, eq. 7-8; Nagel et al. 2019, DFQ).
///
/// For two layers joined by a positively scale-equivariant activation, `f(s x) = s f(x)` for
/// `s > 0` (ReLU), output channel i of the first layer is divided by
/// `s_i = sqrt(r1_i * r2_i) / r2_i` and input channel i of the second multiplied by it, where
/// `r1_i` is the range (max |w|) of output channel i of the first weight and `r2_i` that of input
/// channel i of the second. Both ranges become `sqrt(r1_i * r2_i)`; the network's function is
/// unchanged. Pairs chain (depthwise-separable blocks) and are repeated until the scales settle.
///
/// A bounded ReLU between a pair (ReLU6, `min(max(x, 0), 6)`) keeps its function too: channel i's
/// bound becomes `6 / s_i` (`BoundedReLU`), written as `Relu` then `Min` with a per-channel
/// constant, or a single Clip when every bound agrees. (DFQ replaced ReLU6 by ReLU instead, which
/// changes the model wherever an activation passes 6: on EfficientNet-Lite2 and natural photos
/// that alone leaves 21% top-1 agreement with the original.)
public enum CrossLayerEqualization {
  /// A Conv pair `first -> activation -> second` found in the graph.
  struct Pair {
    var first: Int, activation: BoundedReLU, second: Int
  }

  /// Pairs where the first layer's output feeds only the activation and the activation's output
  /// only the second layer (so no skip connection sees the rescaled channels).
  static func pairs(in graph: Graph) -> [Pair] {
    let readers = graph.consumers()
    let producer = graph.producers()
    let outputs = Set(graph.outputs.map(\.name))
    var result: [Pair] = []
    for (j, second) in graph.nodes.enumerated() where second.opType == "Conv" {
      guard let w2 = graph.initializers[second.inputs[1]], let i = activationInput(second.inputs[0], graph, producer),
            graph.nodes[i].opType == "Conv", let w1 = graph.initializers[graph.nodes[i].inputs[1]],
            readers[second.inputs[0]]?.count == 1, !outputs.contains(second.inputs[0]),
            let a = BoundedReLU.ending(at: second.inputs[0], graph, channels: w1.shape[0], rank: w1.rank,
                                      readers: readers, producer: producer, outputs: outputs),
            producer[a.input] == i, readers[a.input]?.count == 1, !outputs.contains(a.input), w2.rank == w1.rank
      else { continue }
      result.append(Pair(first: i, activation: a, second: j))
    }
    return result
  }

  /// The producer of the activation's input that ends at `value` (one or two nodes back).
  static func activationInput(_ value: String, _ graph: Graph, _ producer: [String: Int]) -> Int? {
    guard let p = producer[value] else { return nil }
    var input = graph.nodes[p].inputs.first { graph.initializers[$0] == nil && !$0.isEmpty }
    if graph.nodes[p].opType == "Min", let v = input, let q = producer[v] { input = graph.nodes[q].inputs.first }
    return input.flatMap { producer[$0] }
  }

  /// Equalizes every pair (iterating `iterations` times, or until no scale moves by more than
  /// 1e-4) and rewrites each bounded activation's bounds. Returns the new graph and the pairs with
  /// their final ranges.
  ///
  /// With a `target` and the `moments` of each pair's activation and first-layer input (from
  /// `momentsNeeded`, measured on the graph as given), the scales minimize the pair's expected
  /// quantization noise for those quantizers, activations included (`EqualizationNoise`);
  /// without, they are DFQ's `sqrt(r1_i / r2_i)`.
  public static func equalize(
    _ graph: Graph, iterations: Int = 20, target: EqualizationTarget? = nil, moments: [String: ChannelMoments] = [:]
  ) -> (graph: Graph, pairs: [EqualizedPair]) {
    var g = graph
    let found = pairs(in: g)
    guard !found.isEmpty else { return (g, []) }
    var total = found.map { [Float](repeating: 1, count: g.initializers[g.nodes[$0.first].inputs[1]]?.shape[0] ?? 0) }
    // The pair whose activation a first layer reads: its input channels carry that pair's scales.
    let feeding = Dictionary(found.enumerated().map { ($1.activation.output, $0) }) { a, _ in a }
    for _ in 0..<iterations {
      var moved: Float = 0
      for (k, p) in found.enumerated() {
        var s = dfqScales(g, p)
        let input = g.nodes[p.first].inputs[0]
        if let target, !s.isEmpty, let a = moments[p.activation.output], let x = moments[input],
           let model = EqualizationNoise(g, p, target: target, input: feeding[input].map { x.scaled(by: total[$0]) } ?? x,
                                         activations: a.scaled(by: total[k])) {
          s = model.bestScales(dfq: s)
        }
        guard !s.isEmpty else { continue }
        scalePair(&g, p, s)
        if s.count == total[k].count { total[k] = zip(total[k], s).map { $0 * $1 } }
        moved = max(moved, s.map { abs($0 - 1) }.max() ?? 0)
      }
      if moved < 1e-4 { break }
    }
    let summaries = found.enumerated().map { k, p -> EqualizedPair in
      let w1 = g.initializers[g.nodes[p.first].inputs[1]]!, w2 = g.initializers[g.nodes[p.second].inputs[1]]!
      let r1 = outputChannelRanges(w1)
      let r2 = inputChannelRanges(w2, group: group(of: g.nodes[p.second]), channels: r1.count)
      return EqualizedPair(first: g.nodes[p.first].name, second: g.nodes[p.second].name, scales: total[k],
                           rangesAfter: zip(r1, r2).map { max($0, $1) })
    }
    // Channel i of a bounded activation now sees x / s_i: its bound is u_i / s_i.
    let bounded = found.enumerated().filter { _, p in p.activation.upper.contains { $0.isFinite } }
      .map { k, p in (p.activation, zip(p.activation.upper, total[k]).map { $0 / $1 }) }
    let ranks = Dictionary(found.map { ($0.activation.nodes[0], g.initializers[g.nodes[$0.first].inputs[1]]!.rank) }) { a, _ in a }
    if !bounded.isEmpty { g = BoundedReLU.rewriting(g, bounded) { ranks[$0.nodes[0]] ?? 4 } }
    return (g, summaries)
  }

  static func group(of node: Node) -> Int {
    if case .int(let v)? = node.attributes["group"] { return v }
    return 1
  }

  /// `max |W[i, ...]|` per output channel i.
  public static func outputChannelRanges(_ w: Tensor) -> [Float] {
    let m = w.shape[0], per = w.count / max(m, 1)
    let v = w.floats
    return (0..<m).map { i in v[(i * per)..<((i + 1) * per)].reduce(0) { max($0, abs($1)) } }
  }

  /// `max |W[o, i', ...]|` over the outputs o that read input channel i (grouped convolution:
  /// channel i is local index i' of group i / (C/G)).
  public static func inputChannelRanges(_ w: Tensor, group: Int, channels: Int) -> [Float] {
    let m = w.shape[0], cg = w.shape[1], k = w.count / max(m * cg, 1)
    let mg = m / max(group, 1)
    let v = w.floats
    return (0..<channels).map { i in
      let gi = i / max(cg, 1), local = i % max(cg, 1)
      var r: Float = 0
      for o in (gi * mg)..<min(m, (gi + 1) * mg) {
        let base = (o * cg + local) * k
        for t in 0..<k { r = max(r, abs(v[base + t])) }
      }
      return r
    }
  }

  /// The values whose statistics activation-aware equalization needs: each pair's activation
  /// and first-layer input.
  public static func momentsNeeded(_ graph: Graph) -> Set<String> {
    Set(pairs(in: graph).flatMap { [$0.activation.output, graph.nodes[$0.first].inputs[0]] })
  }

  /// DFQ's scales for a pair, `s_i = sqrt(r1_i r2_i) / r2_i` (1 where a range is 0), or empty when
  /// the layers' shapes do not match.
  static func dfqScales(_ g: Graph, _ p: Pair) -> [Float] {
    let first = g.nodes[p.first], second = g.nodes[p.second]
    guard let w1 = g.initializers[first.inputs[1]], let w2 = g.initializers[second.inputs[1]] else { return [] }
    let groups = group(of: second)
    let channels = w1.shape[0]
    guard w2.shape[1] * groups == channels else { return [] }
    let r1 = outputChannelRanges(w1), r2 = inputChannelRanges(w2, group: groups, channels: channels)
    return zip(r1, r2).map { a, b -> Float in
      guard a > 0, b > 0, a.isFinite, b.isFinite else { return 1 }
      return (a * b).squareRoot() / b
    }
  }

  /// Divides layer 1's output channel i (and its bias) by `s_i` and multiplies layer 2's input
  /// channel i by it.
  static func scalePair(_ g: inout Graph, _ p: Pair, _ s: [Float]) {
    let first = g.nodes[p.first], second = g.nodes[p.second]
    guard var w1 = g.initializers[first.inputs[1]], var w2 = g.initializers[second.inputs[1]] else { return }
    let groups = group(of: second)
    let channels = w1.shape[0]
    // First layer: output channel i (and its bias) divided by s_i.
    var v1 = w1.floats
    let per1 = v1.count / channels
    for i in 0..<channels { for t in 0..<per1 { v1[i * per1 + t] /= s[i] } }
    w1 = Tensor(shape: w1.shape, floats: v1)
    g.initializers[first.inputs[1]] = w1
    if first.inputs.count > 2, let b = g.initializers[first.inputs[2]] {
      g.initializers[first.inputs[2]] = Tensor(shape: b.shape, floats: zip(b.floats, s).map { $0 / $1 })
    }
    // Second layer: input channel i multiplied by s_i.
    var v2 = w2.floats
    let m = w2.shape[0], cg = w2.shape[1], k = v2.count / max(m * cg, 1), mg = m / groups
    for o in 0..<m {
      for local in 0..<cg {
        let i = (o / mg) * cg + local
        for t in 0..<k { v2[(o * cg + local) * k + t] *= s[i] }
      }
    }
    w2 = Tensor(shape: w2.shape, floats: v2)
    g.initializers[second.inputs[1]] = w2
  }
}
