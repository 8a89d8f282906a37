import LowbitCore
import LowbitTrain

/// One learnable quantizer of a QAT graph: the FakeQuantize node that simulates a quantizer
/// site and the initializers that hold its scale and offset.
public struct QATQuantizer: Sendable, Equatable {
  /// The quantizer site (a weight initializer or an activation value of the float graph).
  public var site: String
  public var kind: QuantizerSite.Kind
  /// The FakeQuantize node and the value it writes (the site's name for a graph output).
  public var node: String
  public var output: String
  /// Initializer names: `<site>_qat_scale` and `<site>_qat_offset` (made unique when taken).
  public var scale: String
  /// `nil` for a symmetric quantizer: its zero point stays 0 and is not trained.
  public var offset: String?
  public var grid: IntegerGrid
  public var granularity: Granularity
  /// LSQ's gradient scale on the node, `1 / sqrt(n * qmax)` (1 without gradient scaling).
  public var gradientScale: Float
}

/// What `QuantizationAwareTraining.graph` built besides the graph: the learnable quantizers, the
/// sites they came from and the opset the QDQ export writes.
public struct QATParameters: Sendable, Equatable {
  /// The quantizers in site order (a weight shared by several layers appears once).
  public var quantizers: [QATQuantizer]
  /// PTQ's quantizer sites on the float graph, for `export`.
  public var sites: [QuantizerSite]
  /// The default-domain opset of the PTQ QDQ graph.
  public var opset: Int
  /// Whether the QDQ graph stores Conv/Gemm biases as int32 (and training rounds them so).
  public var integerBiases = true

  /// Every scale and offset initializer: for an optimizer's `noWeightDecay`, or a separate step size.
  public var parameterNames: Set<String> {
    Set(quantizers.flatMap { [$0.scale] + ($0.offset.map { [$0] } ?? []) })
  }
}

/// Quantization-aware training (white paper sec. 4): PTQ's quantized model as a trainable float
/// graph with FakeQuantize nodes (LowbitTrain) whose scales and offsets learn with the weights
/// (LSQ-style gradients, eq. 37-39), and the way back to a QDQ ONNX graph.
///
///     QuantizationResult -> graph(from:) -> Trainer steps -> export(_:parameters:) -> QDQ graph
///
/// The graph is PTQ's `transformedGraph` (BatchNorm folded, equalized, AdaRound's weights) with
///
/// - every weight site read through `FakeQuantize(w, s_w, z_w)`, per tensor or per channel as
///   its PTQ quantizer (`axis` = the quantizer's channel axis);
/// - every activation site followed by `FakeQuantize(x, s_x, z_x)`, placed where QDQBuilder puts
///   its Q/DQ pair (after the producer; a graph output keeps its name on the quantized value);
///
/// - every Conv/Gemm bias the QDQ graph stores as int32 at `s_w * s_x` read through
///   `BiasQuantize(b, s_w, s_x)`, which rounds it the same way;
///
/// each scale and offset initialized from the PTQ quantizer (range setting, AdaRound), so the
/// untrained QAT graph computes what the PTQ QDQ graph computes (up to float summation order).
/// Symmetric quantizers get no offset input: their zero point is 0 and stays 0.
///
/// With `gradientScaling` (default) each node scales the gradients of its scale and offset by
/// LSQ's `1 / sqrt(n * qmax)`, n the elements one scale serves (a weight channel's elements; an
/// activation's elements per sample), so that one optimizer and step size fit weights and
/// quantizers alike (see `FakeQuantize`). Scales stay positive through
/// `Trainer.projectParameters`, which `Trainer.step` calls after every update.
public enum QuantizationAwareTraining {
  /// The QAT graph for a PTQ result.
  public static func graph(from result: QuantizationResult, gradientScaling: Bool = true) throws -> (Graph, QATParameters) {
    try graph(
      result.transformedGraph, sites: result.sites, quantizers: result.quantizers, opset: result.graph.opset,
      integerBiases: result.integerBiases, gradientScaling: gradientScaling)
  }

