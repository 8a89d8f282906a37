import LowbitCore
import LowbitData

/// What GPTQ did to one layer: the `--json` report's `gptq` list.
public struct GPTQLayerRecord: Sendable, Codable, Equatable {
  public var layer: String
  public var weight: String
  /// `K` (input features, the reduction axis) and `N` (outputs).
  public var rows: Int
  public var columns: Int
  /// The proxy loss `tr((W - Q) H (W - Q)^T)` (the paper's layout; `H = 2/n sum x^T x` on the
  /// fitting calibration rows, undamped) with round to nearest on range setting's grids, and
  /// with the rounding the layer kept.
  public var nearestLoss: Double
  public var gptqLoss: Double
  /// True when GPTQ's loss was not below round to nearest's and the layer kept round to nearest.
  public var keptNearest: Bool?
  /// The λ the inverse Hessian was taken with (raised from the configured one when needed).
  public var damping: Double
  /// Inputs that were zero on every calibration row: their weights set to 0.
  public var deadInputs: Int
  public var seconds: Double

  enum CodingKeys: String, CodingKey {
    case layer, weight, rows, columns, damping, seconds
    case nearestLoss = "nearest_loss", gptqLoss = "gptq_loss", keptNearest = "kept_nearest", deadInputs = "dead_inputs"
  }
}

/// GPTQ over a graph: its rounded weights, their grids, and a record per layer.
public struct GPTQResult: Sendable {
  /// The rounded weights `Q = s (q - z)` (float, in the weight's layout) by initializer name;
  /// quantizing them with `quantizers` gives GPTQ's integers back exactly.
  public var weights: [String: Tensor]
  /// Every quantizer, those of the rounded weights with GPTQ's grids.
  public var quantizers: [String: TensorQuantizer]
  public var layers: [GPTQLayerRecord]
  /// Weights with a quantizer that GPTQ left to the other rounding, and why.
  public var skipped: [String: String]
  /// The model input whose zeros marked the rows left out of `H`, when there was one.
  public var mask: String?
}

extension GPTQ {
  /// The layers of `graph` with a quantized weight that GPTQ can round (`LinearLayer.form`), and
  /// the other weight quantizers' reasons.
  static func layers(in graph: Graph, sites: [QuantizerSite], quantizers: [String: TensorQuantizer]) -> ([LinearLayer], [String: String]) {
    let readers = graph.consumers()
    var found: [LinearLayer] = [], skipped: [String: String] = [:]
    for site in sites where site.kind == .weight && quantizers[site.name] != nil {
      guard let consumer = site.consumer, let node = graph.nodes.first(where: { $0.name == consumer }), node.inputs.count > 1,
            node.inputs[1] == site.name
      else {
        skipped[site.name] = "\(describe(site.consumer ?? site.name, graph)) has no MatMul form"
        continue
      }
      switch LinearLayer.form(node, in: graph, readers: readers) {
      case .success(let layer): found.append(layer)
      case .failure(let reason): skipped[site.name] = reason.message
      }
    }
    return (found, skipped)
  }

  private static func describe(_ name: String, _ graph: Graph) -> String {
    graph.nodes.first { $0.name == name }.map { "\($0.opType) '\($0.name)'" } ?? "'\(name)'"
  }

