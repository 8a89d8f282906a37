import LowbitCore
import LowbitData

/// Range setting for every quantizer of a float graph (white paper sec. 3.1).
///
/// Weights are fitted directly from their values. Activations run the float graph over the
/// calibration batches once, feeding a `RangeObserver` per site; the logits' quantizer with the
/// cross-entropy method sees the float logits; BN-based ranges need no data at all.
public enum Calibration {
  /// Fits the weight quantizers (per tensor, per channel or per group).
  public static func weightQuantizers(
    _ graph: Graph, sites: [QuantizerSite], config: QuantConfig
  ) throws -> [String: TensorQuantizer] {
    var result: [String: TensorQuantizer] = [:]
    for site in sites where site.kind == .weight && result[site.name] == nil {
      guard let w = graph.initializers[site.name] else { continue }
      result[site.name] = weightQuantizer(w, outputAxis: site.channelAxis, inputAxis: site.inputAxis, config: config)
    }
    return result
  }

  /// One weight's quantizer: per group of `config.weightGroupSize` along `inputAxis`, else per
  /// channel along `outputAxis` when `config.perChannel`, else per tensor.
  static func weightQuantizer(_ w: Tensor, outputAxis: Int?, inputAxis: Int?, config: QuantConfig) -> TensorQuantizer {
    let granularity: Granularity
    if let size = config.weightGroupSize, let axis = inputAxis {
      granularity = .perGroup(axis: axis, size: size)
    } else if config.perChannel, let axis = outputAxis {
      granularity = .perChannel(axis: axis)
    } else {
      granularity = .perTensor
    }
    let parts = TensorQuantizer.partition(w.floats, shape: w.shape, granularity)
    // Channels (or groups) are searched in parallel; each part's search is unchanged.
    let searchCost = (parts.first?.count ?? 1) * (config.weightRange == .mse ? ClippingSearch.steps : 1)
    let params = parallelIndexedMap(parts.count, costPerItem: searchCost) { k in weightParams(parts[k], config: config) }
    return TensorQuantizer(grid: config.weightGrid, symmetric: config.weightSymmetric, granularity: granularity, params: params)
  }

  /// The grid of one weight tensor, channel or group holding `values`: the range `config`'s
  /// weight method finds (`RangeSearch.weightRange`), as a scale and zero point on `weightGrid`.
  public static func weightParams(_ values: [Float], config: QuantConfig) -> QuantParams {
    let grid = config.weightGrid
    let range = RangeSearch.weightRange(values, method: config.weightRange, grid: grid, symmetric: config.weightSymmetric)
    return UniformQuantizer.params(lower: range.lowerBound, upper: range.upperBound, grid: grid,
                                   symmetric: config.weightSymmetric, powerOfTwo: config.powerOfTwo)
  }