  /// The QAT graph of a float graph with quantizers at `sites` (keyed by site name); `opset`
  /// and `integerBiases` are what `export` writes.
  public static func graph(
    _ float: Graph, sites: [QuantizerSite], quantizers: [String: TensorQuantizer], opset: Int,
    integerBiases: Bool = true, gradientScaling: Bool = true
  ) throws -> (Graph, QATParameters) {
    var g = float
    let facts = gradientScaling ? float.inferShapes() : [:]
    var taken = Set<String>()
    func fresh(_ base: String) -> String {
      var name = g.freshName(base), k = 1
      while taken.contains(name) { name = g.freshName("\(base)_\(k)"); k += 1 }
      taken.insert(name)
      return name
    }
    let outputs = Set(g.outputs.map(\.name))
    var entries: [QATQuantizer] = []
    var weightOutput: [String: String] = [:]
    var newNodes: [String: [Node]] = [:]  // inserted after the producer of a value ("" = at the top)

    /// Adds the scale and offset initializers and the node reading `input`; `elements` is the
    /// number of elements one scale serves (nil: unknown, no gradient scaling).
    func fakeQuantize(
      _ site: QuantizerSite, _ q: TensorQuantizer, input: String, output: String, shape: [Int], elements: Int?
    ) throws -> Node {
      let axis: Int?
      switch q.granularity {
      case .perTensor: axis = nil
      case .perChannel(let a): axis = a
      case .perGroup:
        throw LowbitError.unsupported("QAT: the per-group quantizer of '\(site.name)' has no FakeQuantize form")
      }
      let pshape = TensorQuantizer.paramShape(q.granularity, for: shape)
      let scale = fresh(site.name + "_qat_scale")
      g.initializers[scale] = Tensor(shape: pshape, floats: q.params.map(\.scale))
      var offset: String?
      if !q.symmetric {
        let name = fresh(site.name + "_qat_offset")
        g.initializers[name] = Tensor(shape: pshape, floats: q.params.map { Float($0.zeroPoint) })
        offset = name
      }
      let node = fresh(site.name + "_fakequant")
      var gradientScale: Float = 1
      if gradientScaling, let n = elements, n > 0 {
        gradientScale = Float(1 / (Double(n) * Double(q.grid.qmax)).squareRoot())
      }
      entries.append(QATQuantizer(
        site: site.name, kind: site.kind, node: node, output: output, scale: scale, offset: offset,
        grid: q.grid, granularity: q.granularity, gradientScale: gradientScale))
      return FakeQuantize.node(
        name: node, input: input, scale: scale, offset: offset, output: output,
        qmin: q.grid.qmin, qmax: q.grid.qmax, axis: axis, site: site.name,
        gradientScale: gradientScale == 1 ? nil : gradientScale)
    }

    for site in sites {
      guard let q = quantizers[site.name] else { continue }
      switch site.kind {
      case .weight:
        guard let consumer = site.consumer, let w = g.initializers[site.name],
              let index = g.nodes.firstIndex(where: { $0.name == consumer }) else { continue }
        try q.validate(for: w.shape, name: site.name)
        let output: String
        if let existing = weightOutput[site.name] {
          output = existing
        } else {
          output = fresh(site.name + "_fakequant_output")
          let perScale = w.count / max(q.params.count, 1)
          newNodes["", default: []].append(
            try fakeQuantize(site, q, input: site.name, output: output, shape: w.shape, elements: perScale))
          weightOutput[site.name] = output
        }
        g.nodes[index].inputs[1] = output
      case .activation:
        guard let paramShape = q.activationParamShape else { continue }  // as QDQBuilder
        let renamed = fresh(site.name + "_float"), redirected = fresh(site.name + "_fakequant_output")
        let (source, output) = g.redirectForQuantizer(
          site.name, isOutput: outputs.contains(site.name), renamedOutput: renamed, newValue: redirected)
        // Elements per sample and scale: the value's dimensions after the first (batch) one, when known.
        let dims = facts[site.name]?.shape?.dropFirst().map(\.value)
        let perSample = dims.flatMap { $0.contains(nil) ? nil : $0.reduce(1) { $0 * $1! } / q.params.count }
        newNodes[source, default: []].append(
          try fakeQuantize(site, q, input: source, output: output, shape: paramShape, elements: perSample))
      }
    }
    g.insertNodes(newNodes)
    g = try g.validated()
    if integerBiases { quantizeBiases(&g) }
    g.opsets[FakeQuantize.domain] = 1
    return (try g.validated(), QATParameters(quantizers: entries, sites: sites, opset: opset, integerBiases: integerBiases))
  }