  /// GPTQ for every MatMul and Gemm weight of `graph` (the float model) with a quantizer in
  /// `quantizers` (range setting's): `H = 2/n sum x^T x` over every row reaching the layer's
  /// input when the float model runs `batches` (the rows where `gptqOptions.maskInput` is 0 left
  /// out), then `quantize`. Layers are taken in waves whose
  /// Hessians (`8 K^2` bytes per distinct input) fit `memoryBudget`, one pass over `batches`
  /// per wave. `progress` hears (batches and layers done, in all).
  public static func run(
    _ graph: Graph, sites: [QuantizerSite], quantizers: [String: TensorQuantizer], config: QuantConfig,
    batches: FeedBatches, memoryBudget: Double, progress: ((Int, Int) -> Void)? = nil
  ) throws -> GPTQResult {
    let (layers, skippedLayers) = Self.layers(in: graph, sites: sites, quantizers: quantizers)
    var skipped = skippedLayers
    var inputs: [(name: String, k: Int)] = []
    for layer in layers where !inputs.contains(where: { $0.name == layer.input }) { inputs.append((layer.input, layer.k)) }
    var waves: [[String: Int]] = [[:]]
    var bytes = 0.0
    for input in inputs {
      let size = 8 * Double(input.k * input.k)
      if bytes + size > memoryBudget && !waves[waves.count - 1].isEmpty {
        waves.append([:])
        bytes = 0
      }
      waves[waves.count - 1][input.name] = input.k
      bytes += size
    }
    let mask = FeatureRows.maskInput(config.gptqOptions.maskInput, of: graph)
    let total = waves.filter { !$0.isEmpty }.count * batches.count + layers.count
    var done = 0
    var result = GPTQResult(weights: [:], quantizers: quantizers, layers: [], skipped: [:], mask: mask)
    for wave in waves where !wave.isEmpty {
      let hessians = try Self.hessians(graph, inputs: wave, batches: batches, mask: mask) {
        done += 1
        progress?(done, total)
      }
      for layer in layers where wave[layer.input] != nil {
        let started = monotonicSeconds()
        if let (_, count) = hessians[layer.input], count == 0 {
          skipped[layer.weight] = "no calibration row reached its input '\(layer.input)'"
        } else if let h = hessians[layer.input]?.hessian, let q = quantizers[layer.weight], let w = graph.initializers[layer.weight] {
          if var record = try round(layer, weight: w, quantizer: q, hessian: h, config: config, into: &result) {
            record.seconds = monotonicSeconds() - started
            result.layers.append(record)
          } else {
            skipped[layer.weight] = "\(layer.node.opType) '\(layer.node.name)': its grids do not run along the weight's rows"
          }
        }
        done += 1
        progress?(done, total)
      }
    }
    result.skipped = skipped
    return result
  }

  /// One layer: its weight as `[K, N]`, its grids as `[groups, N]`, GPTQ, and the result back in
  /// the weight's layout (into `result`) unless round to nearest did as well. Nil when the
  /// quantizer's granularity is not per tensor, per output channel or per group along `K`.
  static func round(
    _ layer: LinearLayer, weight w: Tensor, quantizer q: TensorQuantizer, hessian: SymmetricMatrix, config: QuantConfig,
    into result: inout GPTQResult
  ) throws -> GPTQLayerRecord? {
    let (k, n) = (layer.k, layer.n)
    let (kAxis, nAxis) = layer.axes
    var groupSize = k, params: [QuantParams], grouped = false
    switch q.granularity {
    case .perTensor:
      params = [QuantParams](repeating: q.params[0], count: n)
    case .perChannel(let axis) where TensorQuantizer.normalized(axis, rank: 2) == nAxis:
      params = q.params
    case .perGroup(let axis, let size) where axis == kAxis:
      groupSize = size
      grouped = true
      let groups = (k + size - 1) / size
      params = layer.transB ? (0..<(groups * n)).map { q.params[($0 % n) * groups + $0 / n] } : q.params
    default:
      return nil
    }
    let matrix = layer.matrix(w)
    // Groups refitted on this quantizer's own grid (weight mixed precision may have widened it).
    var widths = config
    widths.weightBits = q.grid.bits
    widths.weightSymmetric = q.symmetric
    let fitConfig = widths
    let fit: (@Sendable ([Float]) -> QuantParams)? = grouped ? { @Sendable values in Calibration.weightParams(values, config: fitConfig) } : nil
    let problem = GPTQProblem(
      weights: matrix, rows: k, columns: n, grid: q.grid, groupSize: groupSize, params: params, refit: fit)
    guard let outcome = quantize(problem, hessian: hessian, options: config.gptqOptions) else {
      throw layer.node.error(
        .invalidInput, "GPTQ: the Hessian of input '\(layer.input)' is not positive definite, even with its damping raised 1000-fold")
    }
    var record = GPTQLayerRecord(
      layer: layer.node.name, weight: layer.weight, rows: k, columns: n, nearestLoss: outcome.nearestLoss,
      gptqLoss: outcome.loss, damping: outcome.damping, deadInputs: outcome.deadInputs, seconds: 0)
    guard outcome.loss < outcome.nearestLoss || outcome.loss == 0 else {
      record.keptNearest = true
      record.gptqLoss = outcome.nearestLoss
      return record
    }
    result.weights[layer.weight] = layer.stored(outcome.weights)
    var fitted = q
    switch q.granularity {
    case .perGroup:
      let groups = (k + groupSize - 1) / groupSize
      fitted.params = layer.transB ? (0..<(n * groups)).map { outcome.params[($0 % groups) * n + $0 / groups] } : outcome.params
    default:
      break  // one grid per tensor or column: GPTQ kept range setting's
    }
    result.quantizers[layer.weight] = fitted
    return record
  }

