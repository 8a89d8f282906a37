import LowbitCore

/// Writes quantizers into a float graph as ONNX QuantizeLinear/DequantizeLinear nodes.
///
/// The result is both lowbit's simulation (the interpreter runs Q/DQ exactly as ONNX defines
/// them) and the file a runtime executes: weights become integer initializers read through a
/// DequantizeLinear, activations pass through a Q -> DQ pair, and Conv/Gemm biases become int32
/// with scale `s_w * s_x` where both the weight and the input are quantized (unless
/// `integerBiases` is off: they stay float).
public enum QDQBuilder {
  /// Builds the QDQ graph. `quantizers` is keyed by site name.
  public static func build(
    _ graph: Graph, sites: [QuantizerSite], quantizers: [String: TensorQuantizer], opset: Int, integerBiases: Bool = true
  ) throws -> Graph {
    var g = try graph.upgradingOpset(to: max(opset, graph.opset))
    let outputs = Set(g.outputs.map(\.name))
    var activationScale: [String: Float] = [:]
    var weightDQ: [String: String] = [:]
    func fresh(_ base: String) -> String { g.freshName(base) }
    func paramTensors(_ q: TensorQuantizer, shape: [Int], dtype: DType, base: String) -> (String, String) {
      let pshape = TensorQuantizer.paramShape(q.granularity, for: shape)
      let scale = fresh(base + "_scale"), zero = fresh(base + "_zero_point")
      g.initializers[scale] = Tensor(shape: pshape, floats: q.params.map(\.scale))
      g.initializers[zero] = Tensor(dtype: dtype, shape: pshape, storage: .int(q.params.map { Int64($0.zeroPoint) }))
      return (scale, zero)
    }
    func attributes(_ q: TensorQuantizer) -> [String: Attribute] {
      switch q.granularity {
      case .perTensor: return [:]
      case .perChannel(let axis): return ["axis": .int(axis)]
      case .perGroup(let axis, let size): return ["axis": .int(axis), "block_size": .int(size)]
      }
    }
    var newNodes: [String: [Node]] = [:]  // nodes to insert after the producer of a value ("" = at the top)
    let floatProducer = g.producers(), floatReaders = g.consumers()
    for site in sites {
      guard let q = quantizers[site.name] else { continue }
      // Weights of 4 bits and fewer are stored two per byte. Activations keep 8-bit integers:
      // ONNX Runtime's graph optimizer moves a DequantizeLinear past MaxPool, which has no 4-bit
      // kernel, so a file with 4-bit activations there fails to load (ORT 1.32), and no CPU
      // runtime computes with 4-bit activations anyway.
      let dtype = q.grid.storageType(opset: opset, subByte: site.kind == .weight)
      switch site.kind {
      case .weight:
        guard let consumer = site.consumer, let w = g.initializers[site.name],
              let index = g.nodes.firstIndex(where: { $0.name == consumer }) else { continue }
        try q.validate(for: w.shape, name: site.name)
        let dq: String
        if let existing = weightDQ[site.name] {
          dq = existing
        } else {
          let intName = fresh(site.name + "_quantized")
          g.initializers[intName] = Tensor(dtype: dtype, shape: w.shape, storage: .int(q.quantize(w.floats, shape: w.shape)))
          let (scale, zero) = paramTensors(q, shape: w.shape, dtype: dtype, base: site.name)
          dq = fresh(site.name + "_dequantized")
          newNodes["", default: []].append(Node(
            name: dq, opType: "DequantizeLinear", inputs: [intName, scale, zero], outputs: [dq], attributes: attributes(q)))
          weightDQ[site.name] = dq
        }
        g.nodes[index].inputs[1] = dq
      case .activation:
        guard let paramShape = q.activationParamShape else { continue }
        if q.granularity == .perTensor { activationScale[site.name] = q.params[0].scale }
        let renamed = fresh(site.name + "_float"), redirected = fresh(site.name + "_dequantized")
        let (source, target) = g.redirectForQuantizer(
          site.name, isOutput: outputs.contains(site.name), renamedOutput: renamed, newValue: redirected)
        if q.granularity == .perChannel(axis: -1) {
          newNodes[source, default: []] += lastAxisFakeQuantization(q, site: site.name, source: source, target: target, &g)
          continue
        }
        let (scale, zero) = paramTensors(q, shape: paramShape, dtype: dtype, base: site.name)
        var chain: [Node] = []
        var qInput = source
        // A grid narrower than its storage type needs the float range clipped first, since
        // QuantizeLinear saturates only to the storage type's bounds.
        if let storage = dtype.integerRange, storage != Int64(q.grid.qmin)...Int64(q.grid.qmax) {
          let ranges = q.params.map { UniformQuantizer.representableRange($0, q.grid) }
          let lo = fresh(site.name + "_clip_min"), hi = fresh(site.name + "_clip_max")
          qInput = fresh(site.name + "_clipped")
          if case .perChannel(let axis) = q.granularity {
            // Per channel: Min and Max against bounds shaped [C, 1, ...] that broadcast along
            // the axis, which per-channel activations count from the end.
            guard axis < 0 else {
              throw LowbitError.unsupported("per-channel activation '\(site.name)': clip bounds need the axis counted from the end, got \(axis)")
            }
            g.initializers[lo] = Tensor(shape: paramShape, floats: ranges.map(\.lowerBound))
            g.initializers[hi] = Tensor(shape: paramShape, floats: ranges.map(\.upperBound))
            let upper = fresh(site.name + "_clipped_above")
            chain.append(Node(name: upper, opType: "Min", inputs: [source, hi], outputs: [upper]))
            chain.append(Node(name: qInput, opType: "Max", inputs: [upper, lo], outputs: [qInput]))
          } else {
            g.initializers[lo] = Tensor(scalar: ranges[0].lowerBound)
            g.initializers[hi] = Tensor(scalar: ranges[0].upperBound)
            chain.append(Node(name: qInput, opType: "Clip", inputs: [source, lo, hi], outputs: [qInput]))
          }
        }
        // (8-bit types only: ONNX Runtime has no 16-bit Min or Max kernel.)
        if chain.isEmpty, q.granularity == .perTensor, dtype == .uint8 || dtype == .int8,
           let clamps = clampsByConstants(endingAt: source, g, producer: floatProducer, readers: floatReaders),
           floatProducer[g.nodes[clamps[0].node].inputs[clamps[0].input]] != nil {
          // The clamps run on the integers: Q(min(x, b)) = min(Q(x), Q(b)) (see
          // `clampsByConstants`), so the layer before them ends in a QuantizeLinear that runtimes
          // fuse into it, and the clamp is one pass over 8-bit values. The float clamps are left
          // unread and removed.
          let v = g.nodes[clamps[0].node].inputs[clamps[0].input]
          var current = fresh(v + "_quantized")
          var integer = [Node(name: current, opType: "QuantizeLinear", inputs: [v, scale, zero], outputs: [current])]
          for clamp in clamps {
            let node = g.nodes[clamp.node], bound = node.inputs[1 - clamp.input], b = g.initializers[bound]!
            let qBound = fresh(bound + "_quantized"), out = fresh(node.name + "_integer")
            g.initializers[qBound] = Tensor(dtype: dtype, shape: b.shape, storage: .int(q.quantize(b.floats, shape: b.shape)))
            integer.append(Node(name: out, opType: node.opType, inputs: [current, qBound], outputs: [out]))
            current = out
          }
          integer.append(Node(name: target, opType: "DequantizeLinear", inputs: [current, scale, zero], outputs: [target]))
          newNodes[v, default: []] += integer
          continue
        }
        let qName = fresh(site.name + "_quantized")
        chain.append(Node(name: qName, opType: "QuantizeLinear", inputs: [qInput, scale, zero], outputs: [qName],
                          attributes: attributes(q)))
        chain.append(Node(name: target, opType: "DequantizeLinear", inputs: [qName, scale, zero], outputs: [target],
                          attributes: attributes(q)))
        newNodes[source, default: []] += chain
      }
    }
    // Biases of Conv/Gemm whose weight and input are both quantized: int32 at s_w * s_x.
    let weightSites = Dictionary(sites.filter { $0.kind == .weight }.map { ($0.consumer ?? "", $0) }, uniquingKeysWith: { a, _ in a })
    let producer = graph.producers()
    for k in g.nodes.indices where integerBiases && ["Conv", "Gemm"].contains(g.nodes[k].opType) && g.nodes[k].inputs.count > 2 {
      let node = g.nodes[k]
      guard let site = weightSites[node.name], let wq = quantizers[site.name],
            let b = g.initializers[node.inputs[2]], b.dtype.isFloatingPoint,
            let sx = inputScale(graph.nodes.first { $0.name == node.name }?.inputs[0] ?? "", graph, producer, activationScale)
      else { continue }
      let perChannel: Bool
      switch wq.granularity {
      case .perTensor: perChannel = false
      case .perChannel: perChannel = true
      case .perGroup: continue
      }
      guard !perChannel || wq.params.count == b.count, node.opType != "Gemm" || b.rank == 1 else { continue }
      var scales = (0..<b.count).map { wq.params[perChannel ? $0 : 0].scale * sx }
      // Where int32 cannot hold b / (s_w s_x) (tiny scales at 16 bits), that bias gets its own,
      // larger scale instead of saturating (runtimes then add it in float).
      let limit: Float = 2_147_483_520
      let worst = zip(b.floats, scales).map { abs($0) / $1 }.max() ?? 0
      if !(worst <= limit) {
        let needed = (b.floats.map(abs).max() ?? 0) / limit * 1.001
        scales = scales.map { max($0, needed) }
        if !perChannel { scales = Array(repeating: scales[0], count: scales.count) }
      }
      let ints = zip(b.floats, scales).map { v, s in Int64((v / s).rounded(.toNearestOrEven)) }
      let base = node.inputs[2]
      let intName = fresh(base + "_quantized"), scale = fresh(base + "_scale"), zero = fresh(base + "_zero_point")
      g.initializers[intName] = Tensor(dtype: .int32, shape: b.shape, storage: .int(ints))
      g.initializers[scale] = perChannel ? Tensor(shape: [b.count], floats: scales) : Tensor(scalar: scales[0])
      g.initializers[zero] = Tensor(dtype: .int32, shape: perChannel ? [b.count] : [], storage: .int(Array(repeating: 0, count: perChannel ? b.count : 1)))
      let dq = fresh(base + "_dequantized")
      newNodes["", default: []].append(Node(
        name: dq, opType: "DequantizeLinear", inputs: [intName, scale, zero], outputs: [dq],
        attributes: perChannel ? ["axis": .int(0)] : [:]))
      g.nodes[k].inputs[2] = dq
    }
    // Splice the new nodes in: weight and bias DQs first, activation Q/DQ after their producers.
    g.insertNodes(newNodes)
    g.insertNodes(requantizingAfterDataMovement(&g))
    g.initializers = g.initializers.mapValues { $0.packed() }  // int8 weights at 1 byte each
    return try g.removingDeadNodes().validated()
  }

