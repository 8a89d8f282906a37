import LowbitCore

/// The activation between two layers that cross-layer equalization and high-bias absorption can
/// move scales and shifts through: a ReLU with an optional upper bound per channel,
/// `f_i(x) = min(max(x, 0), u_i)` (`u_i = +inf` for a plain ReLU, 6 for ReLU6).
///
/// In the graph it is one of: `Relu`; `Clip(x, 0, u)` (ReLU6); either followed by
/// `Min(., U)` with a constant `U` of one value per channel (what equalization writes, since ONNX's
/// Clip takes only scalar bounds). It is positively scale-equivariant per channel,
/// `f_i(x / s_i) = f'_i(x) / s_i` with `u'_i = u_i / s_i`, and shift-equivariant above its lower
/// bound, `f_i(x) = f'_i(x - c_i) + c_i` with `u'_i = u_i - c_i` wherever `x >= c_i >= 0`, so both
/// transforms keep the function exactly by rewriting the bounds.
struct BoundedReLU {
  /// The nodes, in order (one or two).
  var nodes: [Int]
  /// `u_i` per channel of the layer before it (`+inf` where unbounded).
  var upper: [Float]

  var input: String
  var output: String

  /// The activation that ends at `value`'s producer, for a layer of `channels` output channels
  /// whose output has rank `rank` (channels on axis 1), or nil. Interior values must have no
  /// other reader and not be graph outputs.
  static func ending(
    at value: String, _ graph: Graph, channels: Int, rank: Int, readers: [String: [Int]], producer: [String: Int],
    outputs: Set<String>
  ) -> BoundedReLU? {
    guard let last = producer[value] else { return nil }
    var nodes = [last]
    var upper = [Float](repeating: .infinity, count: channels)
    let lastNode = graph.nodes[last]
    if lastNode.opType == "Min" {
      guard lastNode.inputs.count == 2,
            let k = lastNode.inputs.firstIndex(where: { graph.initializers[$0] != nil }),
            let bound = channelValues(graph.initializers[lastNode.inputs[k]]!, channels: channels, rank: rank),
            case let inner = lastNode.inputs[1 - k], graph.initializers[inner] == nil,
            readers[inner]?.count == 1, !outputs.contains(inner), let p = producer[inner]
      else { return nil }
      upper = bound
      nodes.insert(p, at: 0)
    }
    let head = graph.nodes[nodes[0]]
    switch head.opType {
    case "Relu": break
    case "Clip":
      func scalar(_ i: Int) -> Float? {
        guard i < head.inputs.count, !head.inputs[i].isEmpty else { return nil }
        guard let t = graph.initializers[head.inputs[i]], t.count == 1, t.dtype.isFloatingPoint else { return .nan }
        return t.floats[0]
      }
      // Clip's bounds are inputs from opset 11, attributes before.
      var lower: Float?, clipUpper: Float?
      if graph.opset >= 11 {
        (lower, clipUpper) = (scalar(1), scalar(2))
      } else {
        if case .float(let v)? = head.attributes["min"] { lower = v }
        if case .float(let v)? = head.attributes["max"] { clipUpper = v }
      }
      guard lower == 0, clipUpper.map({ !$0.isNaN && $0 > 0 }) ?? true else { return nil }
      if let u = clipUpper { upper = upper.map { min($0, u) } }
    default:
      return nil
    }
    guard head.inputs.first.map({ graph.initializers[$0] == nil }) == true else { return nil }
    return BoundedReLU(nodes: nodes, upper: upper, input: head.inputs[0], output: value)
  }

  /// The values of a constant that holds one value per channel of a rank-`rank` tensor with
  /// channels on axis 1 (shape `[C, 1, ...]` or `[1, C, 1, ...]`), or one value for all.
  static func channelValues(_ t: Tensor, channels: Int, rank: Int) -> [Float]? {
    guard t.dtype.isFloatingPoint else { return nil }
    if t.count == 1 { return [Float](repeating: t.floats[0], count: channels) }
    guard t.count == channels, t.rank <= rank else { return nil }
    let aligned = [Int](repeating: 1, count: rank - t.rank) + t.shape
    guard rank >= 2, aligned[1] == channels, aligned.enumerated().allSatisfy({ $0.offset == 1 || $0.element == 1 })
    else { return nil }
    return t.floats
  }

  /// The nodes that compute `min(max(x, 0), u_i)` from `input` into `output`: `Relu` when no
  /// channel is bounded, `Clip(0, u)` when all bounds agree, else `Relu` then `Min` with a
  /// `[C, 1, ...]` constant (added to `graph`'s initializers) for an output of rank `rank`.
  static func nodes(
    named name: String, input: String, output: String, upper: [Float], rank: Int, graph: inout Graph
  ) -> [Node] {
    if upper.allSatisfy({ $0 == .infinity }) {
      return [Node(name: name, opType: "Relu", inputs: [input], outputs: [output])]
    }
    if let u = upper.first, upper.allSatisfy({ $0 == u }) {
      let lo = graph.freshName(name + "_min"), hi = graph.freshName(name + "_max")
      graph.initializers[lo] = Tensor(shape: [], floats: [0])
      graph.initializers[hi] = Tensor(shape: [], floats: [u])
      return [Node(name: name, opType: "Clip", inputs: [input, lo, hi], outputs: [output])]
    }
    let rectified = graph.freshName(output + "_relu")
    let bound = graph.freshName(name + "_channel_max")
    graph.initializers[bound] = Tensor(shape: [upper.count] + [Int](repeating: 1, count: max(rank - 2, 0)), floats: upper)
    return [
      Node(name: name, opType: "Relu", inputs: [input], outputs: [rectified]),
      Node(name: name + "_channel_max", opType: "Min", inputs: [rectified, bound], outputs: [output]),
    ]
  }

  /// `graph` with each activation's nodes replaced by the nodes for its new bounds (keyed by the
  /// activation's first node), in place in node order.
  static func rewriting(_ graph: Graph, _ changes: [(BoundedReLU, [Float])], rank: (BoundedReLU) -> Int) -> Graph {
    var g = graph
    var replacement: [Int: [Node]] = [:]
    var dropped = Set<Int>()
    for (activation, upper) in changes {
      let name = graph.nodes[activation.nodes[0]].name
      replacement[activation.nodes[0]] = nodes(
        named: name, input: activation.input, output: activation.output, upper: upper, rank: rank(activation), graph: &g)
      dropped.formUnion(activation.nodes.dropFirst())
    }
    var result: [Node] = []
    for (i, node) in graph.nodes.enumerated() where !dropped.contains(i) {
      if let r = replacement[i] { result += r } else { result.append(node) }
    }
    g.nodes = result
    return g.removingDeadNodes()
  }
}
