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
  /// True for the quantizer on a graph output (the logits).
  public var isOutput = false
}

/// The white paper's quantizer placement (sec. 2.3, fig. 8), on a float graph after BN folding.
public enum QuantizerPlacement {
  /// Ops that start a layer unit.
  static let layers: Set<String> = ["Conv", "Gemm", "MatMul"]
  /// Element-wise activation functions that end a unit.
  static let activations: Set<String> = [
    "Relu", "Clip", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Gelu", "Elu", "Selu",
  ]
  /// Ops whose output is quantized when it is not folded into a unit.
  static let outputQuantized: Set<String> = [
    "AveragePool", "GlobalAveragePool", "LayerNormalization", "Softmax", "Concat",
  ]
  /// Ops that only move or select data: a grid passes through them unchanged.
  public static let dataMovement: Set<String> = [
    "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "MaxPool", "GlobalMaxPool", "Slice",
    "Identity", "Split", "Gather", "Expand", "Tile", "Dropout",
  ]

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
  /// batch and sequence length: tracing back through `channelPreserving` ops, a Conv with a 4-D
  /// or larger weight (axis 1, counted as `2 - rank`), a MatMul or Gemm with a constant weight,
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
      case "Conv":
        if node.inputs.count > 1, let w = graph.initializers[node.inputs[1]], w.rank >= 4 { return 1 - w.rank }
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

  /// All quantizer sites of `graph` under `config`, in graph order.
  ///
  /// Weights: every constant weight input of Conv, Gemm and MatMul (axis 0 output channels for
  /// Conv, the output axis for Gemm/MatMul). Activations: the model's float inputs; the end of
  /// each unit `layer [-> bias Add] [-> activation]` (one quantizer after the activation, none
  /// between); residual Add/Sub/Mul of two computed values (followed by an activation: after it);
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
    /// The last value of the unit that `value` starts (following bias Add and activation).
    func unitEnd(_ value: String, allowBias: Bool) -> String {
      var v = value
      if allowBias, let next = soleReader(v), next.opType == "Add", next.inputs.count == 2,
         next.inputs.contains(where: isBias) {
        v = next.outputs[0]
      }
      if let next = soleReader(v), activations.contains(next.opType), next.inputs.first == v {
        v = next.outputs[0]
      }
      return v
    }
    var activationValues: [String] = []
    var seen = Set<String>()
    let facts = graph.inferShapes()
    func add(_ v: String) {
      // Only floating-point values carry activations (shape arithmetic stays integer).
      if let dtype = facts[v]?.dtype, !dtype.isFloatingPoint { return }
      if seen.insert(v).inserted { activationValues.append(v) }
    }
    for input in graph.inputs where input.dtype?.isFloatingPoint ?? true {
      if readers[input.name] != nil { add(input.name) }
    }
    for node in graph.nodes {
      guard let out = node.outputs.first, !out.isEmpty else { continue }
      if layers.contains(node.opType) {
        add(unitEnd(out, allowBias: node.opType == "MatMul"))
      } else if ["Add", "Sub", "Mul"].contains(node.opType), node.inputs.count == 2,
                !node.inputs.contains(where: isConstant), soleReader(out)?.opType != "Softmax" {
        // (An Add feeding a Softmax is an attention mask: the Softmax input stays float.)
        add(unitEnd(out, allowBias: false))
      } else if outputQuantized.contains(node.opType) {
        if node.opType == "Concat" && config.concat == .sharedGrid { continue }
        add(out)
      }
    }
    // MatMul inputs (attention's Q K^T and P V): quantize at the producer, through data movement.
    for node in graph.nodes where node.opType == "MatMul" {
      for input in node.inputs where !input.isEmpty && !isConstant(input) {
        var v = input
        while !seen.contains(v), let p = producer[v], dataMovement.contains(graph.nodes[p].opType),
              let src = graph.nodes[p].inputs.first, !isConstant(src) {
          v = src
        }
        if !seen.contains(v) { add(v) }
      }
    }
    var sites: [QuantizerSite] = []
    if config.quantizeWeights {
      for node in graph.nodes where layers.contains(node.opType) && node.inputs.count >= 2 {
        let w = node.inputs[1]
        guard let t = graph.initializers[w], t.dtype.isFloatingPoint, t.rank >= 2 else { continue }
        var outAxis: Int, inAxis: Int
        switch node.opType {
        case "Conv": (outAxis, inAxis) = (0, 1)
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
      for v in activationValues {
        let axis = config.activationPerChannel ? activationChannelAxis(v, graph, readers: readers, producer: producer) : nil
        sites.append(QuantizerSite(name: v, kind: .activation, producer: producer[v].map { graph.nodes[$0].name },
                                   channelAxis: axis, isOutput: outputs.contains(v)))
      }
    }
    let off = Set(config.disabled)
    return sites.filter { !off.contains($0.name) }
  }
}