  /// A per-channel activation quantizer along the last axis as the arithmetic it stands for,
  /// `y = s_c * min(max(round(x / s_c), qmin - z_c), qmax - z_c)` (Div, Round, Max, Min, Mul
  /// against `[C]` constants): equal, element by element, to a per-axis QuantizeLinear ->
  /// DequantizeLinear pair (the same division, round half to even and saturation, and
  /// `s_c (q - z_c)` with `q - z_c` an exact integer), also for a grid narrower than its storage
  /// type. Written so because ONNX Runtime runs a per-axis QuantizeLinear whose channels are the
  /// last axis element by element (a MiniLM residual stream's took longer than its MatMuls),
  /// while these broadcasting ops are vectorized; the Add and LayerNormalization that read such
  /// values run in float there anyway. Other axes (NCHW channels, whose per-axis pair ONNX
  /// Runtime runs in blocks and fuses) keep the pair. Returns the nodes, to go after `source`.
  static func lastAxisFakeQuantization(
    _ q: TensorQuantizer, site: String, source: String, target: String, _ g: inout Graph
  ) -> [Node] {
    let shape = [q.params.count]
    func constant(_ suffix: String, _ values: [Float]) -> String {
      let name = g.freshName(site + suffix)
      g.initializers[name] = Tensor(shape: shape, floats: values)
      return name
    }
    let scale = constant("_scale", q.params.map(\.scale))
    let lo = constant("_integer_min", q.params.map { Float(q.grid.qmin - $0.zeroPoint) })
    let hi = constant("_integer_max", q.params.map { Float(q.grid.qmax - $0.zeroPoint) })
    let steps: [(op: String, operand: String?, output: String)] = [
      ("Div", scale, site + "_in_steps"), ("Round", nil, site + "_rounded"), ("Max", lo, site + "_above_min"),
      ("Min", hi, site + "_integers"), ("Mul", scale, target),
    ]
    var current = source
    return steps.map { step in
      let out = step.output == target ? target : g.freshName(step.output)
      defer { current = out }
      return Node(name: out, opType: step.op, inputs: [current] + (step.operand.map { [$0] } ?? []), outputs: [out])
    }
  }