  /// Observes every activation site over `batches` (each a feed dictionary) and fits its
  /// quantizer. `progress` is called after each batch; `note` hears each departure from the
  /// configured methods (a graph output that is not classifier logits gets the activation method).
  public static func activationQuantizers(
    _ graph: Graph, sites: [QuantizerSite], config: QuantConfig,
    batchNormStatistics: [String: BatchNormStatistics] = [:],
    batches: FeedBatches, progress: ((Int) -> Void)? = nil, note: ((String) -> Void)? = nil
  ) throws -> [String: TensorQuantizer] {
    let activationSites = sites.filter { $0.kind == .activation }
    if activationSites.isEmpty { return [:] }
    let producer = graph.producers()
    let dataFree = activationSites.allSatisfy {
      method(for: $0, config) == .bnBased && batchNormSource($0.name, graph, producer, batchNormStatistics) != nil
    }
    guard !batches.isEmpty || dataFree else {
      throw LowbitError.invalidInput("calibration needs at least one batch of data (or the data-free bn-based range method)")
    }
    var observers: [String: RangeObserver] = [:]
    var channelObservers: [String: ChannelRangeObserver] = [:]
    for site in activationSites {
      if site.kind == .activation, let axis = site.channelAxis, observedPerChannel(method(for: site, config)) {
        channelObservers[site.name] = ChannelRangeObserver(name: site.name, axis: axis)
      } else {
        observers[site.name] = RangeObserver(name: site.name)
      }
    }
    // Model inputs whose values lie on a lattice (8-bit pixels) get the grid that holds it
    // (`ValueLattice`), per channel where the site is; asymmetric grids only, as the lattice's
    // origin is rarely a whole number of steps from zero.
    var lattices: [String: [ValueLattice]] = [:]
    if !config.activationSymmetric && !config.powerOfTwo {
      let inputs = Set(graph.inputs.map(\.name))
      for site in activationSites where inputs.contains(site.name) { lattices[site.name] = [] }
    }
    var logits: [String: [Tensor]] = [:], outputShapes: [String: [Int]] = [:]
    let interpreter = try Interpreter(graph, fuseActivations: false)
    let watched = Set(activationSites.map(\.name))
    let crossEntropySites = Set(activationSites.filter { method(for: $0, config) == .crossEntropy }.map(\.name))
    var integerValued = Set<String>()
    let mask = FeatureRows.maskInput(config.gptqOptions.maskInput, of: graph)
    for b in batches.indices {
      let feeds = try batches.batch(b)
      let kept = FeatureRows(feeds: feeds, mask: mask)
      func record(_ name: String, _ value: Tensor) throws {
        guard watched.contains(name) else { return }
        guard value.dtype.isFloatingPoint else {
          integerValued.insert(name)  // shape arithmetic the placement could not type: not an activation
          return
        }
        // Token positions the mask marks as padding are left out: the model's outputs ignore them.
        let t = kept.keptTensor(value)
        observers[name]?.observe(t.floats)
        try channelObservers[name]?.observe(t)
        if var l = lattices[name] {
          let parts = try channelObservers[name].map { try ChannelRangeObserver.channelValues(t, axis: $0.axis, name: name) } ?? [t.floats]
          if l.isEmpty { l = Array(repeating: ValueLattice(), count: parts.count) }
          if l.count == parts.count { for c in parts.indices { l[c].observe(parts[c]) } }
          lattices[name] = l
        }
        if crossEntropySites.contains(name) {
          outputShapes[name] = outputShapes[name] ?? t.shape
          if t.shape.count == 2 { logits[name, default: []].append(t) }  // the only shape kept (see below)
        }
      }
      for (name, t) in feeds { try record(name, t) }
      var failure: Error?
      _ = try interpreter.run(feeds, observe: { node, results in
        do {
          for (name, t) in zip(node.outputs, results) { try record(name, t) }
        } catch {
          failure = failure ?? error
        }
      })
      if let failure { throw failure }
      progress?(b + 1)
    }
    var result: [String: TensorQuantizer] = [:]
    var ranges: [String: ClosedRange<Float>] = [:]
    let grid = config.activationGrid
    for site in activationSites where !integerValued.contains(site.name) {
      let m = method(for: site, config)
      if let channels = channelObservers[site.name], channels.channels.count < 2 {
        observers[site.name] = channels.channels.first ?? RangeObserver(name: site.name)  // one channel: one grid
      } else if let channels = channelObservers[site.name] {
        var fitted = try channels.ranges(method: m, grid: grid, symmetric: config.activationSymmetric, percentile: config.percentile)
        if let l = lattices[site.name], l.count == fitted.count {
          for c in fitted.indices { fitted[c] = l[c].range(grid: grid) ?? fitted[c] }
        }
        let params = fitted.map {
          UniformQuantizer.params(lower: $0.lowerBound, upper: $0.upperBound, grid: grid,
                                  symmetric: config.activationSymmetric, powerOfTwo: config.powerOfTwo)
        }
        result[site.name] = TensorQuantizer(
          grid: grid, symmetric: config.activationSymmetric, granularity: .perChannel(axis: channels.axis), params: params)
        continue
      }
      let range: ClosedRange<Float>
      let lattice = lattices[site.name].flatMap { $0.count == 1 ? $0[0].range(grid: grid) : nil }
      switch m {
      case _ where lattice != nil:
        try observers[site.name]!.checkFinite()
        range = lattice!
      case .crossEntropy:
        guard let l = logits[site.name], OutputLoss.isLogits(l) else {
          let instead = observedPerChannel(config.activationRange) ? config.activationRange : .mse
          let shape = outputShapes[site.name].map { "[" + $0.map(String.init).joined(separator: ", ") + "]" } ?? "unobserved"
          note?("'\(site.name)' \(shape) is not [N, C] classifier logits: \(instead.rawValue) range instead of cross-entropy")
          range = try observers[site.name]!.range(method: instead, grid: grid, symmetric: config.activationSymmetric, percentile: config.percentile)
          break
        }
        try observers[site.name]!.checkFinite()
        range = RangeSearch.crossEntropyRange(
          logits: l.flatMap(\.floats), classes: l[0].shape[1], grid: grid, symmetric: config.activationSymmetric)
      case .bnBased:
        if let (stats, relu) = batchNormSource(site.name, graph, producer, batchNormStatistics) {
          range = RangeSearch.batchNormRange(stats, followedByReLU: relu)
        } else if !batches.isEmpty {
          // No BatchNorm in front (model inputs, residual adds, pooling): fall back to MSE on data.
          range = try observers[site.name]!.range(method: .mse, grid: grid, symmetric: config.activationSymmetric, percentile: config.percentile)
        } else {
          throw LowbitError.invalidArgument("the bn-based range has no BatchNorm before '\(site.name)' and there is no calibration data to fall back on")
        }
      default:
        range = try observers[site.name]!.range(method: m, grid: grid, symmetric: config.activationSymmetric, percentile: config.percentile)
      }
      let p = UniformQuantizer.params(lower: range.lowerBound, upper: range.upperBound, grid: grid,
                                      symmetric: config.activationSymmetric, powerOfTwo: config.powerOfTwo)
      result[site.name] = TensorQuantizer(grid: grid, symmetric: config.activationSymmetric, granularity: .perTensor, params: [p])
      ranges[site.name] = range
    }
    shareTiedGrids(graph, config: config, ranges: ranges, into: &result)
    return result
  }