  /// Inserts a `BiasQuantize` node for every Conv/Gemm bias the QDQ writer stores as int32:
  /// the layer's weight comes from a FakeQuantize node (per tensor, or per channel with one
  /// scale per bias element) and its input, through data-movement ops, from a per-tensor
  /// activation FakeQuantize node. Layers whose output feeds a BatchNormalization (BN kept
  /// for training) keep a float bias: their file bias is the one after folding.
  static func quantizeBiases(_ g: inout Graph) {
    var taken = Set<String>()
    let producer = g.producers(), readers = g.consumers()
    func fakeQuantizer(_ value: String) -> Node? {
      guard let p = producer[value], FakeQuantize.isFakeQuantize(g.nodes[p]) else { return nil }
      return g.nodes[p]
    }
    var inserted: [Int: Node] = [:]
    for (k, node) in g.nodes.enumerated() where ["Conv", "Gemm"].contains(node.opType) && node.domain.isEmpty {
      guard node.inputs.count > 2, let b = g.initializers[node.inputs[2]], b.dtype.isFloatingPoint,
            node.opType != "Gemm" || b.rank == 1,
            let wq = fakeQuantizer(node.inputs[1]), g.initializers[wq.inputs[0]] != nil,
            let ws = g.initializers[wq.inputs[1]], ws.count == 1 || (wq.attributes["axis"] != nil && ws.count == b.count),
            !(readers[node.outputs[0]] ?? []).contains(where: { g.nodes[$0].opType == "BatchNormalization" })
      else { continue }
      var v = node.inputs[0]
      var activation: Node?
      var seen = Set<String>()
      while activation == nil, seen.insert(v).inserted, let p = producer[v] {
        let n = g.nodes[p]
        if FakeQuantize.isFakeQuantize(n) {
          if n.attributes["axis"] == nil, g.initializers[n.inputs[1]]?.count == 1 { activation = n }
          break
        }
        guard QuantizerPlacement.dataMovement.contains(n.opType), let next = n.inputs.first else { break }
        v = next
      }
      guard let activation else { continue }
      var output = g.freshName(node.inputs[2] + "_qat_quantized"), n = 1
      while taken.contains(output) { output = g.freshName(node.inputs[2] + "_qat_quantized_\(n)"); n += 1 }
      taken.insert(output)
      inserted[k] = BiasQuantize.node(
        name: output, bias: node.inputs[2], weightScale: wq.inputs[1], inputScale: activation.inputs[1], output: output)
      g.nodes[k].inputs[2] = output
    }
    guard !inserted.isEmpty else { return }
    var nodes: [Node] = []
    for (k, node) in g.nodes.enumerated() {
      if let q = inserted[k] { nodes.append(q) }
      nodes.append(node)
    }
    g.nodes = nodes
  }

