import LowbitCore

/// A Conv, Gemm or MatMul with a constant weight, seen as rows of its input times an `[O, K]`
/// weight matrix (per group) plus a bias, followed by an optional clamp (ReLU, ReLU6):
///
///     y[row, o] = act(sum_k W[o, k] * x_row[k] + b[o])
///
/// Rows are a conv's output positions (its receptive-field patches), a Gemm's samples, or a
/// MatMul's leading positions. AdaRound, bias correction and bias absorption work on this view.
struct WeightedLayer {
  enum Kind {
    case conv
    case gemm(transB: Bool)
    case matMul
  }

  var node: Node
  var kind: Kind
  var weight: String
  /// The bias initializer: Conv/Gemm input 2, or the constant of the Add after a MatMul.
  var bias: String?
  /// The node whose output includes the bias (the layer itself, or the Add after a MatMul).
  var biasedOutput: String
  var activation: ActivationClamp?
  var groups: Int
  var outputs: Int
  var patchSize: Int

  /// The layer `node` of `graph` if it has a constant float weight of a supported layout.
  static func detect(_ node: Node, in graph: Graph, readers: [String: [Int]]) -> WeightedLayer? {
    guard node.inputs.count >= 2, let w = graph.initializers[node.inputs[1]], w.dtype.isFloatingPoint,
          let out = node.outputs.first else { return nil }
    let outputs = Set(graph.outputs.map(\.name))
    func soleReader(_ v: String) -> Node? {
      guard !outputs.contains(v), let r = readers[v], r.count == 1 else { return nil }
      return graph.nodes[r[0]]
    }
    var kind: Kind, groups = 1, o: Int, k: Int
    var bias: String? = node.inputs.count > 2 && !node.inputs[2].isEmpty ? node.inputs[2] : nil
    var biased = out
    switch node.opType {
    case "Conv":
      guard w.rank == 3 || w.rank == 4 else { return nil }
      if case .int(let g)? = node.attributes["group"] { groups = g }
      guard groups >= 1, w.shape[0] % groups == 0 else { return nil }
      kind = .conv
      o = w.shape[0]
      k = w.shape[1...].reduce(1, *)
    case "Gemm":
      guard w.rank == 2 else { return nil }
      for name in ["alpha", "beta"] {
        if case .float(let v)? = node.attributes[name], v != 1 { return nil }
      }
      if case .int(let t)? = node.attributes["transA"], t != 0 { return nil }
      var transB = false
      if case .int(let t)? = node.attributes["transB"] { transB = t != 0 }
      kind = .gemm(transB: transB)
      (o, k) = transB ? (w.shape[0], w.shape[1]) : (w.shape[1], w.shape[0])
      if let b = bias, let t = graph.initializers[b], t.count != o { return nil }
    case "MatMul":
      guard w.rank == 2 else { return nil }
      kind = .matMul
      (o, k) = (w.shape[1], w.shape[0])
      bias = nil
      if let add = soleReader(out), add.opType == "Add", add.inputs.count == 2,
         let c = add.inputs.first(where: { $0 != out }), let t = graph.initializers[c], t.count == o,
         t.dtype.isFloatingPoint, t.rank <= 1 || t.shape.dropLast().allSatisfy({ $0 == 1 }) {
        bias = c
        biased = add.outputs[0]
      }
    default:
      return nil
    }
    if let b = bias, let t = graph.initializers[b], !(t.dtype.isFloatingPoint && t.count == o) { return nil }
    var activation: ActivationClamp?
    if let next = soleReader(biased), next.inputs.first == biased {
      if next.opType == "Relu" {
        activation = ActivationClamp(lower: 0, upper: [.infinity])
      } else if next.opType == "Clip" {
        func bound(_ i: Int) -> Float? {
          guard i < next.inputs.count, !next.inputs[i].isEmpty, let t = graph.initializers[next.inputs[i]], t.count == 1
          else { return nil }
          return t.floats[0]
        }
        activation = ActivationClamp(lower: bound(1) ?? -.infinity, upper: [bound(2) ?? .infinity])
      }
      // A per-channel bound after it (a bounded ReLU after cross-layer equalization).
      if let a = activation, let bound = soleReader(next.outputs[0]), bound.opType == "Min", bound.inputs.count == 2,
         bound.inputs[0] == next.outputs[0], let t = graph.initializers[bound.inputs[1]],
         let upper = BoundedReLU.channelValues(t, channels: o, rank: node.opType == "Conv" ? w.rank : 2) {
        activation = ActivationClamp(lower: a.lower, upper: upper.map { Swift.min($0, a.upper(0)) })
      }
    }
    return WeightedLayer(node: node, kind: kind, weight: node.inputs[1], bias: bias, biasedOutput: biased,
                         activation: activation, groups: groups, outputs: o, patchSize: k)
  }