  /// Per value of `inputs` (name to `K`), `H = 2/n sum x^T x` over the `n` rows of `K` features
  /// it holds on every batch, observed as the float model runs (`Interpreter`'s observer, as
  /// calibration observes activations), and `n`; `batchDone` after each batch. With `mask` (a
  /// model input `[N, L]`, e.g. a transformer's attention mask), a value `[N, L, K]` adds only
  /// its rows `(i, j)` where the mask is not 0: padding tokens, whose outputs the model ignores,
  /// do not pull GPTQ towards them.
  static func hessians(
    _ graph: Graph, inputs: [String: Int], batches: FeedBatches, mask: String? = nil, batchDone: () -> Void
  ) throws -> [String: (hessian: SymmetricMatrix, rows: Int)] {
    var sums = inputs.mapValues { SymmetricMatrix(zeros: $0) }
    var rows = inputs.mapValues { _ in 0 }
    try FeatureRows.observe(graph, inputs: inputs, batches: batches, mask: mask, step: "GPTQ", take: { name, values, k in
      sums[name]!.addGram(values, rows: values.count / k)
      rows[name]! += values.count / k
    }, batchDone: batchDone)
    var result: [String: (hessian: SymmetricMatrix, rows: Int)] = [:]
    for (name, var h) in sums {
      let n = rows[name]!
      if n > 0 { h.scale(by: 2 / Double(n)) }
      result[name] = (h, n)
    }
    return result
  }
}

extension GPTQResult {
  /// The step's line in the log: layers, the summed proxy losses, the settings, and the weights
  /// left to the other rounding.
  public func summary(_ options: GPTQOptions, batches: Int) -> String {
    let before = layers.map(\.nearestLoss).reduce(0, +), after = layers.map(\.gptqLoss).reduce(0, +)
    var parts = [String(
      format: "%d layers, H from %d batches; proxy loss tr((W-Q) H (W-Q)^T) summed %.4g nearest -> %.4g; damping %g, block %d%@",
      layers.count, batches, before, after, options.damping, options.blockSize, options.actOrder ? ", act order (static groups)" : "")]
    if let mask { parts.append("rows where '\(mask)' is 0 left out of H") }
    let kept = layers.filter { $0.keptNearest == true }
    if !kept.isEmpty { parts.append("\(kept.count) kept round-to-nearest (" + kept.map { "'\($0.layer)'" }.listed() + ")") }
    let dead = layers.map(\.deadInputs).reduce(0, +)
    if dead > 0 { parts.append("\(dead) dead inputs' weights set to 0") }
    let raised = layers.filter { $0.damping > options.damping }
    if !raised.isEmpty { parts.append("damping raised for " + raised.map { "'\($0.layer)' (\($0.damping))" }.listed()) }
    if !skipped.isEmpty {
      parts.append("\(skipped.count) weights left to the other rounding: " + skipped.keys.sorted().map { "'\($0)' (\(skipped[$0]!))" }.listed())
    }
    return parts.joined(separator: "; ")
  }
}
