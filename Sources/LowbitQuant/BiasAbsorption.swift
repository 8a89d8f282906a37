import LowbitCore
import LowbitData

/// Where high-bias absorption took `c` from.
public enum AbsorptionSource: String, Sendable, Codable {
  /// `c = max(0, beta - 3 |gamma|)` from the folded BatchNorm's statistics.
  case batchNorm = "batchnorm"
  /// `c = max(0, min over the calibration data of the pre-activation)` per channel.
  case calibration
}

/// One absorbed pair.
public struct AbsorbedPair: Sendable, Codable, Equatable {
  public var first: String
  public var second: String
  public var source: AbsorptionSource
  /// Channels with `c > 0`, and the largest `c`.
  public var channels: Int
  public var largest: Float
}

/// High-bias absorption (white paper sec. 3.2, eq. 10-11; DFQ).
///
/// For `layer1 -> ReLU -> layer2`, a channel whose pre-activation `y_i` never falls below
/// `c_i >= 0` satisfies `ReLU(y_i) = ReLU(y_i - c_i) + c_i`, so `c` moves out of layer 1's bias
/// into layer 2's: `b1 <- b1 - c`, `b2 <- b2 + W2 c` (for a conv, `W2 c` sums each output channel's
/// weights over the kernel taps times `c` of their input channel). The activation range of
/// layer 1 shrinks by `c` while the function stays the same. A bounded ReLU (ReLU6) keeps it
/// too with its bound lowered to `u_i - c_i` (`BoundedReLU`; `c_i <= u_i`). `c = max(0, beta - 3 |gamma|)`
/// when the folded BatchNorm's statistics are known (capped by the per-channel minimum of the
/// pre-activation when calibration data is given), else that minimum alone (exact on the data).
///
/// Only pairs where layer 2 reads no zero padding are absorbed: at padded borders layer 2
/// would see 0 instead of `c`, so `W2 c` there would be wrong.
public enum BiasAbsorption {
  /// Absorbs every equalizable Conv pair joined by a (bounded) ReLU. `minima`, keyed by the first conv's
  /// node name, supplies the calibration minima where no statistics exist. BatchNorm statistics
  /// of first layers are shifted by `-c` (their beta), so later steps see the new distribution.
  public static func absorb(
    _ graph: Graph, statistics: inout [String: BatchNormStatistics], minima: [String: [Float]] = [:]
  ) throws -> (graph: Graph, pairs: [AbsorbedPair]) {
    var g = graph
    var result: [AbsorbedPair] = []
    var bounds: [(BoundedReLU, [Float])] = [], ranks: [Int: Int] = [:]
    for (pair, patches, inShape) in try candidates(in: g) {
      let first = g.nodes[pair.first], second = g.nodes[pair.second]
      // The first layer's bias may come from absorbing the pair before it.
      guard first.inputs.count > 2, !first.inputs[2].isEmpty, let b1 = g.initializers[first.inputs[2]] else { continue }
      let w2 = g.initializers[second.inputs[1]]!
      let channels = b1.count
      var c: [Float]
      let source: AbsorptionSource
      if let s = statistics[first.name], s.beta.count == channels {
        c = zip(s.beta, s.gamma).map { max(0, $0 - 3 * abs($1)) }
        source = .batchNorm
        // Where calibration data shows values below beta - 3 gamma, c stops at their minimum
        // so the function stays exact on that data.
        if let m = minima[first.name], m.count == channels { c = zip(c, m).map { min($0, max(0, $1)) } }
      } else if let m = minima[first.name], m.count == channels {
        c = m.map { max(0, $0) }
        source = .calibration
      } else {
        continue
      }
      c = zip(c, pair.activation.upper).map { min($0, $1) }
      guard c.contains(where: { $0 > 0 }), inShape[1] == channels, pair.activation.upper.count == channels else { continue }
      // b2 may be absent: add it.
      var g2 = g
      var secondNode = second
      if secondNode.inputs.count < 3 || secondNode.inputs[2].isEmpty {
        let name = g2.freshName(second.name + "_bias")
        g2.initializers[name] = Tensor(shape: [w2.shape[0]], floats: [Float](repeating: 0, count: w2.shape[0]))
        if secondNode.inputs.count < 3 { secondNode.inputs.append(name) } else { secondNode.inputs[2] = name }
        g2.nodes[pair.second] = secondNode
      }
      var bias2 = g2.initializers[secondNode.inputs[2]]!.floats
      let cg = w2.shape[1], taps = w2.shape[2] * w2.shape[3]
      let perGroup = w2.shape[0] / patches.group
      let w = w2.floats
      for o in 0..<w2.shape[0] {
        let grp = o / perGroup
        var add: Float = 0
        for ci in 0..<cg {
          let ch = grp * cg + ci
          guard c[ch] != 0 else { continue }
          var sum: Float = 0
          for t in 0..<taps { sum += w[(o * cg + ci) * taps + t] }
          add += sum * c[ch]
        }
        bias2[o] += add
      }
      g2.initializers[secondNode.inputs[2]] = Tensor(shape: [w2.shape[0]], floats: bias2)
      g2.initializers[first.inputs[2]] = Tensor(shape: b1.shape, floats: zip(b1.floats, c).map { $0 - $1 })
      if var s = statistics[first.name], s.beta.count == channels {
        s.beta = zip(s.beta, c).map { $0 - $1 }
        statistics[first.name] = s
      }
      g = g2
      if pair.activation.upper.contains(where: \.isFinite) {
        bounds.append((pair.activation, zip(pair.activation.upper, c).map { $0 - $1 }))
        ranks[pair.activation.nodes[0]] = w2.rank
      }
      result.append(AbsorbedPair(first: first.name, second: second.name, source: source,
                                 channels: c.filter { $0 > 0 }.count, largest: c.max() ?? 0))
    }
    if !bounds.isEmpty { g = BoundedReLU.rewriting(g, bounds) { ranks[$0.nodes[0]] ?? 4 } }
    return (g, result)
  }

