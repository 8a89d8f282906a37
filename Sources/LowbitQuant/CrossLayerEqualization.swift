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
/// ReLU6 (Clip 0..6) between a pair is replaced by ReLU, as DFQ does, since clipping at 6 does
/// not commute with the scaling.
public enum CrossLayerEqualization {
  /// A Conv pair `first -> activation -> second` found in the graph.
  struct Pair {
    var first: Int, activation: Int, second: Int
  }

  /// Pairs where the first layer's output feeds only the activation and the activation's output
  /// only the second layer (so no skip connection sees the rescaled channels).
  static func pairs(in graph: Graph) -> [Pair] {
    let readers = graph.consumers()
    let producer = graph.producers()
    let outputs = Set(graph.outputs.map(\.name))
    var result: [Pair] = []
    for (j, second) in graph.nodes.enumerated() where second.opType == "Conv" {
      guard let a = producer[second.inputs[0]], isScaleEquivariant(graph.nodes[a], graph),
            readers[graph.nodes[a].outputs[0]]?.count == 1, !outputs.contains(graph.nodes[a].outputs[0]),
            let i = producer[graph.nodes[a].inputs[0]], graph.nodes[i].opType == "Conv",
            readers[graph.nodes[i].outputs[0]]?.count == 1, !outputs.contains(graph.nodes[i].outputs[0]),
            graph.initializers[graph.nodes[i].inputs[1]] != nil, graph.initializers[second.inputs[1]] != nil
      else { continue }
      result.append(Pair(first: i, activation: a, second: j))
    }
    return result
  }

  /// ReLU, or a Clip with lower bound 0 (ReLU6) which equalization turns into a ReLU.
  static func isScaleEquivariant(_ node: Node, _ graph: Graph) -> Bool {
    if node.opType == "Relu" { return true }
    guard node.opType == "Clip", node.inputs.count >= 2,
          let lo = graph.initializers[node.inputs[1]], lo.count == 1, lo.floats[0] == 0 else { return false }
    return true
  }

  /// Equalizes every pair (iterating `iterations` times, or until no scale moves by more than
  /// 1e-4). Returns the new graph and the pairs with their final ranges.
  public static func equalize(_ graph: Graph, iterations: Int = 20) -> (graph: Graph, pairs: [EqualizedPair]) {
    var g = graph
    let found = pairs(in: g)
    guard !found.isEmpty else { return (g, []) }
    for p in found where g.nodes[p.activation].opType == "Clip" {
      g.nodes[p.activation] = Node(name: g.nodes[p.activation].name, opType: "Relu",
                                   inputs: [g.nodes[p.activation].inputs[0]], outputs: g.nodes[p.activation].outputs)
    }
    var total = found.map { [Float](repeating: 1, count: g.initializers[g.nodes[$0.first].inputs[1]]?.shape[0] ?? 0) }
    for _ in 0..<iterations {
      var moved: Float = 0
      for (k, p) in found.enumerated() {
        let s = equalizePair(&g, p)
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

  /// One equalization step of a pair; returns the scales `s_i` applied (empty if skipped).
  static func equalizePair(_ g: inout Graph, _ p: Pair) -> [Float] {
    let first = g.nodes[p.first], second = g.nodes[p.second]
    guard var w1 = g.initializers[first.inputs[1]], var w2 = g.initializers[second.inputs[1]] else { return [] }
    let groups = group(of: second)
    let channels = w1.shape[0]
    guard w2.shape[1] * groups == channels else { return [] }
    let r1 = outputChannelRanges(w1), r2 = inputChannelRanges(w2, group: groups, channels: channels)
    let s = zip(r1, r2).map { a, b -> Float in
      guard a > 0, b > 0, a.isFinite, b.isFinite else { return 1 }
      return (a * b).squareRoot() / b
    }
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
    return s
  }
}
