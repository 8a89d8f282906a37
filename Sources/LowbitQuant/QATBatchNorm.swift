import LowbitCore
import LowbitTrain

/// How quantization-aware training treats BatchNormalization (white paper sec. 4.2).
public enum QATBatchNorm: String, Sendable, Codable, CaseIterable {
  /// Static folding before training (the paper's default): BN's statistics go into the weights
  /// and biases once; training sees folded layers and no BatchNorm.
  case fold
  /// Per-channel weights only: each folded layer is unfolded again into `Conv -> BatchNorm`,
  /// BatchNorm trains in training mode (batch statistics), and after training it is absorbed
  /// into the per-channel weight scales (`QuantizationAwareTraining.foldBatchNorm`).
  case keep
}

/// What unfolding and folding back did to one layer.
public struct UnfoldedLayer: Sendable, Equatable, Codable {
  /// The layer node and the BatchNormalization node after it in the QAT graph.
  public var layer: String
  public var batchNorm: String
  /// Channels whose BN factor `gamma / sqrt(var + eps)` was negative, so the layer's weights
  /// and BN were sign-flipped to keep the factor positive during training.
  public var flippedChannels: Int

  enum CodingKeys: String, CodingKey {
    case layer
    case batchNorm = "batch_norm"
    case flippedChannels = "flipped_channels"
  }
}

