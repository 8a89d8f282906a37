import LowbitCore

/// Where one quantizer sits in the float graph.
public struct QuantizerSite: Sendable, Equatable, Codable {
  public enum Kind: String, Sendable, Codable {
    /// A weight initializer read by a Conv, Gemm or MatMul.
    case weight
    /// A value computed at run time (or a model input).
    case activation
  }

  /// The value the quantizer acts on: an initializer name for weights, a value name otherwise.
  public var name: String
  public var kind: Kind
  /// The node that produces the value (nil for model inputs and weights).
  public var producer: String?
  /// For weights: the node that reads it.
  public var consumer: String?
  /// For weights: the axis of output channels. For activations under
  /// `QuantConfig.activationPerChannel`: the channel axis, counted from the end, when the value
  /// takes one grid per channel (`QuantizerPlacement.activationChannelAxis`), else nil.
  public var channelAxis: Int?
  /// For weights: the axis of input channels (the axis groups run along).
  public var inputAxis: Int?
  /// True for the quantizer on a graph output, or on the logits a graph-output Softmax or
  /// LogSoftmax normalizes (`QuantizerPlacement.probabilityHeads`): those take the logits range.
  public var isOutput = false

  public init(
    name: String, kind: Kind, producer: String? = nil, consumer: String? = nil, channelAxis: Int? = nil,
    inputAxis: Int? = nil, isOutput: Bool = false
  ) {
    self.name = name
    self.kind = kind
    self.producer = producer
    self.consumer = consumer
    self.channelAxis = channelAxis
    self.inputAxis = inputAxis
    self.isOutput = isOutput
  }
}

/// The white paper's quantizer placement (sec. 2.3, fig. 8), on a float graph after BN folding.
public enum QuantizerPlacement {
  /// Ops that start a layer unit.
  static let layers: Set<String> = ["Conv", "ConvTranspose", "Gemm", "MatMul"]
  /// Element-wise activation functions that end a unit.
  static let activations: Set<String> = [
    "Relu", "Clip", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Gelu", "Elu", "Selu",
    "Mish", "Celu", "ThresholdedRelu", "Softplus", "Softsign",
  ]
  /// Ops whose output is quantized when it is not folded into a unit (a BatchNormalization
  /// left after folding follows no Conv or Gemm: it is its own affine op).
  static let outputQuantized: Set<String> = [
    "AveragePool", "GlobalAveragePool", "LayerNormalization", "Softmax", "Concat",
    "BatchNormalization", "InstanceNormalization", "GroupNormalization",
  ]
  /// Element-wise ops that an activation function written out node by node is made of
  /// (`decomposedActivation`), and the nonlinear ones among them, one of which it must hold.
  static let elementwiseParts: Set<String> = activations.union([
    "Add", "Sub", "Mul", "Div", "Pow", "Erf", "Exp", "Log", "Softplus", "Softsign", "Neg", "Abs", "Sqrt",
    "Reciprocal", "Min", "Max",
  ])
  static let nonlinearParts: Set<String> = activations.union(["Erf", "Exp", "Log", "Softplus", "Softsign", "Min", "Max"])
  /// The most nodes a written-out activation function is searched for.
  static let decomposedLimit = 16
  /// Ops that only move or select data: a grid passes through them unchanged.
  public static let dataMovement: Set<String> = [
    "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "MaxPool", "GlobalMaxPool", "Slice",
    "Identity", "Split", "Gather", "Expand", "Tile", "Dropout",
  ]

  /// Where `value` is computed, walking back through `dataMovement` (which keeps a grid) until
  /// `stop` holds or the next source is a constant: the value whose quantizer `value` reads.
  static func sourceThroughDataMovement(
    _ value: String, _ graph: Graph, producer: [String: Int], stop: (String) -> Bool
  ) -> String {
    var v = value
    while !stop(v), let p = producer[v], dataMovement.contains(graph.nodes[p].opType),
          let src = graph.nodes[p].inputs.first, graph.initializers[src] == nil {
      v = src
    }
    return v
  }

