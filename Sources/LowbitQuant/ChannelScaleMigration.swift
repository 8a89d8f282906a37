import Glibc
import LowbitCore
import LowbitData

/// How per-input-channel scale moves between a linear layer's input and its weight.
public enum MigrationMethod: String, Sendable, Codable, CaseIterable {
  /// SmoothQuant (Xiao et al. 2023), for quantized activations: `s_j = max|x_j|^α / max|W_j|^(1-α)`,
  /// so a channel whose activations carry outliers hands part of its range to its weight row.
  case smoothQuant = "smoothquant"
  /// AWQ (Lin et al. 2024), for low-bit weights with float activations: `s_j = mean|x_j|^α`
  /// (normalized to `sqrt(max s min s) = 1`), so the weight rows of the salient input channels
  /// take a finer grid relative to their size.
  case awq
  /// No migration.
  case none
}

/// What migration did to one group of linear layers: the `--json` report's `migration` list.
public struct MigrationRecord: Sendable, Codable, Equatable {
  /// The activation `x` the group reads.
  public var input: String
  public var layers: [String]
  /// The α chosen, nil when the group kept `s = 1`.
  public var alpha: Double?
  /// The smallest and largest `s_j`.
  public var scaleMin: Float
  public var scaleMax: Float
  /// The layers' summed output error `sum_l ||Q(x/s) Q(diag(s) W_l) - x W_l||^2` per sample row
  /// (activations quantized only for SmoothQuant), with `s = 1` and with the chosen `s`.
  public var unscaledError: Double
  public var error: Double
  /// Where `1/s` went: a LayerNormalization's scale and bias, or a Mul inserted before the layers.
  public var foldedInto: String
  /// The block of the online Hadamard rotation of the input (`HadamardRotation`) when it was
  /// kept (`--rotation`), else nil.
  public var rotationBlock: Int?

  enum CodingKeys: String, CodingKey {
    case input, layers, alpha, error
    case scaleMin = "scale_min", scaleMax = "scale_max", unscaledError = "unscaled_error", foldedInto = "folded_into"
    case rotationBlock = "rotation_block"
  }
}

/// Channel-scale migration for the linear layers (`LinearLayer`) that read one activation `x`
/// `[..., K]`: `y = x W = (x diag(s)^-1) (diag(s) W)` for any `s_j > 0`, so the float function
/// is unchanged while the quantizers see `x / s` and `diag(s) W`. The `1/s` folds into the
/// LayerNormalization that produces `x` (`gamma / s`, `beta / s`) when only the group reads it,
/// else it becomes a Mul by the constant `1/s` before the group, which the quantizer placement
/// treats as the end of the producing unit (an integer runtime does it in the requantization).
///
/// For each group, α runs over `alphas` (and `s = 1`); the one kept gives the least output
/// error on a seeded sample of calibration rows (`MigrationRecord.error`), with the weight grid
/// range setting would fit to `diag(s) W` (min-max at 8 bits and more) and, for SmoothQuant, the
/// per-tensor activation grid the activation range method fits to `x / s` (from a histogram of
/// the sample, as calibration fits it: `RangeObserver`).
public enum ChannelScaleMigration {
  /// The α searched, 0 to 1 in steps of 0.1.
  public static let alphas: [Double] = (0...10).map { Double($0) / 10 }
  /// Calibration rows each group's error is measured on.
  public static let sampleRows = 512

  /// A group: the linear layers that read `input`.
  struct Group: Sendable {
    var input: String
    var layers: [LinearLayer]
  }

  /// Per-channel statistics of one input over the calibration rows, and a row sample.
  struct InputStatistics: Sendable {
    var lower: [Float]
    var upper: [Float]
    var absoluteSum: [Double]
    var rows = 0
    /// Up to `sampleRows` rows `[rows, K]`, a uniform reservoir sample.
    var sample: [Float] = []

    init(features k: Int) {
      lower = [Float](repeating: .infinity, count: k)
      upper = [Float](repeating: -.infinity, count: k)
      absoluteSum = [Double](repeating: 0, count: k)
    }
  }

  /// The groups of `graph`: its linear layers by input, those with a float weight (a weight read
  /// twice keeps its scale, and so does every layer of its group).
  static func groups(in graph: Graph) -> [Group] {
    let readers = graph.consumers()
    var groups: [Group] = []
    var blocked = Set<String>()
    for node in graph.nodes where ["MatMul", "Gemm"].contains(node.opType) && node.inputs.count > 1 {
      guard graph.initializers[node.inputs[0]] == nil, graph.initializers[node.inputs[1]] != nil,
            !HadamardRotation.isRotation(node, in: graph) else { continue }
      switch LinearLayer.form(node, in: graph, readers: readers) {
      case .success(let layer):
        if let i = groups.firstIndex(where: { $0.input == layer.input }) {
          if groups[i].layers[0].k == layer.k { groups[i].layers.append(layer) } else { blocked.insert(layer.input) }
        } else {
          groups.append(Group(input: layer.input, layers: [layer]))
        }
      case .failure:
        blocked.insert(node.inputs[0])
      }
    }
    return groups.filter { !blocked.contains($0.input) }
  }