extension QuantizationAwareTraining {
  /// Unfolds the BatchNorms PTQ folded, for `QATBatchNorm.keep`: every layer of `graph` with
  /// statistics in `statistics` (keyed by layer node, as `foldingBatchNorm` returns them, after
  /// equalization and absorption) becomes `layer -> BatchNormalization` again, and its
  /// per-channel weight quantizer is rescaled so the untrained QAT graph computes what PTQ's does.
  ///
  /// With the folded weight `W`, bias `b` and the BN factor `f = gamma / sqrt(var + eps)` per
  /// output channel, the unfolded layer holds
  ///
  ///     W_u = W / |f|,   b_u = sign(f) b_0,   BN(|gamma|, beta, sign(f) mean, var)
  ///
  /// where `b_0 = (b - beta) / |f| + sign(f) mean` inverts eq. 13, and the quantizer's scale is
  /// `s_u = s / |f|`, so `round(W_u / s_u) = round(W / s)`: the same integers. Channels with
  /// negative `f` have their weights, bias and mean negated (and gamma made positive), which
  /// leaves the function unchanged and keeps the factor positive, so folding back after
  /// training never has to mirror the grid. Channels with `f = 0` get zero weights.
  ///
  /// Only layers whose weight is read by this layer alone and has a symmetric per-channel
  /// quantizer along its output channels are unfolded. Returns the graph, the rescaled
  /// quantizers and the unfolded layers.
  public static func unfoldBatchNorm(
    _ graph: Graph, statistics: [String: BatchNormStatistics], sites: [QuantizerSite],
    quantizers: [String: TensorQuantizer]
  ) throws -> (graph: Graph, quantizers: [String: TensorQuantizer], layers: [UnfoldedLayer]) {
    var g = graph
    var q = quantizers
    var layers: [UnfoldedLayer] = []
    let readers = g.consumers()
    let weightSites = Dictionary(
      sites.filter { $0.kind == .weight && $0.consumer != nil }.map { ($0.consumer!, $0) }, uniquingKeysWith: { a, _ in a })
    for index in g.nodes.indices {
      let node = g.nodes[index]
      guard let s = statistics[node.name], let site = weightSites[node.name], let axis = site.channelAxis,
            var quantizer = q[site.name], quantizer.symmetric, quantizer.granularity == .perChannel(axis: axis),
            readers[site.name]?.count == 1, let w = g.initializers[site.name], w.dtype == .float32,
            node.inputs.count > 2, let b = g.initializers[node.inputs[2]], b.count == s.gamma.count,
            readers[node.inputs[2]]?.count == 1,
            w.rank >= 2, w.shape[axis] == s.gamma.count, quantizer.params.count == s.gamma.count
      else { continue }
      let f = s.factors
      let sign = f.map { $0 < 0 ? Float(-1) : 1 }
      let magnitude = f.map { abs($0) }
      var weights = w.floats
      forEachChannel(shape: w.shape, axis: axis) { c, i in
        weights[i] = magnitude[c] > 0 ? weights[i] / magnitude[c] : 0
      }
      var bias = b.floats
      var mean = s.mean
      for c in bias.indices {
        mean[c] = sign[c] * s.mean[c]
        bias[c] = magnitude[c] > 0 ? (bias[c] - s.beta[c]) / magnitude[c] + mean[c] : mean[c]
        if magnitude[c] > 0 { quantizer.params[c].scale /= magnitude[c] }
      }
      g.initializers[site.name] = Tensor(shape: w.shape, floats: weights)
      g.initializers[node.inputs[2]] = Tensor(shape: b.shape, floats: bias)
      q[site.name] = quantizer
      let output = node.outputs[0]
      let prebn = g.freshName(output + "_prebn")
      let bnName = g.freshName(node.name + "_bn")
      let names = ["scale", "bias", "mean", "var"].map { g.freshName(bnName + "_" + $0) }
      let channels = [s.gamma.count]
      g.initializers[names[0]] = Tensor(shape: channels, floats: s.gamma.map { abs($0) })
      g.initializers[names[1]] = Tensor(shape: channels, floats: s.beta)
      g.initializers[names[2]] = Tensor(shape: channels, floats: mean)
      g.initializers[names[3]] = Tensor(shape: channels, floats: s.variance)
      g.nodes[index].outputs[0] = prebn
      g.nodes.append(Node(
        name: bnName, opType: "BatchNormalization", inputs: [prebn] + names, outputs: [output],
        attributes: ["epsilon": .float(s.epsilon), "momentum": .float(0.9)]))
      layers.append(UnfoldedLayer(layer: node.name, batchNorm: bnName, flippedChannels: sign.filter { $0 < 0 }.count))
    }
    // Each BN goes right after its layer.
    var ordered: [Node] = []
    let bnAfter = Dictionary(uniqueKeysWithValues: layers.map { ($0.layer, $0.batchNorm) })
    let bnNodes = Dictionary(uniqueKeysWithValues: g.nodes.filter { n in layers.contains { $0.batchNorm == n.name } }.map { ($0.name, $0) })
    for node in g.nodes where bnNodes[node.name] == nil {
      ordered.append(node)
      if let bn = bnAfter[node.name] { ordered.append(bnNodes[bn]!) }
    }
    g.nodes = ordered
    return (try g.validated(), q, layers)
  }