  /// A layer with a quantized weight that reads a quantized value through data movement
  /// (Flatten, Reshape, MaxPool, ...) gets that value's grid again right before it: the Q -> DQ
  /// pair is exact on the grid, so the simulation does not change, and runtimes' QDQ fusions
  /// (ONNX Runtime's QGemm and QLinearConv, which want a DequantizeLinear at the layer's input)
  /// then run the layer in integers. Returns the pairs to insert, keyed by the value they read.
  static func requantizingAfterDataMovement(_ g: inout Graph) -> [String: [Node]] {
    let producer = g.producers()
    func dequantized(_ value: String) -> Bool { producer[value].map { g.nodes[$0].opType == "DequantizeLinear" } ?? false }
    var pairs: [String: [Node]] = [:], requantized: [String: String] = [:]
    for k in g.nodes.indices where ["Conv", "ConvTranspose", "Gemm", "MatMul"].contains(g.nodes[k].opType) && g.nodes[k].inputs.count > 1 {
      let value = g.nodes[k].inputs[0]
      guard dequantized(g.nodes[k].inputs[1]), let first = producer[value],
            QuantizerPlacement.dataMovement.contains(g.nodes[first].opType) else { continue }
      if let done = requantized[value] {
        g.nodes[k].inputs[0] = done
        continue
      }
      let source = QuantizerPlacement.sourceThroughDataMovement(value, g, producer: producer) { _ in false }
      guard let d = producer[source], g.nodes[d].opType == "DequantizeLinear", g.nodes[d].inputs.count > 1,
            g.initializers[g.nodes[d].inputs[1]]?.count == 1 else { continue }
      let grid = Array(g.nodes[d].inputs.dropFirst())
      let q = g.freshName(value + "_requantized"), dq = g.freshName(value + "_dequantized")
      pairs[value] = [
        Node(name: q, opType: "QuantizeLinear", inputs: [value] + grid, outputs: [q]),
        Node(name: dq, opType: "DequantizeLinear", inputs: [q] + grid, outputs: [dq]),
      ]
      requantized[value] = dq
      g.nodes[k].inputs[0] = dq
    }
    return pairs
  }

