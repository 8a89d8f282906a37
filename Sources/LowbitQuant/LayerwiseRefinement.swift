import Foundation
import LowbitCore
import LowbitData
import LowbitTrain

/// What the layer-by-layer pass did to one layer.
public struct LayerRefinement: Sendable, Codable, Equatable {
  public var layer: String
  /// AdaRound: held-out reconstruction error with round-to-nearest and with learned rounding,
  /// and the fraction of weights rounded the other way.
  public var nearestError: Float?
  public var adaRoundError: Float?
  public var flipped: Float?
  /// AdaRound: true when its learned rounding lost to round-to-nearest on the held-out rows and
  /// the layer kept round-to-nearest.
  public var keptNearest: Bool?
  /// AdaRound: the held-out error of the rounding the layer kept.
  public var keptError: Float? { keptNearest == true ? nearestError : adaRoundError }
  /// Empirical bias correction: the largest per-channel shift of the mean output removed.
  public var biasShift: Float?
  /// Seconds spent on this layer.
  public var seconds: Double = 0

  enum CodingKeys: String, CodingKey {
    case layer, flipped, seconds, nearestError = "nearest_error", adaRoundError = "adaround_error", biasShift = "bias_shift"
    case keptNearest = "kept_nearest"
  }
}

/// The data-driven weight steps of the PTQ pipeline, run in one layer-by-layer pass over the
/// calibration data (white paper fig. 8): AdaRound (sec. 3.4) and empirical bias correction
/// (sec. 3.3). Each weighted layer sees the inputs produced by the already-quantized layers
/// before it; its weight is replaced by its quantized values `s (q - z)` (which the QDQ writer
/// turns back into exactly `q`) and its bias by the corrected bias.
public enum LayerwiseRefinement {
  /// Returns `graph` with quantized weights and corrected biases, and a record per layer.
  /// With `adaRound` nil, weights are rounded to nearest. `rounded` holds weights another step
  /// has rounded already (GPTQ's, `s (q - z)`): the model being quantized has them from the
  /// start, AdaRound leaves them as they are, and the graph returned holds them.
  public static func run(
    _ graph: Graph, sites: [QuantizerSite], quantizers: [String: TensorQuantizer],
    batches: [[String: Tensor]], adaRound: AdaRoundOptions?, biasCorrection: Bool,
    rounded: [String: Tensor] = [:], progress: ((Int, Int) -> Void)? = nil
  ) throws -> (graph: Graph, layers: [LayerRefinement]) {
    var g = biasCorrection ? addingZeroBiases(graph, sites: sites, quantizers: quantizers) : graph
    let readers = g.consumers()
    var layers: [String: WeightedLayer] = [:]
    for site in sites where site.kind == .weight && quantizers[site.name] != nil {
      guard let consumer = site.consumer, let node = g.nodes.first(where: { $0.name == consumer }),
            let layer = WeightedLayer.detect(node, in: g, readers: readers) else { continue }
      layers[node.name] = layer
    }
    var adjusted = g.initializers.merging(rounded) { _, new in new }
    var records: [LayerRefinement] = []
    let floatInitializers = g.initializers
    try LayerwiseRunner.run(g, batches: batches, layers: layers, adjusted: &adjusted, changed: Set(rounded.keys), progress: progress) {
      visit, adjusted in
      let layer = visit.layer
      guard let w = floatInitializers[layer.weight], let q = quantizers[layer.weight] else { return }
      let started = monotonicSeconds()
      var record = LayerRefinement(layer: layer.node.name)
      var quantizedWeight = rounded[layer.weight] ?? Tensor(shape: w.shape, floats: q.fakeQuantize(w.floats, shape: w.shape))
      if let options = adaRound, rounded[layer.weight] == nil {
        let problem = try roundingProblem(visit, weight: w, quantizer: q, floatBias: layer.biasValues(g),
                                          bias: currentBias(layer, adjusted), opset: g.opset)
        var seeded = options
        seeded.seed = options.seed &+ UInt64(records.count) &* 0x9E37_79B9
        let outcome = AdaRound.optimize(problem, options: seeded)
        var matrix = [Float](repeating: 0, count: outcome.integers.count)
        for e in matrix.indices { matrix[e] = problem.scales[e] * (Float(outcome.integers[e]) - problem.zeroPoints[e]) }
        quantizedWeight = layer.tensor(matrix, like: w)
        record.nearestError = outcome.nearestError
        record.adaRoundError = outcome.adaRoundError
        record.flipped = outcome.flipped
        record.keptNearest = outcome.keptNearest ? true : nil
      }
      adjusted[layer.weight] = quantizedWeight
      if biasCorrection, let biasName = layer.bias, var bias = adjusted[biasName] {
        // (A MatMul's bias sits in the Add after it: the MatMul outputs alone are compared, and
        // the float and quantized biases are equal at this point.)
        let output = try visit.evaluate(quantizedWeight, bias)
        let shift = meanShift(layer, quantized: output, float: visit.floatOutputs)
        var values = bias.floats
        for o in values.indices { values[o] -= shift[o] }
        bias = Tensor(shape: bias.shape, floats: values)
        adjusted[biasName] = bias
        record.biasShift = shift.map(abs).max()
      }
      record.seconds = monotonicSeconds() - started
      records.append(record)
    }
    g.initializers = adjusted
    return (g, records)
  }