  /// Migrates every group of `graph` by `method`, choosing each group's α on `batches` (one pass
  /// of the float model: per-channel ranges, mean magnitudes and the row sample), and with
  /// `config.rotationInUse(for:)` whether its input is rotated as well. Padding rows
  /// (`config.gptqOptions.maskInput` 0) are left out. `progress` hears (groups done, in all).
  public static func run(
    _ graph: Graph, method: MigrationMethod, config: QuantConfig, batches: FeedBatches, seed: UInt64 = 0,
    progress: ((Int, Int) -> Void)? = nil
  ) throws -> (graph: Graph, records: [MigrationRecord]) {
    let rotation = config.rotationInUse(for: graph)
    let groups = method == .none && !rotation ? [] : Self.groups(in: graph)
    guard !groups.isEmpty, !batches.isEmpty else { return (graph, []) }
    let stats = try statistics(
      graph, inputs: Dictionary(groups.map { ($0.input, $0.layers[0].k) }) { a, _ in a }, batches: batches,
      mask: config.gptqOptions.maskInput, seed: seed)
    var g = graph
    var records: [MigrationRecord] = []
    let ranks = graph.inferShapes().compactMapValues { $0.shape?.count }
    for (i, group) in groups.enumerated() {
      defer { progress?(i + 1, groups.count) }
      guard let s = stats[group.input], s.rows > 0 else { continue }
      let weights = group.layers.map { $0.matrix(graph.initializers[$0.weight]!) }
      let block = rotation && (ranks[group.input] ?? 0) >= 2 ? HadamardRotation.block(for: group.layers[0].k) : nil
      let choice = search(group, weights: weights, statistics: s, method: method, config: config, rotationBlock: block)
      var record = MigrationRecord(
        input: group.input, layers: group.layers.map(\.node.name), alpha: choice.alpha, scaleMin: choice.scales.min() ?? 1,
        scaleMax: choice.scales.max() ?? 1, unscaledError: choice.unscaledError, error: choice.error, foldedInto: "",
        rotationBlock: choice.rotation)
      if choice.alpha != nil || choice.rotation != nil {
        for (layer, w) in zip(group.layers, weights) {
          g.initializers[layer.weight] = layer.stored(transformedRows(w, scales: choice.scales, rotation: choice.rotation, layer))
        }
      }
      if choice.alpha != nil { record.foldedInto = dividing(&g, group, by: choice.scales) }
      if let b = choice.rotation {
        let members = Set(group.layers.map(\.node.name))
        let readers = Set(g.nodes.indices.filter { members.contains(g.nodes[$0].name) })
        let x = g.nodes[readers.min()!].inputs[0]
        HadamardRotation.insert(&g, x: x, rank: ranks[group.input]!, k: group.layers[0].k, block: b, readers: readers)
      }
      records.append(record)
    }
    return (try g.validated(), records)
  }