  /// The element-wise clamps by constants that end at `value` (`Min` or `Max` with one float
  /// constant operand, as CLE's and bias absorption's per-channel ReLU6 bound `BoundedReLU`
  /// writes), first to last, each read only by the next, with which input is the data; nil when
  /// `value` is not made by one.
  ///
  /// A quantizer `Q` (round to the grid, saturate) is monotone non-decreasing, and every such
  /// function commutes with a clamp: `Q(min(x, b)) = min(Q(x), Q(b))` and
  /// `Q(max(x, a)) = max(Q(x), Q(a))`, exactly, ties included. So the clamps can run on the
  /// integers of `Q(x)` against the quantized bounds, and the result is the quantizer's output.
  static func clampsByConstants(
    endingAt value: String, _ g: Graph, producer: [String: Int], readers: [String: [Int]]
  ) -> [(node: Int, input: Int)]? {
    var v = value, found: [(node: Int, input: Int)] = []
    while let p = producer[v], ["Min", "Max"].contains(g.nodes[p].opType), g.nodes[p].inputs.count == 2 {
      let constants = g.nodes[p].inputs.map { g.initializers[$0]?.dtype.isFloatingPoint == true }
      guard constants.filter({ $0 }).count == 1, let data = constants.firstIndex(of: false),
            g.initializers[g.nodes[p].inputs[data]] == nil, v == value || readers[v]?.count == 1 else { break }
      found.insert((p, data), at: 0)
      v = g.nodes[p].inputs[data]
    }
    return found.isEmpty ? nil : found
  }

