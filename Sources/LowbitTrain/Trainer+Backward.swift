import LowbitCore

extension Trainer {
  /// Reverse-mode pass over `tape`: from `d(loss)/d(value)` for some values (usually the graph
  /// outputs), returns `d(loss)/d(parameter)` for every trainable parameter (zeros where the loss
  /// does not depend on it) and, with `includeInputs`, for every float graph input.
  ///
  /// Nodes run in reverse order; a value read by several nodes sums their contributions in that
  /// order, so the result is bitwise reproducible. With `only`, just those parameters' gradients
  /// are computed and returned (a frozen weight's gradient is never formed).
  public func backward(
    _ tape: GradientTape, outputGradients: [String: Tensor], includeInputs: Bool = false, only: Set<String>? = nil
  ) throws -> [String: Tensor] {
    var grads: [String: Tensor] = [:]
    for (name, g) in outputGradients {
      guard let value = tape.values[name] else {
        throw LowbitError.invalidArgument("'\(name)' is not a value of the forward pass")
      }
      guard g.shape == value.shape, g.dtype.isFloatingPoint else {
        throw LowbitError.invalidArgument("the gradient of '\(name)' has shape \(g.shape), the value \(value.shape)")
      }
      grads[name] = g
    }
    let wanted = requiringGradient(includeInputs: includeInputs, tape: tape, only: only)
    for index in graph.nodes.indices.reversed() {
      let node = graph.nodes[index]
      let outputGradients = node.outputs.map { $0.isEmpty ? nil : grads[$0] }
      guard outputGradients.contains(where: { $0 != nil }) else { continue }
      guard let rule = GradientRules.all[node.opType] else {
        throw node.error(.unsupported, "operator \(node.opType) has no gradient rule (rules exist for \(GradientRules.supportedOpTypes.joined(separator: ", ")))")
      }
      let needs = node.inputs.enumerated().map { slot, name in
        !name.isEmpty && rule.differentiates(slot) && wanted.contains(name)
      }
      guard needs.contains(true) else { continue }
      let context = BackwardContext(
        forward: KernelContext(node: node, inputs: node.inputs.map { $0.isEmpty ? nil : tape.values[$0] }, opset: graph.opset),
        outputs: node.outputs.map { tape.values[$0] ?? Tensor(shape: [0], floats: []) },
        outputGradients: outputGradients, needsGradient: needs, saved: tape.saved[index])
      let inputGradients: [Tensor?]
      do {
        inputGradients = try rule.backward(context)
      } catch let error as LowbitError {
        throw error.at(opType: node.opType, node: node.name)
      }
      for (slot, name) in node.inputs.enumerated() where needs[slot] {
        guard slot < inputGradients.count, let g = inputGradients[slot] else { continue }
        let shape = tape.values[name]!.shape
        guard g.shape == shape else {
          throw node.error(.invalidModel, "gradient of input \(slot) has shape \(g.shape), the input \(shape)")
        }
        grads[name] = grads[name].map { TensorArithmetic.sum($0, g) } ?? g
      }
      for name in node.outputs where !graph.outputs.contains(where: { $0.name == name }) { grads[name] = nil }
    }
    var result: [String: Tensor] = [:]
    for name in parameterNames where only?.contains(name) ?? true {
      result[name] = grads[name] ?? Tensor(shape: graph.initializers[name]!.shape, repeating: 0)
    }
    if includeInputs {
      for input in graph.inputs where tape.values[input.name]?.dtype.isFloatingPoint == true {
        result[input.name] = grads[input.name] ?? Tensor(shape: tape.values[input.name]!.shape, repeating: 0)
      }
    }
    return result
  }

  /// Values whose gradient the backward pass needs: those that depend, through differentiable
  /// input slots, on a parameter (or, with `includeInputs`, on a float graph input).
  func requiringGradient(includeInputs: Bool, tape: GradientTape, only: Set<String>? = nil) -> Set<String> {
    var set = Set(parameterNames.filter { only?.contains($0) ?? true })
    if includeInputs {
      for input in graph.inputs where tape.values[input.name]?.dtype.isFloatingPoint == true { set.insert(input.name) }
    }
    for node in graph.nodes {
      guard let rule = GradientRules.all[node.opType] else { continue }
      let depends = node.inputs.enumerated().contains { slot, name in rule.differentiates(slot) && set.contains(name) }
      if depends {
        for name in node.outputs where tape.values[name]?.dtype.isFloatingPoint == true { set.insert(name) }
      }
    }
    return set
  }
}
