extension Graph {
  /// The graph with nodes in a topological order, after checking that every name a node reads is
  /// defined once (by an input, an initializer or one earlier node) and every output is produced.
  ///
  /// Throws `invalidModel` naming the node for a dangling input, a duplicate definition or a cycle.
  public func validated() throws -> Graph {
    var defined = Set<String>(inputs.map(\.name))
    defined.formUnion(initializers.keys)
    var producedBy: [String: Int] = [:]
    for (i, node) in nodes.enumerated() {
      for output in node.outputs where !output.isEmpty {
        if producedBy[output] != nil || initializers[output] != nil || inputs.contains(where: { $0.name == output }) {
          throw node.error(.invalidModel, "output '\(output)' is defined more than once")
        }
        producedBy[output] = i
      }
    }
    // Kahn's algorithm, keeping the file's order among ready nodes.
    var pending = [Int](repeating: 0, count: nodes.count)
    var waiting: [String: [Int]] = [:]
    for (i, node) in nodes.enumerated() {
      for input in Set(node.inputs) where !input.isEmpty && !defined.contains(input) {
        guard producedBy[input] != nil else {
          throw node.error(.invalidModel, "input '\(input)' is not defined by any node, input or initializer")
        }
        pending[i] += 1
        waiting[input, default: []].append(i)
      }
    }
    var order: [Int] = []
    order.reserveCapacity(nodes.count)
    var ready = (0..<nodes.count).filter { pending[$0] == 0 }
    var cursor = 0
    while cursor < ready.count {
      let i = ready[cursor]
      cursor += 1
      order.append(i)
      for output in nodes[i].outputs where !output.isEmpty {
        for j in waiting[output] ?? [] {
          pending[j] -= 1
          if pending[j] == 0 { ready.append(j) }
        }
      }
    }
    if order.count != nodes.count {
      let stuck = nodes.indices.first { pending[$0] > 0 }!
      throw nodes[stuck].error(.invalidModel, "the graph has a cycle through this node")
    }
    for output in outputs where !defined.contains(output.name) && producedBy[output.name] == nil {
      throw LowbitError.invalidModel("graph output '\(output.name)' is not produced by any node")
    }
    var result = self
    result.nodes = order.map { nodes[$0] }
    return result
  }
}