  /// The quantizers a (trained) QAT graph holds, keyed by site: each FakeQuantize node's scale
  /// as it is, its offset rounded half to even and clamped into the grid (the zero point
  /// `z = clamp(round(z_real), qmin, qmax)`); symmetric (z = 0) where the node has no offset.
  public static func quantizers(from graph: Graph) throws -> [String: TensorQuantizer] {
    var result: [String: TensorQuantizer] = [:]
    for node in graph.nodes where FakeQuantize.isFakeQuantize(node) {
      guard case .int(let qmin)? = node.attributes["qmin"], case .int(let qmax)? = node.attributes["qmax"],
            let grid = grid(qmin: qmin, qmax: qmax) else {
        throw node.error(.invalidModel, "qmin and qmax do not describe a 2- to 16-bit grid")
      }
      var site = node.inputs[0]
      if case .string(let s)? = node.attributes["site"] { site = s }
      guard node.inputs.count > 1, let scale = graph.initializers[node.inputs[1]] else {
        throw node.error(.invalidModel, "the scale is not an initializer")
      }
      let scales = scale.asFloats()
      if let bad = scales.first(where: { !($0 > 0) || !$0.isFinite }) {
        throw node.error(.invalidModel, "scale \(bad) is not positive and finite")
      }
      var zeroPoints = [Int](repeating: 0, count: scales.count)
      let hasOffset = node.inputs.count > 2 && !node.inputs[2].isEmpty
      if hasOffset {
        guard let offset = graph.initializers[node.inputs[2]], offset.count == scales.count else {
          throw node.error(.invalidModel, "the offset is not an initializer shaped like the scale")
        }
        zeroPoints = offset.asFloats().map { Int(FakeQuantize.projectedOffset(FakeQuantize.roundedOffset($0), qmin: qmin, qmax: qmax)) }
      }
      var granularity = Granularity.perTensor
      if case .int(let axis)? = node.attributes["axis"] { granularity = .perChannel(axis: axis) }
      result[site] = TensorQuantizer(
        grid: grid, symmetric: !hasOffset, granularity: granularity,
        params: zip(scales, zeroPoints).map { QuantParams(scale: $0, zeroPoint: $1) })
    }
    return result
  }

  /// The float graph under a QAT graph: every FakeQuantize and BiasQuantize node removed (its
  /// readers read its input again; a graph output gets its name back) with its scale and offset
  /// initializers.
  public static func floatGraph(from graph: Graph) -> Graph {
    var g = graph
    let outputs = Set(g.outputs.map(\.name))
    var reads: [String: String] = [:], writes: [String: String] = [:]
    for node in g.nodes where BiasQuantize.isBiasQuantize(node) { reads[node.outputs[0]] = node.inputs[0] }
    for node in g.nodes where FakeQuantize.isFakeQuantize(node) {
      if outputs.contains(node.outputs[0]) {
        writes[node.inputs[0]] = node.outputs[0]
      } else {
        reads[node.outputs[0]] = node.inputs[0]
      }
    }
    func resolve(_ name: String) -> String {
      var v = name
      while let next = reads[v] { v = next }
      return writes[v] ?? v
    }
    g.nodes = g.nodes.filter { !FakeQuantize.isFakeQuantize($0) && !BiasQuantize.isBiasQuantize($0) }.map { node in
      var n = node
      n.inputs = n.inputs.map { $0.isEmpty ? $0 : resolve($0) }
      n.outputs = n.outputs.map { writes[$0] ?? $0 }
      return n
    }
    g.opsets[FakeQuantize.domain] = nil
    return g.removingDeadNodes()
  }

  /// The QDQ graph of a trained QAT graph: BatchNorms kept through training absorbed into the
  /// weight scales (`foldBatchNorm`), then `QDQBuilder.build` on its float graph with its
  /// quantizers, at `parameters.sites` (opset: `parameters.opset` unless given). Weights are
  /// stored as the integers the FakeQuantize nodes computed, so the file runs the trained model.
  public static func export(_ trained: Graph, parameters: QATParameters, opset: Int? = nil) throws -> Graph {
    let folded = try foldBatchNorm(trained).graph
    let quantizers = try quantizers(from: folded)
    return try QDQBuilder.build(
      floatGraph(from: folded), sites: parameters.sites, quantizers: quantizers, opset: opset ?? parameters.opset,
      integerBiases: parameters.integerBiases)
  }

  /// The grid with ends `qmin`, `qmax`, if it is one of `IntegerGrid`'s.
  static func grid(qmin: Int, qmax: Int) -> IntegerGrid? {
    let narrow = qmin < 0 && qmin == -qmax
    let levels = qmax - qmin + 1 + (narrow ? 1 : 0)
    guard levels > 0, levels & (levels - 1) == 0 else { return nil }
    let bits = levels.trailingZeroBitCount
    guard IntegerGrid.supportedBits.contains(bits) else { return nil }
    let grid = IntegerGrid(bits: bits, signed: qmin < 0, narrow: narrow)
    return grid.qmin == qmin && grid.qmax == qmax ? grid : nil
  }
}