  /// Tied quantizers: each group of `tiedGroups` with two or more per-tensor quantizers takes one
  /// grid covering the union of their ranges.
  static func shareTiedGrids(
    _ graph: Graph, config: QuantConfig, ranges: [String: ClosedRange<Float>],
    into result: inout [String: TensorQuantizer]
  ) {
    let grid = config.activationGrid
    for group in tiedGroups(graph, quantized: Set(ranges.keys), config: config) {
      let members = group.filter { ranges[$0] != nil && result[$0]?.granularity == .perTensor }
      guard members.count > 1 else { continue }
      let lower = members.map { ranges[$0]!.lowerBound }.min()!, upper = members.map { ranges[$0]!.upperBound }.max()!
      let p = UniformQuantizer.params(lower: lower, upper: upper, grid: grid,
                                      symmetric: config.activationSymmetric, powerOfTwo: config.powerOfTwo)
      for v in members { result[v]?.params = [p] }
    }
  }

  /// Values that must be on one grid, as groups (sorted): under `--concat shared-grid` each
  /// Concat's output with its inputs' sources, and under `averagePoolKeepsGrid` each
  /// AveragePool's output with its input's source (sources found by walking back through data
  /// movement to a quantized value or a shared-grid Concat's output); groups that share a value
  /// are merged, so a pooled Concat output and the Concat's inputs are one group, as aimet-onnx
  /// ties them. A shared-grid Concat's output has no quantizer of its own (its inputs' grid
  /// passes through); every other member is in `quantized` where it has one.
  public static func tiedGroups(_ graph: Graph, quantized: Set<String>, config: QuantConfig) -> [[String]] {
    let producer = graph.producers()
    let sharedConcats = config.concat == .sharedGrid
      ? Set(graph.nodes.filter { $0.opType == "Concat" }.compactMap(\.outputs.first)) : []
    func source(_ input: String) -> String? {
      let v = QuantizerPlacement.sourceThroughDataMovement(input, graph, producer: producer) {
        quantized.contains($0) || sharedConcats.contains($0)
      }
      return quantized.contains(v) || sharedConcats.contains(v) ? v : nil
    }
    var parent: [String: String] = [:]
    func root(_ v: String) -> String {
      var r = v
      while let p = parent[r], p != r { r = p }
      return r
    }
    func tie(_ values: [String]) {
      guard let first = values.first else { return }
      for v in values {
        parent[v] = parent[v] ?? v
        parent[first] = parent[first] ?? first
        let (a, b) = (root(v), root(first))
        if a != b { parent[a] = b }
      }
    }
    for node in graph.nodes {
      guard let out = node.outputs.first, !out.isEmpty else { continue }
      if node.opType == "Concat", sharedConcats.contains(out) {
        tie([out] + node.inputs.compactMap(source))
      } else if node.opType == "AveragePool", config.averagePoolKeepsGrid, quantized.contains(out),
                let input = node.inputs.first.flatMap(source) {
        tie([out, input])
      }
    }
    let groups = Dictionary(grouping: parent.keys, by: root).values.map { $0.sorted() }
    return groups.filter { $0.count > 1 }.sorted { $0[0] < $1[0] }
  }

  /// `names` with every other quantized member of a tied group one of them is in
  /// (`tiedGroups`): a wider grid for one is a wider grid for all.
  public static func closedOverSharedGrids(
    _ names: Set<String>, _ graph: Graph, quantized: Set<String>, config: QuantConfig
  ) -> Set<String> {
    var closed = names
    for group in tiedGroups(graph, quantized: quantized, config: config) where !closed.isDisjoint(with: group) {
      closed.formUnion(group.filter(quantized.contains))
    }
    return closed
  }

  /// Whether a per-channel activation site is fitted per channel under `method`: the methods
  /// that read observed values do; cross-entropy (logits only) and BN-based ranges stay per tensor.
  static func observedPerChannel(_ method: RangeMethod) -> Bool {
    [.minMax, .runningMinMax, .percentile, .mse].contains(method)
  }

  /// The range method for a site: its override when it has one, else the logits method on graph
  /// outputs and the activation method elsewhere.
  static func method(for site: QuantizerSite, _ config: QuantConfig) -> RangeMethod {
    config.activationRangeOverrides[site.name] ?? (site.isOutput ? config.logitsRange : config.activationRange)
  }

  /// The folded BatchNorm statistics feeding `value` (through an activation), and whether that
  /// activation is a ReLU.
  static func batchNormSource(
    _ value: String, _ graph: Graph, _ producer: [String: Int], _ stats: [String: BatchNormStatistics]
  ) -> (BatchNormStatistics, Bool)? {
    guard let p = producer[value] else { return nil }
    let node = graph.nodes[p]
    if let s = stats[node.name] { return (s, false) }
    if ["Relu", "Clip"].contains(node.opType), let inner = producer[node.inputs[0]], let s = stats[graph.nodes[inner].name] {
      return (s, true)
    }
    return nil
  }
}