  /// The weight tensor as the `[O, K]` matrix.
  func matrix(_ w: Tensor) -> [Float] {
    switch kind {
    case .conv, .gemm(transB: true): return w.floats
    case .gemm(transB: false), .matMul: return transpose(w.floats, rows: patchSize, columns: outputs)
    }
  }

  /// The `[O, K]` matrix back in the weight tensor's layout.
  func tensor(_ matrix: [Float], like w: Tensor) -> Tensor {
    switch kind {
    case .conv, .gemm(transB: true): return Tensor(shape: w.shape, floats: matrix)
    case .gemm(transB: false), .matMul: return Tensor(shape: w.shape, floats: transpose(matrix, rows: outputs, columns: patchSize))
    }
  }

  /// For each element of the `[O, K]` matrix, the index of that element in the weight tensor.
  func tensorIndex(_ e: Int) -> Int {
    switch kind {
    case .conv, .gemm(transB: true): return e
    case .gemm(transB: false), .matMul:
      let o = e / patchSize, k = e % patchSize
      return k * outputs + o
    }
  }

  /// The layer's bias per output channel (zeros without one).
  func biasValues(_ graph: Graph) -> [Float] {
    guard let b = bias, let t = graph.initializers[b] else { return [Float](repeating: 0, count: outputs) }
    return t.floats
  }

  /// Rows in one batch given the layer's input (and, for convs, its patch geometry).
  func rows(_ input: Tensor, _ patches: ConvPatches?) -> Int {
    if let p = patches { return input.shape[0] * p.positions }
    return input.count / max(patchSize, 1)
  }

  /// Per output channel, the mean of `output` (the layer's output, or the output including a
  /// MatMul's bias) over every row.
  func channelSums(_ output: Tensor) -> (sums: [Double], rows: Int) {
    var sums = [Double](repeating: 0, count: outputs)
    let values = output.floats
    switch kind {
    case .conv:
      let n = output.shape[0], plane = output.count / max(n * outputs, 1)
      for i in 0..<n {
        for o in 0..<outputs {
          let start = (i * outputs + o) * plane
          var s: Double = 0
          for j in start..<(start + plane) { s += Double(values[j]) }
          sums[o] += s
        }
      }
      return (sums, n * plane)
    case .gemm, .matMul:
      let rows = values.count / max(outputs, 1)
      for r in 0..<rows { for o in 0..<outputs { sums[o] += Double(values[r * outputs + o]) } }
      return (sums, rows)
    }
  }

  /// The value at `row`, channel `o` of the layer's output tensor (NCHW for convs).
  @inline(__always)
  func outputValue(_ values: UnsafeBufferPointer<Float>, row: Int, channel o: Int, positions: Int) -> Float {
    switch kind {
    case .conv:
      let n = row / positions, p = row % positions
      return values[(n * outputs + o) * positions + p]
    case .gemm, .matMul:
      return values[row * outputs + o]
    }
  }


}

/// `[rows, columns]` row-major to `[columns, rows]`.
func transpose(_ a: [Float], rows: Int, columns: Int) -> [Float] {
  var t = [Float](repeating: 0, count: a.count)
  for r in 0..<rows { for c in 0..<columns { t[c * rows + r] = a[r * columns + c] } }
  return t
}
