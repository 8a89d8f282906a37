import LowbitCore

/// What a layer-by-layer pass shows of one weighted layer: its input over every calibration
/// batch in the float model and in the model being quantized, and the float model's output.
struct LayerVisit {
  var layer: WeightedLayer
  var floatInputs: [Tensor]
  var quantizedInputs: [Tensor]
  /// The layer node's own output in the float model (a MatMul's without the following bias Add).
  var floatOutputs: [Tensor]
  /// Runs the layer node on `quantizedInputs` with another weight and bias.
  var evaluate: (_ weight: Tensor, _ bias: Tensor?) throws -> [Tensor]
}

/// Runs a float graph one node at a time over all calibration batches (so the data passes
/// through once), in two streams: the float model, and the model being quantized, whose weighted
/// layers change as the pass reaches them. Before a layer runs in the second stream, `visit` sees
/// its inputs in both streams and may replace its weight and bias in `adjusted`; every later
/// layer then sees inputs from the already-changed layers before it.
///
/// Values are kept for every batch until their last reader has run; the second stream computes
/// only what differs from the first.
enum LayerwiseRunner {
  /// `changed` names initializers that differ in the second stream from the start (their values
  /// there are in `adjusted`).
  static func run(
    _ graph: Graph, batches: [[String: Tensor]], layers: [String: WeightedLayer],
    adjusted: inout [String: Tensor], changed: Set<String> = [], progress: ((Int, Int) -> Void)? = nil,
    visit: (LayerVisit, inout [String: Tensor]) throws -> Void
  ) throws {
    let g = try graph.validated()
    var lastUse: [String: Int] = [:]
    for (i, node) in g.nodes.enumerated() { for input in node.inputs where !input.isEmpty { lastUse[input] = i } }
    var float = batches.map { feeds -> [String: Tensor] in feeds }
    var quantized = [[String: Tensor]](repeating: [:], count: batches.count)
    var diverged = changed
    let total = g.nodes.filter { layers[$0.name] != nil }.count
    var visited = 0
    func run(_ node: Node, _ inputs: [Tensor?]) throws -> [Tensor] {
      do {
        return try Ops.kernels[node.opType]!(KernelContext(node: node, inputs: inputs, opset: g.opset))
      } catch let error as LowbitError {
        throw error.at(opType: node.opType, node: node.name)
      }
    }
    for (i, node) in g.nodes.enumerated() {
      guard Ops.kernels[node.opType] != nil else {
        throw node.error(.unsupported, "operator \(node.opType) is not supported")
      }
      func inputs(_ b: Int, quantizedStream: Bool) throws -> [Tensor?] {
        try node.inputs.map { name -> Tensor? in
          if name.isEmpty { return nil }
          if quantizedStream, diverged.contains(name) {
            if let t = quantized[b][name] ?? adjusted[name] { return t }
          }
          if let t = float[b][name] ?? g.initializers[name] { return t }
          throw node.error(.invalidModel, "input '\(name)' has no value")
        }
      }
      var floatResults: [[Tensor]] = []
      for b in batches.indices { floatResults.append(try run(node, try inputs(b, quantizedStream: false))) }
      if let layer = layers[node.name] {
        let floatIn = try batches.indices.map { try inputs($0, quantizedStream: false)[0]! }
        let quantIn = try batches.indices.map { try inputs($0, quantizedStream: true)[0]! }
        let visitNode = node
        let evaluate: (Tensor, Tensor?) throws -> [Tensor] = { weight, bias in
          try quantIn.map { x in
            var args: [Tensor?] = [x, weight]
            if visitNode.inputs.count > 2 { args.append(visitNode.inputs[2].isEmpty ? nil : bias) }
            return try run(visitNode, args)[0]
          }
        }
        try visit(LayerVisit(layer: layer, floatInputs: floatIn, quantizedInputs: quantIn,
                             floatOutputs: floatResults.map { $0[0] }, evaluate: evaluate), &adjusted)
        diverged.insert(layer.weight)
        if let b = layer.bias { diverged.insert(b) }
        visited += 1
        progress?(visited, total)
      }
      if node.inputs.contains(where: diverged.contains) {
        for b in batches.indices {
          let results = try run(node, try inputs(b, quantizedStream: true))
          for (name, value) in zip(node.outputs, results) where !name.isEmpty { quantized[b][name] = value }
        }
        for name in node.outputs where !name.isEmpty { diverged.insert(name) }
      }
      for b in batches.indices {
        for (name, value) in zip(node.outputs, floatResults[b]) where !name.isEmpty { float[b][name] = value }
        for name in node.inputs where !name.isEmpty && lastUse[name] == i {
          float[b][name] = nil
          quantized[b][name] = nil
        }
        for name in node.outputs where !name.isEmpty && lastUse[name] == nil {
          float[b][name] = nil
          quantized[b][name] = nil
        }
      }
    }
  }
}