  /// The equalizable pairs absorption may change: the second layer is a 2-d convolution of known
  /// input shape that reads no zero padding; with its patch geometry and input shape.
  static func candidates(in g: Graph) throws -> [(CrossLayerEqualization.Pair, ConvPatches, [Int])] {
    let facts = g.inferShapes()
    return try CrossLayerEqualization.pairs(in: g).compactMap { pair in
      let second = g.nodes[pair.second]
      guard let w2 = g.initializers[second.inputs[1]], w2.rank == 4,
            let dims = facts[second.inputs[0]]?.shape, dims.count == 4, dims.dropFirst().allSatisfy({ $0.value != nil })
      else { return nil }
      let inShape = dims.map { $0.value ?? 1 }
      let patches = try ConvPatches(node: second, opset: g.opset, inputShape: inShape, weightShape: w2.shape)
      return patches.hasPadding ? nil : (pair, patches, inShape)
    }
  }

  /// Per first layer of each pair absorption may change (`candidates`), the minimum of its
  /// pre-activation per channel over `batches` (for models whose BatchNorms came folded). No
  /// candidate, no pass over the data.
  public static func preActivationMinima(_ graph: Graph, batches: FeedBatches) throws -> [String: [Float]] {
    let pairs = try candidates(in: graph).map(\.0)
    if pairs.isEmpty || batches.isEmpty { return [:] }
    var byOutput: [String: String] = [:]
    for p in pairs { byOutput[graph.nodes[p.first].outputs[0]] = graph.nodes[p.first].name }
    var minima: [String: [Float]] = [:]
    let interpreter = try Interpreter(graph, fuseActivations: false)
    try batches.forEach { feeds in
      _ = try interpreter.run(feeds, observe: { node, results in
        guard let name = byOutput[node.outputs[0]], let t = results.first, t.rank == 4 else { return }
        let n = t.shape[0], ch = t.shape[1], plane = t.shape[2] * t.shape[3]
        var m = minima[name] ?? [Float](repeating: .infinity, count: ch)
        let v = t.floats
        for i in 0..<n { for c in 0..<ch {
          let start = (i * ch + c) * plane
          for j in start..<(start + plane) where v[j] < m[c] { m[c] = v[j] }
        } }
        minima[name] = m
      })
    }
    return minima
  }
}
