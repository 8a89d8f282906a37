import LowbitCore

/// A contiguous run of a graph's nodes whose weight rounding is learned together (block
/// reconstruction, Li et al. 2021 "BRECQ"): its external inputs, the values it hands on, and
/// the weighted layers inside.
public struct ReconstructionBlock: Sendable, Equatable {
  /// Indices into the (validated, topologically ordered) graph's node list.
  public var nodes: Range<Int>
  /// Names of the nodes inside that read a quantized weight, in node order.
  public var layers: [String]
  /// Values the block reads that are produced before it (graph inputs included, initializers not).
  public var inputs: [String]
  /// Values the block produces that are read after it or are graph outputs.
  public var outputs: [String]

  /// Splits `graph`'s nodes (which must be in topological order) into blocks.
  ///
  /// The graph is first cut wherever a single value carries everything later nodes need (the
  /// output of a residual block, of an inception module's Concat, of a plain layer's
  /// activation). A piece without a weighted layer joins the block before it (the first such
  /// pieces join the first block), so each block ends just before the next weighted piece and
  /// includes the activation functions and pooling that follow its layers. Consecutive single
  /// layers join while each is followed by an activation function (a chain of conv + ReLU up to
  /// the next linear layer: an inverted bottleneck without its residual). A block with more than
  /// `maxLayers` weighted layers is split further in node order, a new block starting at a
  /// weighted node once `maxLayers` are collected; `maxLayers: 1` gives one block per layer.
  public static func partition(_ graph: Graph, layers: Set<String>, maxLayers: Int) -> [ReconstructionBlock] {
    let n = graph.nodes.count
    let lastUse = lastUses(graph)
    // Cuts: after node i, at most one produced value (or graph input) is still to be read.
    var live = Set(graph.inputs.map(\.name).filter { lastUse[$0] != nil })
    var pieces: [Range<Int>] = []
    var start = 0
    for (i, node) in graph.nodes.enumerated() {
      for input in node.inputs where lastUse[input] == i { live.remove(input) }
      for output in node.outputs where !output.isEmpty && (lastUse[output] ?? -1) > i { live.insert(output) }
      if live.count <= 1 || i == n - 1 {
        pieces.append(start..<(i + 1))
        start = i + 1
      }
    }
    func weighted(_ r: Range<Int>) -> [Int] { r.filter { layers.contains(graph.nodes[$0].name) } }
    // A lone layer followed by its activation function joins the next piece when that is a lone
    // layer too: a chain of plain conv + ReLU layers up to the next linear output (an inverted
    // bottleneck without its residual, a stem) becomes one block; a residual block or an
    // inception module after it stays a block of its own.
    func joinsNext(_ r: Range<Int>) -> Bool {
      weighted(r).count == 1 && r.contains { QuantizerPlacement.activations.contains(graph.nodes[$0].opType) }
    }
    var merged: [Range<Int>] = []
    var lastWeighted: Range<Int>?
    for piece in pieces {
      let lone = weighted(piece).count == 1
      if let last = merged.last, weighted(piece).isEmpty || weighted(last).isEmpty || (lone && lastWeighted.map(joinsNext) == true) {
        merged[merged.count - 1] = last.lowerBound..<piece.upperBound
      } else {
        merged.append(piece)
      }
      if !weighted(piece).isEmpty { lastWeighted = piece } else if let w = lastWeighted { lastWeighted = w.lowerBound..<piece.upperBound }
    }
    var ranges: [Range<Int>] = []
    for range in merged {
      var lower = range.lowerBound, count = 0
      for i in range where layers.contains(graph.nodes[i].name) {
        if count == max(1, maxLayers) {
          ranges.append(lower..<i)
          lower = i
          count = 0
        }
        count += 1
      }
      ranges.append(lower..<range.upperBound)
    }
    return ranges.map { block($0, of: graph, layers: layers, lastUse: lastUse) }
  }

  /// The block's node indices split into those that read `weights`, directly or through
  /// another such node, and the rest, each in node order.
  func splitByDependence(on weights: Set<String>, in graph: Graph) -> (dependent: [Int], fixed: [Int]) {
    var tainted = weights
    var dependent: [Int] = [], fixed: [Int] = []
    for i in nodes {
      let node = graph.nodes[i]
      if node.inputs.contains(where: tainted.contains) {
        dependent.append(i)
        tainted.formUnion(node.outputs)
      } else {
        fixed.append(i)
      }
    }
    return (dependent, fixed)
  }

  /// The last node index reading each value; graph outputs count as read after the last node.
  static func lastUses(_ graph: Graph) -> [String: Int] {
    var lastUse: [String: Int] = [:]
    for (i, node) in graph.nodes.enumerated() { for input in node.inputs where !input.isEmpty { lastUse[input] = i } }
    for output in graph.outputs { lastUse[output.name] = graph.nodes.count }
    return lastUse
  }

  /// Values `nodes` read that they do not produce, initializers aside, in first-read order.
  static func externalInputs(of nodes: [Node], initializers: [String: Tensor]) -> [String] {
    var produced = Set<String>(), inputs: [String] = []
    for node in nodes {
      for name in node.inputs where !name.isEmpty && !produced.contains(name) && initializers[name] == nil && !inputs.contains(name) {
        inputs.append(name)
      }
      produced.formUnion(node.outputs)
    }
    return inputs
  }

  static func block(_ range: Range<Int>, of graph: Graph, layers: Set<String>, lastUse: [String: Int]) -> ReconstructionBlock {
    let outputs = range.flatMap { graph.nodes[$0].outputs }.filter { !$0.isEmpty && (lastUse[$0] ?? -1) >= range.upperBound }
    return ReconstructionBlock(
      nodes: range, layers: range.map { graph.nodes[$0].name }.filter(layers.contains),
      inputs: externalInputs(of: range.map { graph.nodes[$0] }, initializers: graph.initializers), outputs: outputs)
  }
}
