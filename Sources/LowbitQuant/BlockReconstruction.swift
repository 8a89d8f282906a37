import Foundation
import LowbitCore
import LowbitTrain

/// What block reconstruction did to one block.
public struct BlockRefinement: Sendable, Codable, Equatable {
  /// The weighted layers whose rounding was learned together.
  public var layers: [String]
  /// Held-out reconstruction error of the block's outputs, `mean_rows sum_channels (y_hat - y)^2`
  /// summed over its outputs, with round-to-nearest and with the learned rounding.
  public var nearestError: Float
  public var adaRoundError: Float
  /// Fraction of the block's weights rounded differently from round-to-nearest.
  public var flipped: Float
  public var seconds: Double
  /// True when the learned rounding lost to round-to-nearest on the held-out samples and the
  /// block kept round-to-nearest.
  public var keptNearest: Bool?
  /// The held-out error of the rounding the block kept.
  public var keptError: Float { keptNearest == true ? nearestError : adaRoundError }

  enum CodingKeys: String, CodingKey {
    case layers, flipped, seconds, nearestError = "nearest_error", adaRoundError = "adaround_error"
    case keptNearest = "kept_nearest"
  }
}

/// AdaRound over blocks of layers (block reconstruction, Li et al. 2021 "BRECQ"): the rounding
/// variables of every weight in a `ReconstructionBlock` (a residual block, an inception module)
/// are learned together, minimizing
///
///     sum_outputs mean_rows || block(W_soft; x_hat) - block(W; x) ||^2 + lambda sum (1 - |2 h(V) - 1|^beta)
///
/// with `W_soft` AdaRound's parametrization (`SoftRounding`), `x_hat` the block's inputs in the
/// model whose earlier blocks are already quantized and `x` the float model's (asymmetric
/// reconstruction, as in `LayerwiseRefinement`). Rows are the positions of an output
/// (`N H W` for `[N, C, H, W]`, `N T` for `[N, T, C]`); a channel is axis 1 (the last axis for
/// rank 3). The regularizer, beta schedule, Adam step size and iterations are AdaRound's
/// (`AdaRoundOptions`); each step draws `blockBatchSize` calibration samples. Layer-wise AdaRound
/// sees one layer's error only and cannot trade it against the next layer's; a block sees the
/// error where it matters, after the residual sum or the Concat.
public enum BlockReconstruction {
  /// Why a graph cannot be reconstructed block-wise (the pipeline then falls back to layer-wise
  /// AdaRound), or nil: some node that a block's weights reach through values (not only through
  /// Shape or Size, which read dimensions) has no gradient rule, or a block reads a value that
  /// is not a float batch (a shape computed outside it), which its sample draws cannot slice.
  /// Checked before any block runs.
  public static func obstacle(_ graph: Graph, blocks: [ReconstructionBlock], weights: Set<String>) -> String? {
    let facts = graph.inferShapes()
    for block in blocks where !block.layers.isEmpty {
      let carries = Set(block.nodes.flatMap { graph.nodes[$0].inputs }.filter(weights.contains))
      let dependent = block.splitByDependence(on: carries, in: graph).dependent
      if let reason = obstacle(graph, nodes: dependent, carrying: carries, facts: facts) { return reason }
      let nodes = dependent.map { graph.nodes[$0] }
      let inputs = ReconstructionBlock.externalInputs(of: nodes, initializers: graph.initializers)
      if let name = inputs.first(where: { facts[$0]?.dtype.map { !$0.isFloatingPoint } ?? false }) {
        let reader = nodes.first { $0.inputs.contains(name) }!
        return "node '\(reader.name)' (\(reader.opType)) reads '\(name)' (\(facts[name]!.dtype!)), not a float batch of samples"
      }
    }
    return nil
  }

  /// The first of `nodes` (indices, in order) that cannot pass gradients on from the values in
  /// `carrying` (and those computed from them): no training kernel, or no gradient rule where a
  /// carried value reaches it (ops with integer or boolean outputs, such as Shape or IsNaN, have
  /// rules that pass nothing back).
  /// `facts` are `graph.inferShapes()` (inferred here when not given).
  static func obstacle(_ graph: Graph, nodes: [Int], carrying: Set<String>, facts: [String: ShapeFact]? = nil) -> String? {
    var carries = carrying
    let facts = facts ?? graph.inferShapes()
    for i in nodes {
      let node = graph.nodes[i]
      guard TrainingOps.kernel(for: node) != nil else { return "node '\(node.name)' (\(node.opType)) has no training kernel" }
      guard node.inputs.contains(where: carries.contains) else { continue }
      guard let rule = GradientRules.all[node.opType] else { return "node '\(node.name)' (\(node.opType)) has no gradient rule" }
      // As in `Trainer`: gradients flow on through differentiable slots into float outputs only.
      guard node.inputs.indices.contains(where: { rule.differentiates($0) && carries.contains(node.inputs[$0]) }) else { continue }
      carries.formUnion(node.outputs.filter { facts[$0]?.dtype?.isFloatingPoint ?? true })
    }
    return nil
  }

