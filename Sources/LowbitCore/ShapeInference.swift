/// What shape inference knows of one value: its type, its (symbolic) shape and, for small int64
/// tensors such as the outputs of `Shape`, its (symbolic) elements.
public struct ShapeFact: Sendable, Equatable {
  public var dtype: DType?
  public var shape: [Dim]?
  /// Elements of a small 1-D or 0-d integer tensor, each a number or a symbol.
  public var value: [Dim]?

  public init(dtype: DType? = nil, shape: [Dim]? = nil, value: [Dim]? = nil) {
    self.dtype = dtype
    self.shape = shape
    self.value = value
  }

  /// The elements, when every one is a number.
  var fixedValue: [Int]? {
    guard let v = value else { return nil }
    let fixed = v.compactMap(\.value)
    return fixed.count == v.count ? fixed : nil
  }
}

extension Graph {
  /// Infers the type and symbolic shape of every value it can, propagating dimension symbols
  /// (`N`, `L`) and the elements of shape tensors through the ops exporters emit around them.
  /// Unknown stays unknown: the result never claims a dimension it cannot derive.
  public func inferShapes() -> [String: ShapeFact] {
    var facts: [String: ShapeFact] = [:]
    for input in inputs { facts[input.name] = ShapeFact(dtype: input.dtype, shape: input.shape) }
    for (name, t) in initializers {
      var fact = ShapeFact(dtype: t.dtype, shape: t.shape.map { .fixed($0) })
      if t.dtype.storageClass == .int, t.rank <= 1, t.count <= 16 {
        fact.value = t.ints.map { .fixed(Int($0)) }
      }
      facts[name] = fact
    }
    for node in nodes {
      let ins = node.inputs.map { $0.isEmpty ? nil : facts[$0] }
      let outs = ShapeRules.infer(node, ins, opset: opset)
      for (name, fact) in zip(node.outputs, outs) where !name.isEmpty { facts[name] = fact }
    }
    return facts
  }

  /// The graph with `valueInfo` filled from shape inference.
  public func withInferredShapes() -> Graph {
    var result = self
    for (name, fact) in inferShapes() where initializers[name] == nil {
      if fact.dtype != nil || fact.shape != nil {
        result.valueInfo[name] = ValueInfo(name: name, dtype: fact.dtype, shape: fact.shape)
      }
    }
    return result
  }

  /// Replaces values whose elements shape inference fully knows (a `Shape` of a static tensor,
  /// a `Gather` of a fixed dimension, arithmetic on them) by initializers, then folds what became
  /// constant and drops dead nodes.
  public func foldingKnownShapes() throws -> Graph {
    let facts = inferShapes()
    var result = self
    let outputs = Set(self.outputs.map(\.name))
    result.nodes = nodes.filter { node in
      guard node.outputs.count == 1, !outputs.contains(node.outputs[0]),
            let fact = facts[node.outputs[0]], fact.dtype == .int64,
            let value = fact.fixedValue, let shape = fact.shape?.compactMap(\.value),
            shape.count == fact.shape?.count, shape.reduce(1, *) == value.count
      else { return true }
      result.initializers[node.outputs[0]] = Tensor(shape: shape, ints: value.map { Int64($0) })
      return false
    }
    return try result.foldingConstants().withConstantReshapeTargets(facts).removingDeadNodes()
  }

  /// Gives a Reshape whose computed target shape is known but for symbolic dims (PyTorch's
  /// `x.view(x.size(0), T, H, D)`: `Concat(Unsqueeze(Gather(Shape(x), 0)), ...)`) a constant
  /// target: a symbol equal to the input's dim at the same position becomes 0 (copy that dim),
  /// a single other symbol becomes -1 (inferred). The shape subgraph is then dead, and the graph
  /// holds no batch-sized integer values (which block reconstruction cannot cut through).
  func withConstantReshapeTargets(_ facts: [String: ShapeFact]) -> Graph {
    var result = self
    for (k, node) in nodes.enumerated() where node.opType == "Reshape" && node.inputs.count == 2 {
      let target = node.inputs[1]
      guard initializers[target] == nil, node.attributes["allowzero"] == nil || node.attributes["allowzero"] == .int(0),
            let value = facts[target]?.value, let input = facts[node.inputs[0]]?.shape else { continue }
      var resolved: [Int64] = [], inferred = 0
      for (i, d) in value.enumerated() {
        switch d {
        case .fixed(let v):
          if v == -1 { inferred += 1 }
          if v == 0 { inferred = 2 }  // a literal 0 already copies; leave such targets alone
          resolved.append(Int64(v))
        case .symbol:
          if i < input.count, input[i] == d {
            resolved.append(0)
          } else {
            resolved.append(-1)
            inferred += 1
          }
        }
      }
      guard inferred <= 1, resolved.contains(where: { $0 <= 0 }) else { continue }
      let name = result.freshName(target + "_constant")
      result.initializers[name] = Tensor(shape: [resolved.count], ints: resolved)
      result.nodes[k].inputs[1] = name
    }
    return result
  }
}