  /// Readers that keep every element in place and mix no channels in an integer runtime: a
  /// value read only by these can take one grid per channel (`QuantConfig.activationPerChannel`).
  /// Conv, Gemm and MatMul sum over channels, so their inputs keep one grid.
  public static let channelwiseReaders: Set<String> = ["Add", "Sub", "Mul", "Div", "LayerNormalization"]

  /// Ops whose output keeps the channels of their computed inputs (broadcasting aligns axes from
  /// the end, so an axis counted from the end stays the same axis).
  static let channelPreserving: Set<String> = activations.union([
    "Add", "Sub", "Mul", "Div", "Erf", "Neg", "Abs", "Sqrt", "Exp", "Pow", "Identity", "Dropout", "Cast",
  ])

  /// The axis, counted from the end, along which activation `value` can take one grid per
  /// channel, or nil. It must be read only by `channelwiseReaders`, not be a graph input or
  /// output, and its channel count must be fixed by a constant, so that the scales fit every
  /// batch and sequence length: tracing back through `channelPreserving` ops, a Conv or ConvTranspose
  /// with a 3-D or larger weight (axis 1, counted as `1 - rank`), a MatMul or Gemm with a constant weight,
  /// a LayerNormalization over the last axis, or a Gather from a constant table (embeddings)
  /// (the last axis, -1). Attention scores (`Q K^T`, both computed) have no such axis.
  static func activationChannelAxis(
    _ value: String, _ graph: Graph, readers: [String: [Int]], producer: [String: Int]
  ) -> Int? {
    guard !graph.outputs.contains(where: { $0.name == value }), !graph.inputs.contains(where: { $0.name == value }),
          let r = readers[value], !r.isEmpty, r.allSatisfy({ channelwiseReaders.contains(graph.nodes[$0].opType) })
    else { return nil }
    let isConstant = { (name: String) in graph.initializers[name] != nil }
    var pending = [value], seen = Set<String>()
    while let v = pending.popLast() {
      guard seen.insert(v).inserted, let p = producer[v] else { continue }
      let node = graph.nodes[p]
      switch node.opType {
      case "Conv", "ConvTranspose":
        if node.inputs.count > 1, let w = graph.initializers[node.inputs[1]], w.rank >= 3 { return 1 - w.rank }
      case "MatMul", "Gemm":
        if node.inputs.count > 1, isConstant(node.inputs[1]) { return -1 }
      case "LayerNormalization":
        if case .int(let a)? = node.attributes["axis"], a != -1 { continue }
        return -1
      case "Gather":
        if isConstant(node.inputs[0]), node.attributes["axis"] == nil || node.attributes["axis"] == .int(0) { return -1 }
      default:
        if channelPreserving.contains(node.opType) { pending += node.inputs.filter { !$0.isEmpty && !isConstant($0) } }
      }
    }
    return nil
  }

  /// The channel axis, counted from the end, of model input `value` when every reader is a Conv
  /// with a 3-D or larger weight reading it as data (an image, `[N, C, H, W]`: `1 - rank`), else nil;
  /// Shape and Size read no values and do not count (`QuantConfig.inputPerChannel`).
  static func inputChannelAxis(_ value: String, _ graph: Graph, readers: [String: [Int]]) -> Int? {
    guard graph.inputs.contains(where: { $0.name == value }),
          let r = readers[value]?.filter({ !["Shape", "Size"].contains(graph.nodes[$0].opType) }), !r.isEmpty
    else { return nil }
    let axes = Set(r.map { i -> Int? in
      let node = graph.nodes[i]
      guard node.opType == "Conv", node.inputs.first == value, node.inputs.count > 1,
            let w = graph.initializers[node.inputs[1]], w.rank >= 3 else { return nil }
      return 1 - w.rank
    })
    return axes.count == 1 ? axes.first! : nil
  }