  /// Returns `graph` with every quantized weight replaced by its quantized values `s (q - z)`,
  /// and a record per block; `.failure` with the reason when some block is not differentiable or
  /// its values are not batched along axis 0.
  public static func run(
    _ graph: Graph, sites: [QuantizerSite], quantizers: [String: TensorQuantizer],
    batches: [[String: Tensor]], options: AdaRoundOptions, progress: ((Int, Int) -> Void)? = nil
  ) throws -> Result<(graph: Graph, blocks: [BlockRefinement]), StepFallback> {
    var g = try graph.validated()
    let weights = Set(sites.filter { $0.kind == .weight && quantizers[$0.name] != nil && g.initializers[$0.name] != nil }.map(\.name))
    let layerNames = Set(g.nodes.filter { $0.inputs.contains(where: weights.contains) }.map(\.name))
    let blocks = ReconstructionBlock.partition(g, layers: layerNames, maxLayers: options.blockLayers)
    if let reason = obstacle(g, blocks: blocks, weights: weights) { return .failure(StepFallback(message: reason)) }
    let sizes = try CalibrationSamples.batchSizes(batches, graph: g)
    var streams = Streams(float: batches, quantized: [[String: Tensor]](repeating: [:], count: batches.count))
    var adjusted = g.initializers
    var done = Set<String>()
    var records: [BlockRefinement] = []
    let lastUse = ReconstructionBlock.lastUses(g)
    let total = blocks.filter { !$0.layers.isEmpty }.count
    for block in blocks {
      try streams.run(g, Array(block.nodes), initializers: g.initializers, quantized: false)
      let blockWeights = Set(block.nodes.flatMap { g.nodes[$0].inputs }.filter { weights.contains($0) && !done.contains($0) })
      guard !blockWeights.isEmpty else {
        try streams.run(g, Array(block.nodes), initializers: adjusted, quantized: true, changed: done)
        streams.release(after: block.nodes.upperBound - 1, lastUse: lastUse)
        continue
      }
      let started = monotonicSeconds()
      // Nodes that do not depend on the weights being rounded (a pooling branch of an inception
      // module) run once over all the data, outside the optimization loop.
      let (dependent, fixed) = block.splitByDependence(on: blockWeights, in: g)
      try streams.run(g, fixed, initializers: adjusted, quantized: true, changed: done)
      let problemInputs = ReconstructionBlock.externalInputs(of: dependent.map { g.nodes[$0] }, initializers: g.initializers)
      let produced = Set(dependent.flatMap { g.nodes[$0].outputs })
      let problemOutputs = block.outputs.filter(produced.contains)
      let quantizedInputs = problemInputs.map { name in streams.float.indices.map { streams.value(name, $0, quantized: true)! } }
      let targets = problemOutputs.map { name in streams.float.indices.map { streams.float[$0][name]! } }
      for (name, values) in zip(problemInputs + problemOutputs, quantizedInputs + targets) {
        for (b, t) in values.enumerated() where t.shape.first != sizes[b] || !t.dtype.isFloatingPoint {
          return .failure(StepFallback(message: "value '\(name)' (\(t.shape)) is not a float batch of \(sizes[b]) samples"))
        }
      }
      var problem = try BlockProblem(
        graph: g, nodes: dependent.map { g.nodes[$0] }, inputs: problemInputs, outputs: problemOutputs,
        weights: blockWeights.sorted(), quantizers: quantizers, initializers: adjusted,
        quantizedInputs: quantizedInputs, targets: targets, sizes: sizes)
      var seeded = options
      seeded.seed = options.seed &+ UInt64(records.count) &* 0x9E37_79B9
      var record = try problem.optimize(seeded)
      record.layers = block.layers
      for (name, value) in problem.quantizedWeights() { adjusted[name] = value; done.insert(name) }
      record.seconds = monotonicSeconds() - started
      records.append(record)
      progress?(records.count, total)
      try streams.run(g, dependent, initializers: adjusted, quantized: true, changed: done)
      streams.release(after: block.nodes.upperBound - 1, lastUse: lastUse)
    }
    g.initializers = adjusted
    return .success((g, records))
  }
}

/// The float model's values and the quantized model's (only those that differ) per batch.
struct Streams {
  var float: [[String: Tensor]]
  var quantized: [[String: Tensor]]

  func value(_ name: String, _ b: Int, quantized q: Bool) -> Tensor? {
    (q ? quantized[b][name] : nil) ?? float[b][name]
  }

  /// Runs nodes `indices` of `graph` over every batch in one stream, weights from `initializers`.
  /// The quantized stream stores a node's outputs only when one of its inputs differs.
  /// `changed` names the initializers that differ from the graph's (the quantized weights).
  mutating func run(
    _ graph: Graph, _ indices: [Int], initializers: [String: Tensor], quantized q: Bool, changed: Set<String> = []
  ) throws {
    for i in indices {
      let node = graph.nodes[i]
      guard let kernel = Ops.kernels[node.opType] else { throw node.error(.unsupported, "operator \(node.opType) is not supported") }
      for b in float.indices {
        var differs = !q
        let args: [Tensor?] = try node.inputs.map { name in
          if name.isEmpty { return nil }
          if let w = initializers[name] {
            if q && changed.contains(name) { differs = true }
            return w
          }
          if q, let t = quantized[b][name] { differs = true; return t }
          guard let t = float[b][name] else { throw node.error(.invalidModel, "input '\(name)' has no value") }
          return t
        }
        guard differs else { continue }
        let results: [Tensor]
        do {
          results = try kernel(KernelContext(node: node, inputs: args, opset: graph.opset))
        } catch let error as LowbitError {
          throw error.at(opType: node.opType, node: node.name)
        }
        for (name, value) in zip(node.outputs, results) where !name.isEmpty {
          if q { quantized[b][name] = value } else { float[b][name] = value }
        }
      }
    }
  }

  /// Drops the values no node after `index` reads.
  mutating func release(after index: Int, lastUse: [String: Int]) {
    for b in float.indices {
      for name in Array(float[b].keys) where (lastUse[name] ?? -1) <= index { float[b][name] = nil }
      for name in Array(quantized[b].keys) where (lastUse[name] ?? -1) <= index { quantized[b][name] = nil }
    }
  }
}