  /// How many of `batches` the layer-by-layer pass keeps in memory: it holds every batch's
  /// live values in two streams, so the batches are cut where `2 * 4 bytes * (the largest value
  /// per sample) * 4 (values live at once) * samples` would pass `budget` bytes. At least one
  /// batch is always kept.
  public static func batchesWithinBudget(_ graph: Graph, batches: FeedBatches, budget: Double) throws -> Int {
    guard let first = try batches.sampleCounts(graph: graph).first else { return 0 }
    let facts = graph.inferShapes()
    var largest = 1
    for fact in facts.values {
      guard let dims = fact.shape, fact.dtype?.isFloatingPoint ?? true else { continue }
      largest = max(largest, dims.dropFirst().reduce(1) { $0 * ($1.value ?? 1) })
    }
    let samplesPerBatch = max(1, first)
    let bytesPerBatch = Double(largest) * 4 * 2 * 4 * Double(samplesPerBatch)
    return max(1, min(batches.count, Int(budget / bytesPerBatch)))
  }

  /// Per output channel, `E[quantized] - E[float]` over every row of every batch.
  static func meanShift(_ layer: WeightedLayer, quantized: [Tensor], float: [Tensor]) -> [Float] {
    var q = [Double](repeating: 0, count: layer.outputs), f = q
    var rows = 0
    for (a, b) in zip(quantized, float) {
      let sa = layer.channelSums(a), sb = layer.channelSums(b)
      for o in q.indices { q[o] += sa.sums[o]; f[o] += sb.sums[o] }
      rows += sa.rows
    }
    return (0..<layer.outputs).map { Float((q[$0] - f[$0]) / Double(max(rows, 1))) }
  }

  static func currentBias(_ layer: WeightedLayer, _ initializers: [String: Tensor]) -> [Float] {
    guard let b = layer.bias, let t = initializers[b] else { return [Float](repeating: 0, count: layer.outputs) }
    return t.floats
  }

  /// Conv and Gemm layers to be bias-corrected get an explicit zero bias where they have none.
  static func addingZeroBiases(_ graph: Graph, sites: [QuantizerSite], quantizers: [String: TensorQuantizer]) -> Graph {
    var g = graph
    let consumers = Set(sites.filter { $0.kind == .weight && quantizers[$0.name] != nil }.compactMap(\.consumer))
    for k in g.nodes.indices where consumers.contains(g.nodes[k].name) {
      let node = g.nodes[k]
      guard ["Conv", "Gemm"].contains(node.opType), node.inputs.count == 2 || (node.inputs.count > 2 && node.inputs[2].isEmpty),
            let w = g.initializers[node.inputs[1]], w.rank >= 2 else { continue }
      var outputs = w.shape[0]
      if node.opType == "Gemm", case .int(let t)? = node.attributes["transB"], t != 0 { outputs = w.shape[0] } else if node.opType == "Gemm" { outputs = w.shape[1] }
      let name = g.freshName(node.name + "_bias")
      g.initializers[name] = Tensor(shape: [outputs], floats: [Float](repeating: 0, count: outputs))
      if node.inputs.count == 2 { g.nodes[k].inputs.append(name) } else { g.nodes[k].inputs[2] = name }
    }
    return g
  }