  /// Divides channel `j` of `group.input` by `s_j` for the group's readers. When a
  /// LayerNormalization produces it (scale and bias constants), the group reads a
  /// LayerNormalization with `gamma / s` and `beta / s`: that one when only the group reads its
  /// output (and the constants are its own), else a copy of it, so that the other readers (a
  /// post-LN transformer's residual Add) keep the original and each output is quantized once on
  /// a grid of its own. Otherwise a Mul by `1/s` goes before the first of the group's layers.
  /// Returns what it changed, for the record.
  static func dividing(_ g: inout Graph, _ group: Group, by s: [Float]) -> String {
    let readers = g.consumers(), producers = g.producers()
    let members = Set(group.layers.map(\.node.name))
    let x = group.input
    let memberIndices = Set(g.nodes.indices.filter { members.contains(g.nodes[$0].name) })
    let onlyGroup = Set(readers[x, default: []]) == memberIndices && !g.outputs.contains { $0.name == x }
    /// Rewires the group to `value`, produced by `node` placed before the first of them.
    func feedGroup(_ node: Node, _ value: String) {
      for i in memberIndices { g.nodes[i].inputs = g.nodes[i].inputs.map { $0 == x ? value : $0 } }
      g.nodes.insert(node, at: memberIndices.min()!)
    }
    if let p = producers[x], g.nodes[p].opType == "LayerNormalization", g.nodes[p].outputs.count == 1 {
      let ln = g.nodes[p]
      let parameters = ln.inputs.dropFirst().filter { !$0.isEmpty }
      if parameters.allSatisfy({ g.initializers[$0]?.count == s.count }) {
        let divided = parameters.map { Tensor(shape: [s.count], floats: zip(g.initializers[$0]!.floats, s).map { $0 / $1 }) }
        if onlyGroup && parameters.allSatisfy({ readers[$0]?.count == 1 }) {
          for (name, t) in zip(parameters, divided) { g.initializers[name] = t }
          return "LayerNormalization '\(ln.name)'"
        }
        var copy = ln
        copy.name = g.freshName(ln.name + "_migrated")
        for (name, t) in zip(parameters, divided) {
          let fresh = g.freshName(name + "_migrated")
          g.initializers[fresh] = t
          copy.inputs = copy.inputs.map { $0 == name ? fresh : $0 }
        }
        let value = g.freshName(x + "_migrated")
        copy.outputs = [value]
        feedGroup(copy, value)
        return "LayerNormalization '\(copy.name)' (a copy of '\(ln.name)' for the group)"
      }
    }
    let factor = g.freshName(x + "_migration_scale"), value = g.freshName(x + "_migrated")
    g.initializers[factor] = Tensor(shape: [s.count], floats: s.map { 1 / $0 })
    let name = g.freshName(x + "/migration")
    feedGroup(Node(name: name, opType: "Mul", inputs: [x, factor], outputs: [value]), value)
    return "Mul '\(name)'"
  }

  /// `diag(s) W`: row `j` of the `[K, N]` matrix `w` times `s_j`.
  static func scaledRows(_ w: [Float], by s: [Float], _ layer: LinearLayer) -> [Float] {
    var scaled = w
    for j in 0..<layer.k {
      for c in 0..<layer.n { scaled[j * layer.n + c] *= s[j] }
    }
    return scaled
  }

  /// `R diag(s) W` (`R` the rotation with blocks of `rotation`, or none) in `[K, N]` layout.
  static func transformedRows(_ w: [Float], scales: [Float], rotation: Int?, _ layer: LinearLayer) -> [Float] {
    var m = scaledRows(w, by: scales, layer)
    if let b = rotation { HadamardRotation.rotate(&m, k: layer.k, inner: layer.n, block: b) }
    return m
  }

  /// The scales and error of each candidate, and the best: `s = 1` unless some α lowers the
  /// error. With a `rotationBlock`, `s = 1` and the best `s` are measured rotated as well, and
  /// the rotation is kept when it lowers the error further.
  static func search(
    _ group: Group, weights: [[Float]], statistics s: InputStatistics, method: MigrationMethod, config: QuantConfig,
    rotationBlock: Int? = nil
  ) -> (alpha: Double?, scales: [Float], rotation: Int?, unscaledError: Double, error: Double) {
    let k = group.layers[0].k, rows = s.sample.count / k
    // At 8 bits and more a weight's MSE range is its min-max range but for a step or two.
    var minMaxWeights = config
    if config.weightBits >= 8 { minMaxWeights.weightRange = .minMax }
    let weightConfig = minMaxWeights
    let references = zip(group.layers, weights).map { layer, w in
      MatrixProduct.product(s.sample, w, m: rows, n: layer.n, k: k)
    }
    @Sendable func error(_ scales: [Float], rotation: Int? = nil) -> Double {
      var x = s.sample
      for r in 0..<rows {
        for j in 0..<k { x[r * k + j] /= scales[j] }
      }
      if let b = rotation { HadamardRotation.rotate(&x, k: k, inner: 1, block: b) }
      if method != .awq && config.quantizeActivations {
        let grid = config.activationGrid
        let rangeMethod = config.activationRange.isComputableFromValues ? config.activationRange : .mse
        var observer = RangeObserver(name: group.input)
        observer.observe(x)
        guard let range = try? observer.range(method: rangeMethod, grid: grid, symmetric: config.activationSymmetric, percentile: config.percentile)
        else { return .infinity }  // not finite: never chosen over s = 1
        let p = UniformQuantizer.params(lower: range.lowerBound, upper: range.upperBound, grid: grid, symmetric: config.activationSymmetric)
        x = x.map { UniformQuantizer.fakeQuantize($0, p, grid) }
      }
      var total = 0.0
      for ((layer, w), reference) in zip(zip(group.layers, weights), references) {
        let stored = layer.stored(transformedRows(w, scales: scales, rotation: rotation, layer))
        let (input, output) = layer.axes
        let q = Calibration.weightQuantizer(stored, outputAxis: output, inputAxis: input, config: weightConfig)
        let rounded = layer.matrix(Tensor(shape: stored.shape, floats: q.fakeQuantize(stored.floats, shape: stored.shape)))
        let y = MatrixProduct.product(x, rounded, m: rows, n: layer.n, k: k)
        for (a, b) in zip(y, reference) { total += Double(a - b) * Double(a - b) }
      }
      return total / Double(max(rows, 1))
    }
    let unit = [Float](repeating: 1, count: k)
    let candidates = [unit] + Self.candidates(alphas, method: method, statistics: s, weights: weights, layers: group.layers)
    // Candidates are measured in parallel; each measurement is unchanged.
    let errors = parallelIndexedMap(candidates.count, costPerItem: 1 << 20) { error(candidates[$0]) }
    var best = 0
    for i in errors.indices where errors[i] < errors[best] { best = i }
    if let b = rotationBlock {
      let tried = Array(Set([0, best])).sorted()
      let rotated = parallelIndexedMap(tried.count, costPerItem: 1 << 20) { error(candidates[tried[$0]], rotation: b) }
      if let r = rotated.indices.min(by: { rotated[$0] < rotated[$1] }), rotated[r] < errors[best] {
        let i = tried[r]
        return (i == 0 ? nil : alphas[i - 1], candidates[i], b, errors[0], rotated[r])
      }
    }
    return (best == 0 ? nil : alphas[best - 1], candidates[best], nil, errors[0], errors[best])
  }

