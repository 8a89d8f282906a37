import LowbitCore

extension PostTrainingQuantization {
  /// Writes the QDQ graph of a float model and the quantizers an encodings file gives it (lowbit's
  /// own `--encodings` hand-over, or one aimet-onnx wrote): no calibration, the file's grids as
  /// they are. Quantizers go where `QuantizerPlacement` puts them for `config` and the file has
  /// an entry; an entry at another computed value or graph input gets an activation quantizer
  /// there; bias entries are left out (the file's biases are int32 at `s_w s_x`, derived from the
  /// weight and input grids), and so are entries at constants (aimet-onnx writes some on a Clip's
  /// bounds) and at values the model has but its prepared graph does not (folded or simplified
  /// away: a dead Identity's input), each counted in the step's detail; an entry naming nothing
  /// in the model is an error.
  public static func quantize(_ graph: Graph, encodings: AIMETEncodings, config: QuantConfig) throws -> QuantizationResult {
    try config.validate()
    var steps: [StepTiming] = []
    let start = monotonicSeconds()
    let (float, statistics) = try prepare(graph)
    let placed = QuantizerPlacement.sites(in: float, config: config)
    let entries = encodings.entries
    var sites: [QuantizerSite] = [], quantizers: [String: TensorQuantizer] = [:]
    for site in placed {
      guard let e = entries[site.name] else { continue }
      sites.append(site)
      quantizers[site.name] = try AIMETEncodings.quantizer(e, at: site)
    }
    let known = Set(placed.map(\.name))
    let producers = float.producers()
    let biases = Set(float.nodes.filter { ["Conv", "Gemm", "ConvTranspose"].contains($0.opType) && $0.inputs.count > 2 }.map { $0.inputs[2] })
    // Values of the model as read, so that an entry at one that preparation folded or simplified
    // away (a Constant's output, a dead Identity's input) is told from a name the model lacks.
    let original = Set(graph.nodes.flatMap { $0.inputs + $0.outputs } + graph.initializers.keys + graph.inputs.map(\.name))
    var leftOut: [String] = [], constants: [String] = [], gone: [String] = []
    for name in entries.keys.sorted() where !known.contains(name) {
      if biases.contains(name) {
        leftOut.append(name)
        continue
      }
      if float.initializers[name] != nil {
        constants.append(name)
        continue
      }
      let isInput = float.inputs.contains { $0.name == name }
      guard isInput || producers[name] != nil else {
        guard original.contains(name) else {
          throw LowbitError.invalidInput(
            "encoding for '\(name)': the graph has no such computed value, input, or weight lowbit quantizes")
        }
        gone.append(name)
        continue
      }
      let site = QuantizerSite(
        name: name, kind: .activation, producer: producers[name].map { float.nodes[$0].name }, consumer: nil,
        channelAxis: nil, inputAxis: nil, isOutput: float.outputs.contains { $0.name == name })
      sites.append(site)
      quantizers[name] = try AIMETEncodings.quantizer(entries[name]!, at: site)
    }
    let missing = placed.count - placed.filter { entries[$0.name] != nil }.count
    steps.append(StepTiming(
      step: "load encodings", seconds: monotonicSeconds() - start,
      detail: "AIMET \(encodings.version.rawValue): \(quantizers.count) quantizers"
        + (missing > 0 ? ", \(missing) places without an entry left float" : "")
        + (leftOut.isEmpty ? "" : ", \(leftOut.count) bias entries left out (int32 at s_w s_x)")
        + (constants.isEmpty ? "" : ", \(constants.count) entries at constants left out (\(constants.prefix(3).joined(separator: ", ")))")
        + (gone.isEmpty ? "" : ", \(gone.count) entries at values that BatchNorm folding or simplification removed left out (\(gone.prefix(3).joined(separator: ", ")))")))
    let opset = encodingsOpset(quantizers: quantizers, sites: sites, config: config, modelOpset: float.opset)
    let writeStart = monotonicSeconds()
    let qdq = try QDQBuilder.build(float, sites: sites, quantizers: quantizers, opset: opset, integerBiases: config.integerBiases)
    steps.append(StepTiming(step: "write QDQ graph", seconds: monotonicSeconds() - writeStart, detail: "opset \(opset)"))
    return QuantizationResult(
      floatGraph: float, equalizedGraph: float, transformedGraph: float, graph: qdq, sites: sites, quantizers: quantizers,
      batchNormStatistics: statistics, integerBiases: config.integerBiases, steps: steps)
  }

  /// The written opset for quantizers read from a file: 21 when a weight has 4 bits or fewer, a
  /// grid more than 8, or a weight per group (as `QuantConfig.outputOpset` decides for its own).
  static func encodingsOpset(quantizers: [String: TensorQuantizer], sites: [QuantizerSite], config: QuantConfig, modelOpset: Int) -> Int {
    if let o = config.opset { return o }
    let weights = Set(sites.filter { $0.kind == .weight }.map(\.name))
    let needs21 = quantizers.contains { name, q in
      let grouped: Bool
      if case .perGroup = q.granularity { grouped = true } else { grouped = false }
      return q.grid.bits > 8 || (weights.contains(name) && (q.grid.bits <= 4 || grouped))
    }
    return max(modelOpset, needs21 ? 21 : 13)
  }
}

extension QuantizationResult {
  /// This result's quantizers as an AIMET encodings file for `transformedGraph` (the float model
  /// they apply to), with the values of tied groups that have no quantizer of their own.
  public func encodings(version: AIMETEncodings.Version, config: QuantConfig) throws -> AIMETEncodings {
    let activations = Set(sites.filter { $0.kind == .activation && quantizers[$0.name] != nil }.map(\.name))
    let tied = Calibration.tiedGroups(transformedGraph, quantized: activations, config: config)
    return try AIMETEncodings(sites: sites, quantizers: quantizers, version: version, tied: tied)
  }
}