  /// The value that ends an activation function of `v` written out as element-wise nodes
  /// (SiLU `v * Sigmoid(v)`, GELU `0.5 v (1 + Erf(v / sqrt 2))`, Mish, the tanh GELU), and the
  /// values inside it; nil when `v` feeds none. Grown from `v` in graph order: a node joins when
  /// it is in `elementwiseParts` and reads only `v`, values already inside and scalar constants.
  /// The answer is the largest such set, up to `decomposedLimit` nodes, that reads every use of
  /// `v`, leaves by a single value (every other value inside is read only inside and is not a
  /// graph output) and holds a nonlinear op: one element-wise function of `v`, as a single
  /// activation op would be, so it ends the unit the same way.
  static func decomposedActivation(
    _ v: String, _ graph: Graph, readers: [String: [Int]], outputs: Set<String>
  ) -> (end: String, interior: Set<String>)? {
    func isScalarConstant(_ name: String) -> Bool {
      guard let t = graph.initializers[name] else { return false }
      return t.count == 1 && t.dtype.isFloatingPoint
    }
    var inside: Set<String> = [v], members = Set<Int>(), nonlinear = false
    var best: (end: String, interior: Set<String>)?
    while members.count < decomposedLimit {
      let candidates = Set(inside.flatMap { readers[$0] ?? [] }).subtracting(members).sorted()
      guard let next = candidates.first(where: { i in
        let node = graph.nodes[i]
        return elementwiseParts.contains(node.opType) && node.outputs.count == 1
          && node.inputs.allSatisfy { $0.isEmpty || inside.contains($0) || isScalarConstant($0) }
      }) else { break }
      members.insert(next)
      inside.insert(graph.nodes[next].outputs[0])
      nonlinear = nonlinear || nonlinearParts.contains(graph.nodes[next].opType)
      let leaving = inside.filter { value in
        outputs.contains(value) || (readers[value] ?? []).contains { !members.contains($0) }
      }
      if nonlinear, leaving.count == 1, let end = leaving.first, end != v {
        best = (end, inside.subtracting([v, end]))
      }
    }
    return best
  }

  /// Layers whose weights stay float (their inputs and outputs are quantized like any other
  /// value): ONNX Runtime, like most integer back ends, runs them in float.
  public static let floatWeightLayers: Set<String> = ["LSTM", "GRU", "RNN", "Einsum"]

  /// Ops that turn logits into probabilities.
  static let probabilityOps: Set<String> = ["Softmax", "LogSoftmax", "Sigmoid"]

  /// The nodes that end the model in probabilities: a Softmax, LogSoftmax or Sigmoid that writes
  /// a graph output from a computed value. Their output stays float and their input (the
  /// logits) is quantized instead: an 8-bit grid over [0, 1] ties every class near 0 or 1 (a
  /// Sigmoid at 0.998 and one at 0.999 both read 255), and the argmax takes the first tied
  /// class; an integer accelerator runs this last normalization on dequantized logits anyway.
  public static func probabilityHeads(in graph: Graph) -> [Node] {
    let outputs = Set(graph.outputs.map(\.name))
    return graph.nodes.filter { node in
      probabilityOps.contains(node.opType) && node.outputs.count == 1 && outputs.contains(node.outputs[0])
        && node.inputs.first.map { !$0.isEmpty && graph.initializers[$0] == nil } == true
    }
  }