  /// `s` for each of `alphas`. SmoothQuant: `s_j = a_j^α / w_j^(1-α)` with `a_j = max|x_j|` over
  /// the calibration rows and `w_j` the largest `|W[j, :]|` of the group's weights. AWQ:
  /// `s_j = m_j^α` with `m_j = mean|x_j|`, divided by `sqrt(max s min s)`. The magnitudes are
  /// found once for all α. A channel with no activation or no weight keeps `s_j = 1`; the rest are
  /// kept within `[1e-5, 1e5]`.
  static func candidates(
    _ alphas: [Double], method: MigrationMethod, statistics s: InputStatistics, weights: [[Float]], layers: [LinearLayer]
  ) -> [[Float]] {
    let k = s.lower.count
    func clamped(_ scales: [Float]) -> [Float] { scales.map { min(max($0, 1e-5), 1e5) } }
    switch method {
    case .smoothQuant:
      var w = [Float](repeating: 0, count: k)
      for (layer, m) in zip(layers, weights) {
        for j in 0..<k {
          for c in 0..<layer.n { w[j] = max(w[j], abs(m[j * layer.n + c])) }
        }
      }
      let a = (0..<k).map { Double(max(abs(s.lower[$0]), abs(s.upper[$0]))) }
      return alphas.map { alpha in
        clamped((0..<k).map { j in a[j] > 0 && w[j] > 0 ? Float(pow(a[j], alpha) / pow(Double(w[j]), 1 - alpha)) : 1 })
      }
    case .none:
      return []
    case .awq:
      let means = s.absoluteSum.map { $0 / Double(s.rows) }
      return alphas.map { alpha in
        var scales = means.map { $0 > 0 ? Float(pow($0, alpha)) : 1 }
        let live = scales.indices.filter { means[$0] > 0 }.map { scales[$0] }
        if let lo = live.min(), let hi = live.max() {
          let norm = Float((Double(lo) * Double(hi)).squareRoot())
          for j in 0..<k where means[j] > 0 { scales[j] /= norm }
        }
        return clamped(scales)
      }
    }
  }

  /// One pass of the float model over `batches`, observing each of `inputs` (name to `K`): the
  /// per-channel range and magnitude sum over its kept rows (`FeatureRows`) and a reservoir
  /// sample of `sampleRows` of them, seeded.
  static func statistics(
    _ graph: Graph, inputs: [String: Int], batches: FeedBatches, mask: String, seed: UInt64
  ) throws -> [String: InputStatistics] {
    var result = inputs.mapValues { InputStatistics(features: $0) }
    var rng = SplitMix64(seed: seed)
    try FeatureRows.observe(graph, inputs: inputs, batches: batches, mask: FeatureRows.maskInput(mask, of: graph), step: "migration", take: { name, values, k in
      var s = result[name]!
      for r in 0..<(values.count / k) {
        let row = values[(r * k)..<(r * k + k)]
        for (j, v) in zip(0..<k, row) {
          s.lower[j] = min(s.lower[j], v)
          s.upper[j] = max(s.upper[j], v)
          s.absoluteSum[j] += Double(abs(v))
        }
        if s.sample.count < sampleRows * k {
          s.sample += row
        } else {
          let slot = rng.uniform(below: s.rows + 1)
          if slot < sampleRows { s.sample.replaceSubrange((slot * k)..<(slot * k + k), with: row) }
        }
        s.rows += 1
      }
      result[name] = s
    })
    return result
  }
}