  /// Absorbs every BatchNormalization that follows a per-channel fake-quantized layer into
  /// that layer (the way back from `QATBatchNorm.keep`), per output channel c with
  /// `f_c = gamma_c / sqrt(var_c + eps)` from the trained running statistics:
  ///
  ///     s'_c = s_c |f_c|,   W'_c = s'_c * q'_c,   b'_c = (b_c - mean_c) f_c + beta_c
  ///
  /// where `q_c = clip(round(W_c / s_c), qmin, qmax)` are the integers the FakeQuantize node
  /// computes and `q'_c = q_c` (or `-q_c` where `f_c < 0`, clipped into the grid: only
  /// `qmin` itself can fall outside, by one step). The folded weights are stored as exactly
  /// those grid points, so `round(W' / s') = q'` and the layer computes
  /// `f (conv(x, s q) + b - mean) + beta`: the trained layer and BatchNorm in inference mode.
  /// Returns the folded graph and the number of weights clipped by a sign flip.
  public static func foldBatchNorm(_ trained: Graph) throws -> (graph: Graph, clippedWeights: Int) {
    var g = trained
    let readers = g.consumers(), producer = g.producers()
    let outputs = Set(g.outputs.map(\.name))
    var removed = Set<Int>()
    var clipped = 0
    for (bnIndex, bn) in trained.nodes.enumerated() where bn.opType == "BatchNormalization" && bn.domain.isEmpty {
      guard bn.inputs.count == 5, let layerIndex = producer[bn.inputs[0]], readers[bn.inputs[0]]?.count == 1,
            !outputs.contains(bn.inputs[0]), bn.outputs.dropFirst().allSatisfy({ $0.isEmpty || readers[$0] == nil })
      else { continue }
      let layer = g.nodes[layerIndex]
      guard layer.opType == "Conv" || layer.opType == "Gemm", layer.inputs.count > 2,
            let fqIndex = producer[layer.inputs[1]], FakeQuantize.isFakeQuantize(g.nodes[fqIndex]),
            readers[layer.inputs[1]]?.count == 1
      else { continue }
      let fq = g.nodes[fqIndex]
      let axis = layer.opType == "Conv" ? 0 : (layer.attributes["transB"] == .int(1) ? 0 : 1)
      guard fq.attributes["axis"] == .int(axis), fq.inputs.count < 3 || fq.inputs[2].isEmpty,
            case .int(let qmin)? = fq.attributes["qmin"], case .int(let qmax)? = fq.attributes["qmax"],
            let w = g.initializers[fq.inputs[0]], let scale = g.initializers[fq.inputs[1]],
            let b = g.initializers[layer.inputs[2]], readers[layer.inputs[2]]?.count == 1,
            case let params = bn.inputs[1...4].compactMap({ g.initializers[$0]?.floats }), params.count == 4
      else { continue }
      let channels = w.shape[axis]
      guard scale.count == channels, b.count == channels, params.allSatisfy({ $0.count == channels }) else {
        throw bn.error(.invalidModel, "BatchNorm and the layer before it disagree on the channel count \(channels)")
      }
      let epsilon: Float
      if case .float(let e)? = bn.attributes["epsilon"] { epsilon = e } else { epsilon = 1e-5 }
      let f = (0..<channels).map { params[0][$0] / (params[3][$0] + epsilon).squareRoot() }
      let s = scale.floats
      let folded = (0..<channels).map { s[$0] * abs(f[$0]) }
      guard folded.allSatisfy({ $0 > 0 && $0.isFinite }) else {
        throw bn.error(.invalidModel, "a BN factor of 0 (gamma = 0) leaves a zero weight scale; the channel cannot be folded")
      }
      var weights = w.floats
      forEachChannel(shape: w.shape, axis: axis) { c, i in
        var level = (weights[i] / s[c]).rounded(.toNearestOrEven)
        level = min(max(level, Float(qmin)), Float(qmax))
        if f[c] < 0 {
          level = -level
          if level > Float(qmax) { level = Float(qmax); clipped += 1 }
        }
        weights[i] = folded[c] * level
      }
      let bias = b.floats
      g.initializers[fq.inputs[0]] = Tensor(shape: w.shape, floats: weights)
      g.initializers[fq.inputs[1]] = Tensor(shape: scale.shape, floats: folded)
      g.initializers[layer.inputs[2]] = Tensor(
        shape: b.shape, floats: (0..<channels).map { (bias[$0] - params[2][$0]) * f[$0] + params[1][$0] })
      g.nodes[layerIndex].outputs[0] = bn.outputs[0]
      removed.insert(bnIndex)
    }
    g.nodes = g.nodes.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
    return (try g.removingDeadNodes().validated(), clipped)
  }

  /// Calls `body(channel, flat index)` for every element of a tensor of `shape`, with the
  /// element's index along `axis`.
  static func forEachChannel(shape: [Int], axis: Int, _ body: (Int, Int) -> Void) {
    let inner = shape[(axis + 1)...].reduce(1, *), channels = shape[axis]
    let outer = shape[..<axis].reduce(1, *)
    var i = 0
    for _ in 0..<outer {
      for c in 0..<channels {
        for _ in 0..<inner { body(c, i); i += 1 }
      }
    }
  }
}