  /// The rounding problem of one layer: its float weight, the quantizer's per-weight grid, and
  /// rows sampled uniformly from every calibration batch (quantized-stream inputs; targets from
  /// the float stream's outputs through the activation).
  static func roundingProblem(
    _ visit: LayerVisit, weight w: Tensor, quantizer q: TensorQuantizer, floatBias: [Float], bias: [Float], opset: Int
  ) throws -> RoundingProblem {
    let layer = visit.layer
    let patches: ConvPatches? = layer.kind.isConvolution
      ? try ConvPatches(node: layer.node, opset: opset, inputShape: visit.quantizedInputs[0].shape, weightShape: w.shape)
      : nil
    let index = TensorQuantizer.paramIndex(q.granularity, for: w.shape)
    let count = layer.outputs * layer.patchSize
    var scales = [Float](repeating: 0, count: count), zeros = scales
    for e in 0..<count {
      let p = q.params[index(layer.tensorIndex(e))]
      scales[e] = p.scale
      zeros[e] = Float(p.zeroPoint)
    }
    let inputs = visit.quantizedInputs.map(\.floats)
    let outputs = visit.floatOutputs.map(\.floats)
    let allRows = CalibrationSamples(sizes: visit.quantizedInputs.map { layer.rows($0, patches) })
    let positions = patches?.positions ?? 1
    let addBias: [Float]? = { if case .matMul = layer.kind { return floatBias } else { return nil } }()
    let activation = layer.activation
    let groups = layer.groups, k = layer.patchSize, outputsCount = layer.outputs
    return RoundingProblem(
      groups: groups, outputs: outputsCount, patchSize: k, weights: layer.matrix(w), scales: scales, zeroPoints: zeros,
      grid: q.grid, bias: bias, activation: activation
    ) { rows, generator in
      // Conv rows come in runs of `run` positions of one image: the image's planes stay in
      // cache while its patches are gathered (random rows over all images would miss on every
      // channel of every patch). The rows are drawn in order, then gathered in parallel.
      let run = patches == nil ? 1 : 32
      var picks: [(batch: Int, row: Int)] = []
      picks.reserveCapacity(rows)
      while picks.count < rows {
        let (b, first) = allRows.locate(generator.uniform(below: allRows.count))
        var row = first
        let image = row / positions
        for _ in 0..<min(run, rows - picks.count) {
          if run > 1 { row = image * positions + generator.uniform(below: positions) }
          picks.append((b, row))
        }
      }
      var x = [Float](repeating: 0, count: groups * rows * k)
      var y = [Float](repeating: 0, count: rows * outputsCount)
      x.withUnsafeMutableBufferPointer { xs in
        y.withUnsafeMutableBufferPointer { ys in
          // Safety: row r writes x at r * k in each group (of stride rows * k) and y at
          // r * outputs, inside the buffers; chunks are disjoint ranges of rows.
          let (sx, sy, picked) = (SharedBuffer(xs), SharedBuffer(ys), picks)
          parallelChunks(rows, costPerItem: groups * k + outputsCount) { range in
            let (px, py) = (sx.pointer(), sy.pointer())
            for r in range {
              let (b, row) = picked[r]
              inputs[b].withUnsafeBufferPointer { src in
                if let p = patches {
                  p.gatherAllGroups(src.baseAddress!, image: row / positions, position: row % positions,
                                    into: px + r * k, groupStride: rows * k)
                } else {
                  (px + r * k).update(from: src.baseAddress! + row * k, count: k)
                }
              }
              outputs[b].withUnsafeBufferPointer { out in
                for o in 0..<outputsCount {
                  var v = layer.outputValue(out, row: row, channel: o, positions: positions)
                  if let add = addBias { v += add[o] }
                  py[r * outputsCount + o] = AdaRound.clamp(v, activation, channel: o)
                }
              }
            }
          }
        }
      }
      return (x, y)
    }
  }
}

extension WeightedLayer.Kind {
  var isConvolution: Bool {
    if case .conv = self { return true }
    return false
  }
}