  /// The activation scale reaching `value`, through data movement ops, if it is quantized.
  static func inputScale(_ value: String, _ graph: Graph, _ producer: [String: Int], _ scales: [String: Float]) -> Float? {
    var v = value
    while true {
      if let s = scales[v] { return s }
      guard let p = producer[v], QuantizerPlacement.dataMovement.contains(graph.nodes[p].opType),
            let src = graph.nodes[p].inputs.first else { return nil }
      v = src
    }
  }
}

extension Graph {
  /// Makes room for a quantizer on `value`: the quantizer reads `source` and writes `target`.
  /// A graph output keeps its name (its producer now writes `renamedOutput`, the quantizer writes
  /// the output); any other value keeps its producer, and its readers read `newValue` instead.
  mutating func redirectForQuantizer(
    _ value: String, isOutput: Bool, renamedOutput: String, newValue: String
  ) -> (source: String, target: String) {
    if isOutput, let producer = nodes.firstIndex(where: { $0.outputs.contains(value) }) {
      for k in nodes[producer].outputs.indices where nodes[producer].outputs[k] == value {
        nodes[producer].outputs[k] = renamedOutput
      }
      return (renamedOutput, value)
    }
    for k in nodes.indices {
      for j in nodes[k].inputs.indices where nodes[k].inputs[j] == value { nodes[k].inputs[j] = newValue }
    }
    return (value, newValue)
  }

  /// Inserts `newNodes[v]` right after the node producing `v` (after the graph inputs for an
  /// input `v`), and `newNodes[""]` first.
  ///
  /// Inserted nodes are named after the values they write, and a graph often names a node after
  /// its output too (`MatMul 'logits'` writing `logits`): the DequantizeLinear that now writes
  /// that graph output would share its producer's name, and ONNX Runtime refuses a file with
  /// two nodes of one name. An inserted node whose name is taken gets `name_1`, `name_2`, ...
  /// (the graph's own nodes keep theirs).
  mutating func insertNodes(_ newNodes: [String: [Node]]) {
    var taken = Set(nodes.map(\.name))
    func named(_ batch: [Node]?) -> [Node] {
      (batch ?? []).map { node in
        guard !node.name.isEmpty else { return node }
        var renamed = node, k = 1
        while taken.contains(renamed.name) {
          renamed.name = "\(node.name)_\(k)"
          k += 1
        }
        taken.insert(renamed.name)
        return renamed
      }
    }
    var ordered: [Node] = named(newNodes[""])
    for input in inputs { ordered += named(newNodes[input.name]) }
    for node in nodes {
      ordered.append(node)
      for out in node.outputs where !out.isEmpty { ordered += named(newNodes[out]) }
    }
    nodes = ordered
  }
}
