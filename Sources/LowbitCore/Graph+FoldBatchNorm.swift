/// The statistics of a BatchNormalization folded into the layer before it, kept for the methods
/// that use them (BN-based range setting, high-bias absorption, analytical bias correction).
public struct BatchNormStatistics: Sendable, Equatable {
  /// gamma (scale), beta (shift), the running mean and variance, per channel.
  public var gamma: [Float], beta: [Float], mean: [Float], variance: [Float]
  public var epsilon: Float

  public init(gamma: [Float], beta: [Float], mean: [Float], variance: [Float], epsilon: Float) {
    self.gamma = gamma
    self.beta = beta
    self.mean = mean
    self.variance = variance
    self.epsilon = epsilon
  }

  /// The standard deviation of the BN output's pre-shift term: `gamma / sqrt(var + eps)` per channel.
  public var factors: [Float] {
    zip(gamma, variance).map { g, v in g / (v + epsilon).squareRoot() }
  }
}

extension Graph {
  /// Folds every BatchNormalization that directly follows a Conv (or a Gemm with constant B) into
  /// that layer's weight and bias (white paper eq. 11-13), per output channel c:
  /// `W'[c] = W[c] * gamma[c] / sqrt(var[c] + eps)`,
  /// `b'[c] = (b[c] - mean[c]) * gamma[c] / sqrt(var[c] + eps) + beta[c]`.
  ///
  /// The layer then writes the BN's output name. A BN is left alone when its parameters are not
  /// constant or the layer's output has other readers. Returns the graph and the folded
  /// statistics by layer node name.
  public func foldingBatchNorm() throws -> (graph: Graph, statistics: [String: BatchNormStatistics]) {
    var result = self
    var stats: [String: BatchNormStatistics] = [:]
    let readers = consumers()
    let producer = producers()
    let graphOutputs = Set(outputs.map(\.name))
    var removed = Set<Int>()
    for (bnIndex, bn) in nodes.enumerated() where bn.opType == "BatchNormalization" {
      guard bn.inputs.count == 5, bn.outputs.count >= 1,
            bn.outputs.dropFirst().allSatisfy({ $0.isEmpty || readers[$0] == nil }),
            let layerIndex = producer[bn.inputs[0]], !removed.contains(layerIndex),
            readers[bn.inputs[0]]?.count == 1, !graphOutputs.contains(bn.inputs[0]),
            case let params = bn.inputs[1...4].map({ result.initializers[$0] }),
            params.allSatisfy({ $0 != nil && $0!.dtype.isFloatingPoint && $0!.rank == 1 })
      else { continue }
      if case .int(let t)? = bn.attributes["training_mode"], t != 0 { continue }
      var layer = result.nodes[layerIndex]
      guard layer.opType == "Conv" || layer.opType == "Gemm",
            layer.inputs.count >= 2, let w = result.initializers[layer.inputs[1]], w.dtype == .float32
      else { continue }
      let epsilon: Float
      if case .float(let e)? = bn.attributes["epsilon"] { epsilon = e } else { epsilon = 1e-5 }
      let s = BatchNormStatistics(
        gamma: params[0]!.floats, beta: params[1]!.floats, mean: params[2]!.floats,
        variance: params[3]!.floats, epsilon: epsilon)
      let channels = s.gamma.count
      guard [s.beta, s.mean, s.variance].allSatisfy({ $0.count == channels }) else { continue }
      // Output channels of the layer and the stride between consecutive weights of one channel.
      var weights = w.floats
      if layer.opType == "Conv" {
        guard w.rank >= 3, w.shape[0] == channels else { continue }
        let per = w.count / channels
        let f = s.factors
        for c in 0..<channels { for j in 0..<per { weights[c * per + j] *= f[c] } }
      } else {
        guard w.rank == 2 else { continue }
        if case .int(let t)? = layer.attributes["transA"], t != 0 { continue }
        let transB: Bool
        if case .int(let t)? = layer.attributes["transB"] { transB = t != 0 } else { transB = false }
        let (rows, cols) = (w.shape[0], w.shape[1])
        guard (transB ? rows : cols) == channels else { continue }
        if case .float(let a)? = layer.attributes["alpha"], a != 1 { continue }
        if case .float(let b)? = layer.attributes["beta"], b != 1, layer.inputs.count > 2 { continue }
        let f = s.factors
        for r in 0..<rows { for c in 0..<cols { weights[r * cols + c] *= f[transB ? r : c] } }
      }
      var bias = [Float](repeating: 0, count: channels)
      if layer.inputs.count > 2, !layer.inputs[2].isEmpty {
        guard let b = result.initializers[layer.inputs[2]], b.dtype.isFloatingPoint, b.count == channels
        else { continue }
        bias = b.floats
      }
      let f = s.factors
      for c in 0..<channels { bias[c] = (bias[c] - s.mean[c]) * f[c] + s.beta[c] }
      let weightName = uniqueName(layer.name + ".weight_folded", in: result)
      result.initializers[weightName] = Tensor(shape: w.shape, floats: weights)
      let biasName = uniqueName(layer.name + ".bias_folded", in: result)
      result.initializers[biasName] = Tensor(shape: [channels], floats: bias)
      layer.inputs = [layer.inputs[0], weightName, biasName]
      if layer.opType == "Gemm" { layer.attributes["beta"] = .float(1) }
      layer.outputs[0] = bn.outputs[0]
      result.nodes[layerIndex] = layer
      removed.insert(bnIndex)
      stats[layer.name] = s
    }
    result.nodes = result.nodes.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
    return (result.removingDeadNodes(), stats)
  }

  /// `base`, or `base_1`, `base_2`, ... whichever names no value of this graph yet.
  public func freshName(_ base: String) -> String { uniqueName(base, in: self) }

  /// `base`, or `base_1`, `base_2`, ... whichever names no value of `graph` yet.
  func uniqueName(_ base: String, in graph: Graph) -> String {
    var name = base
    var k = 1
    let taken = { (n: String) in
      graph.initializers[n] != nil || graph.inputs.contains { $0.name == n }
        || graph.nodes.contains { $0.outputs.contains(n) }
    }
    while taken(name) {
      name = "\(base)_\(k)"
      k += 1
    }
    return name
  }
}