  /// All quantizer sites of `graph` under `config`, in graph order.
  ///
  /// Weights: every constant weight input of Conv, Gemm and MatMul (axis 0 output channels for
  /// Conv, the output axis for Gemm/MatMul). Activations: the model's float inputs; the end of
  /// each unit `layer [-> bias Add] [-> activation] [-> data movement -> Mul by a per-channel constant]` (one
  /// quantizer after the activation, none between); residual Add/Sub/Mul of two computed values (followed by an activation: after it);
  /// pooling, LayerNorm, Softmax and (requantize mode) Concat outputs; and any MatMul input
  /// still unquantized, traced back through data movement to its producer.
  public static func sites(in graph: Graph, config: QuantConfig) -> [QuantizerSite] {
    let readers = graph.consumers()
    let producer = graph.producers()
    let outputs = Set(graph.outputs.map(\.name))
    let isConstant = { (name: String) in graph.initializers[name] != nil }
    func soleReader(_ value: String) -> Node? {
      guard !outputs.contains(value), let r = readers[value], r.count == 1 else { return nil }
      return graph.nodes[r[0]]
    }
    /// A bias: a constant whose values are all finite (an attention mask of -inf is not one).
    func isBias(_ name: String) -> Bool {
      guard let t = graph.initializers[name], t.dtype.isFloatingPoint else { return false }
      return t.floats.allSatisfy(\.isFinite)
    }
    /// Values inside written-out activation functions: never a site.
    var interior = Set<String>()
    /// The inputs of the written-out activation functions after a MatMul: one grid each, as an
    /// integer runtime evaluates the function from one grid (a table), and ONNX Runtime's
    /// per-axis QuantizeLinear on the last axis runs element by element.
    var functionInputs = Set<String>()
    /// `value` followed through the data movement that alone reads it, link by link.
    func throughDataMovement(_ value: String) -> String {
      var moved = value
      while let next = soleReader(moved), dataMovement.contains(next.opType), next.inputs.first == moved, next.outputs.count == 1 {
        moved = next.outputs[0]
      }
      return moved
    }
    let rotations = Set(graph.nodes.filter { HadamardRotation.isRotation($0, in: graph) }.map(\.name))
    /// The last value of the unit that `value` starts (following bias Add and activation, a
    /// single op or, with `writtenOut`, written out).
    func unitEnd(_ value: String, allowBias: Bool, writtenOut: Bool = true) -> String {
      var v = value
      if allowBias, let next = soleReader(v), next.opType == "Add", next.inputs.count == 2,
         next.inputs.contains(where: isBias) {
        v = next.outputs[0]
      }
      if let next = soleReader(v), activations.contains(next.opType), next.inputs.first == v {
        v = next.outputs[0]
        // A per-channel bound after it (a bounded ReLU after cross-layer equalization) is part
        // of the same activation function.
        if let bound = soleReader(v), bound.opType == "Min", bound.inputs.count == 2, bound.inputs[0] == v,
           isConstant(bound.inputs[1]) {
          v = bound.outputs[0]
        }
      } else if writtenOut, !outputs.contains(v), let written = decomposedActivation(v, graph, readers: readers, outputs: outputs) {
        interior.formUnion(written.interior)
        v = written.end
      }
      // A Mul by a per-channel constant after it, maybe through data movement (channel-scale
      // migration's `1/s` before the next layers), ends the unit: an integer runtime applies it
      // in the requantization.
      let moved = throughDataMovement(v)
      if let next = soleReader(moved), next.opType == "Mul", next.inputs.count == 2, next.inputs[0] == moved,
         let c = graph.initializers[next.inputs[1]], c.rank == 1, c.count > 1 {
        v = next.outputs[0]
      }
      return v
    }
    /// The output of the online rotation (`HadamardRotation`) that `value` alone feeds, maybe
    /// through data movement, else `value`: the rotation runs in float before the quantizer.
    func throughRotation(_ value: String) -> String {
      let moved = throughDataMovement(value)
      if let next = soleReader(moved), next.inputs.first == moved, rotations.contains(next.name) { return next.outputs[0] }
      return value
    }
    var activationValues: [String] = []
    var seen = Set<String>()
    let facts = graph.inferShapes()
    // A probability head's output is never a site: its logits are, at the logits range when it
    // is a (Log)Softmax.
    var headInputs: [String: String] = [:], logits = Set<String>()
    for head in probabilityHeads(in: graph) {
      headInputs[head.outputs[0]] = head.inputs[0]
      if head.opType != "Sigmoid" { logits.insert(head.inputs[0]) }
    }
    func add(_ value: String) {
      let v = throughRotation(headInputs[value] ?? value)
      // Only floating-point values carry activations (shape arithmetic stays integer).
      if let dtype = facts[v]?.dtype, !dtype.isFloatingPoint { return }
      if interior.contains(v) { return }
      if seen.insert(v).inserted { activationValues.append(v) }
    }
    for input in graph.inputs where input.dtype?.isFloatingPoint ?? true {
      if readers[input.name] != nil { add(input.name) }
    }
    for node in graph.nodes {
      guard let out = node.outputs.first, !out.isEmpty, !rotations.contains(node.name) else { continue }
      if layers.contains(node.opType) {
        // After a MatMul (a transformer's feed-forward layer) a written-out GELU keeps its input
        // quantizer: ONNX Runtime fuses the pattern into its own GELU kernel, and the last-bit
        // differences between the two computations grow through a per-tensor 8-bit residual
        // stream (docs/configuration.md).
        let end = unitEnd(out, allowBias: node.opType == "MatMul", writtenOut: node.opType != "MatMul")
        add(end)
        // Its inside stays float as in any written-out activation function (a quantizer there
        // would also keep ONNX Runtime from fusing it); its output is quantized.
        if node.opType == "MatMul", let written = decomposedActivation(end, graph, readers: readers, outputs: outputs) {
          interior.formUnion(written.interior)
          functionInputs.insert(end)
          add(unitEnd(written.end, allowBias: false, writtenOut: false))
        }
      } else if ["Add", "Sub", "Mul"].contains(node.opType), node.inputs.count == 2, !interior.contains(out),
                !node.inputs.contains(where: isConstant), soleReader(out)?.opType != "Softmax" {
        // (An Add feeding a Softmax is an attention mask: the Softmax input stays float.)
        add(unitEnd(out, allowBias: false))
      } else if outputQuantized.contains(node.opType) {
        if node.opType == "Concat" && config.concat == .sharedGrid { continue }
        add(out)
      }
    }
    // Every computed input of a layer (attention's Q K^T and P V, a Conv after a standalone
    // normalization or a written-out input normalization) is quantized: at its producer, through
    // data movement. A shared-grid Concat passes its inputs' grid on.
    for node in graph.nodes where layers.contains(node.opType) && !rotations.contains(node.name) {
      for input in node.inputs.prefix(2) where !input.isEmpty && !isConstant(input) {
        let v = sourceThroughDataMovement(input, graph, producer: producer) { seen.contains($0) }
        if let p = producer[v], graph.nodes[p].opType == "Concat", config.concat == .sharedGrid { continue }
        if !seen.contains(v) { add(v) }
      }
    }
    var sites: [QuantizerSite] = []
    if config.quantizeWeights {
      for node in graph.nodes where layers.contains(node.opType) && node.inputs.count >= 2 && !rotations.contains(node.name) {
        let w = node.inputs[1]
        guard let t = graph.initializers[w], t.dtype.isFloatingPoint, t.rank >= 2 else { continue }
        var outAxis: Int, inAxis: Int
        switch node.opType {
        case "Conv": (outAxis, inAxis) = (0, 1)
        // W is [C, M / group, k...]: axis 1 indexes output channels within a group.
        case "ConvTranspose": (outAxis, inAxis) = (1, 0)
        case "Gemm":
          let transB: Bool
          if case .int(let v)? = node.attributes["transB"] { transB = v != 0 } else { transB = false }
          (outAxis, inAxis) = transB ? (0, 1) : (1, 0)
        default: (outAxis, inAxis) = (t.rank - 1, t.rank - 2)
        }
        sites.append(QuantizerSite(name: w, kind: .weight, producer: nil, consumer: node.name,
                                   channelAxis: outAxis, inputAxis: inAxis))
      }
    }
    if config.quantizeActivations {
      let perChannel = config.activationPerChannelInUse(for: graph)
      for v in activationValues {
        let axis = (perChannel && !functionInputs.contains(v) ? activationChannelAxis(v, graph, readers: readers, producer: producer) : nil)
          ?? (config.inputPerChannel ? inputChannelAxis(v, graph, readers: readers) : nil)
        sites.append(QuantizerSite(name: v, kind: .activation, producer: producer[v].map { graph.nodes[$0].name },
                                   channelAxis: axis, isOutput: outputs.contains(v) || logits.contains(v)))
      }
    }
    let off = Set(config.disabled)
    return sites.filter { !off.contains($0.name) }
  }
}
