extension Graph {
  /// The simplified graph: Constant nodes and every node whose inputs are all constant are
  /// evaluated into initializers, shape subgraphs whose result shape inference knows (PyTorch's
  /// Shape -> Gather -> Unsqueeze -> Concat chains over static dims) are folded, Identity nodes
  /// are bypassed, nodes that no output depends on are removed, zero Pads before Convs become
  /// the Convs' padding, and `valueInfo` holds the inferred shapes. Outputs are unchanged bit for bit.
  public func simplified(maxFoldedElements: Int = 1 << 22) throws -> Graph {
    try validated().foldingConstants(maxFoldedElements: maxFoldedElements).foldingKnownShapes()
      .bypassingIdentities().removingDeadNodes().withInferredShapes().foldingPadIntoConv()
  }

  /// Evaluates nodes whose inputs are all initializers, in order, into initializers; results above
  /// `maxFoldedElements` stay computed at run time so files do not grow. DequantizeLinear of a
  /// constant stays (a quantized weight is the point of a QDQ file, and the interpreter runs the
  /// layer reading it in the integer domain).
  public func foldingConstants(maxFoldedElements: Int = 1 << 22) throws -> Graph {
    var result = self
    var kept: [Node] = []
    let nondeterministic: Set<String> = [
      "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli",
    ]
    let graphOutputs = Set(outputs.map(\.name))
    for node in nodes {
      let constantInputs = node.inputs.allSatisfy { $0.isEmpty || result.initializers[$0] != nil }
      guard constantInputs, !nondeterministic.contains(node.opType), node.opType != "DequantizeLinear",
            node.domain.isEmpty || node.domain == "ai.onnx",
            !node.outputs.contains(where: graphOutputs.contains),
            let kernel = Ops.kernels[node.opType]
      else {
        kept.append(node)
        continue
      }
      let args = node.inputs.map { $0.isEmpty ? nil : result.initializers[$0]?.unpacked() }
      let values: [Tensor]
      do {
        values = try kernel(KernelContext(node: node, inputs: args, opset: opset))
      } catch let error as LowbitError {
        throw error.at(opType: node.opType, node: node.name)
      }
      if values.contains(where: { $0.count > maxFoldedElements }) {
        kept.append(node)
        continue
      }
      for (name, value) in zip(node.outputs, values) where !name.isEmpty {
        result.initializers[name] = value.packed()  // held at its type's width
      }
    }
    result.nodes = kept
    return result
  }

  /// Removes Identity nodes by pointing their readers at the Identity's input. An Identity that
  /// names a graph output renames its producer's output instead, when that is safe.
  public func bypassingIdentities() -> Graph {
    var result = self
    let graphOutputs = Set(outputs.map(\.name))
    let graphInputs = Set(inputs.map(\.name))
    var rename: [String: String] = [:]
    var removed = Set<Int>()
    func resolve(_ name: String) -> String {
      var n = name
      while let next = rename[n] { n = next }
      return n
    }
    let producer = producers()
    for (i, node) in nodes.enumerated() where node.opType == "Identity" && node.inputs.count == 1 {
      let source = resolve(node.inputs[0]), target = node.outputs[0]
      if !graphOutputs.contains(target) {
        rename[target] = source
        removed.insert(i)
      } else if let p = producer[source], !graphOutputs.contains(source), !graphInputs.contains(source),
                result.initializers[source] == nil, !removed.contains(p) {
        // The producer writes the output name directly; readers of the old name follow.
        for (k, output) in result.nodes[p].outputs.enumerated() where output == source {
          result.nodes[p].outputs[k] = target
        }
        rename[source] = target
        removed.insert(i)
      }
    }
    result.nodes = result.nodes.enumerated().filter { !removed.contains($0.offset) }.map { _, node in
      var n = node
      n.inputs = n.inputs.map { $0.isEmpty ? $0 : resolve($0) }
      return n
    }
    return result
  }

  /// Drops nodes and initializers that no graph output depends on.
  public func removingDeadNodes() -> Graph {
    var live = Set(outputs.map(\.name))
    var keep = [Bool](repeating: false, count: nodes.count)
    for i in stride(from: nodes.count - 1, through: 0, by: -1) {
      let node = nodes[i]
      if node.outputs.contains(where: live.contains) {
        keep[i] = true
        for input in node.inputs where !input.isEmpty { live.insert(input) }
      }
    }
    var result = self
    result.nodes = nodes.indices.filter { keep[$0] }.map { nodes[$0] }
    result.initializers = initializers.filter { live.contains($0.key) }
    return result
  }
}
