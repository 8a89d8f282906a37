import Synchronization

/// Executes a graph on the CPU, node by node, with the kernels of `Ops`.
///
/// Construction validates the graph once (topological order, defined names, supported ops);
/// `run` checks the feeds against the declared inputs and frees each value after its last use.
public struct Interpreter: Sendable {
  public let graph: Graph
  /// Index of the last node reading each value (graph outputs are never freed).
  private let lastUse: [String: Int]
  /// For a Conv/Gemm index, the Relu/Clip node folded into it; those nodes are skipped.
  private let fused: [Int: (activation: FusedActivation?, node: Int)]
  /// Layers between dequantized inputs and weights, run in the integer domain.
  private let integerLayers: [Int: IntegerLayer]
  /// With `integerArithmetic`: for an integer layer's index, the QuantizeLinear after it (and its
  /// fused Relu/Clip) computed from the int32 accumulators, and that node's index (skipped).
  private let requantized: [Int: (requantization: Requantization, node: Int)]

  /// Validates `graph`. With `fuseActivations`, a Relu or constant-bound Clip that is the only
  /// reader of a Conv or Gemm output runs inside that kernel (the intermediate value is then
  /// never materialized, so `observe` does not see it). With `integerArithmetic`, a layer between
  /// dequantized integers whose (activated) output only a per-tensor QuantizeLinear reads runs as
  /// an integer accelerator does (`Requantization`: int32 accumulators, fixed-point multiplier
  /// per channel, the activation as a clamp); everything else runs as without it.
  public init(_ graph: Graph, fuseActivations: Bool = true, integerArithmetic: Bool = false) throws {
    let ordered = try graph.validated()
    for node in ordered.nodes {
      guard Ops.kernelsByDomain[node.domain] != nil else {
        throw node.error(.unsupported, "operator domain '\(node.domain)' is not supported")
      }
    }
    // Every unsupported op at once, located at the first: a user rewriting the model learns
    // the whole list from one run.
    let unsupported = ordered.nodes.filter { Ops.kernel(for: $0) == nil }
    if let first = unsupported.first {
      var others: [(op: String, names: [String])] = []
      for node in unsupported.dropFirst() {
        if let i = others.firstIndex(where: { $0.op == node.opType }) { others[i].names.append(node.name) } else { others.append((node.opType, [node.name])) }
      }
      let also = others.map { o in "\(o.op) (" + o.names.map { "'\($0)'" }.listed() + ")" }
      throw first.error(.unsupported, "operator \(first.opType) is not supported" + (also.isEmpty ? "" : "; also unsupported: " + also.joined(separator: ", "))
        + " (supported: \(Ops.supportedOpTypes.count) ops, see `lowbit ops`)")
    }
    var last: [String: Int] = [:]
    for (i, node) in ordered.nodes.enumerated() {
      for input in node.inputs where !input.isEmpty { last[input] = i }
    }
    for output in ordered.outputs { last[output.name] = Int.max }
    self.graph = ordered
    self.lastUse = last
    var fused = fuseActivations ? Interpreter.fusions(in: ordered) : [:]
    let producers = ordered.producers()
    var integer: [Int: IntegerLayer] = [:]
    for (i, node) in ordered.nodes.enumerated() {
      if let layer = IntegerLayer.detect(node, in: ordered, producers: producers) { integer[i] = layer }
    }
    var requantized: [Int: (requantization: Requantization, node: Int)] = [:]
    if integerArithmetic && fuseActivations {
      let readers = ordered.consumers(), outputs = Set(ordered.outputs.map(\.name))
      for (i, layer) in integer {
        let last = fused[i].map { ordered.nodes[$0.node] } ?? ordered.nodes[i]
        guard let value = last.outputs.first, !outputs.contains(value), let r = readers[value], r.count == 1 else { continue }
        let q = ordered.nodes[r[0]]
        guard q.opType == "QuantizeLinear", q.inputs.first == value, q.outputs.count == 1,
              let requantization = Requantization(layer: layer, activation: fused[i]?.activation, quantize: q, in: ordered)
        else { continue }
        requantized[i] = (requantization, r[0])
        fused[r[0]] = nil  // its DequantizeLinear now reads the integers
      }
    }
    self.fused = fused
    self.integerLayers = integer
    self.requantized = requantized
  }

  /// How many layers run with integer requantization (`integerArithmetic`).
  public var requantizedLayers: Int { requantized.count }

  /// Conv/Gemm nodes whose single reader is a Relu or a Clip with constant bounds.
  private static func fusions(in graph: Graph) -> [Int: (activation: FusedActivation?, node: Int)] {
    var result: [Int: (activation: FusedActivation?, node: Int)] = [:]
    let readers = graph.consumers()
    let outputs = Set(graph.outputs.map(\.name))
    // QuantizeLinear -> DequantizeLinear with the same parameters: one fake-quantization pass.
    for (i, node) in graph.nodes.enumerated() where node.opType == "QuantizeLinear" {
      guard node.outputs.count == 1, !outputs.contains(node.outputs[0]),
            let r = readers[node.outputs[0]], r.count == 1 else { continue }
      let next = graph.nodes[r[0]]
      if next.opType == "DequantizeLinear", next.inputs.first == node.outputs[0],
         Array(next.inputs.dropFirst()) == Array(node.inputs.dropFirst()), next.attributes == node.attributes {
        result[i] = (nil, r[0])
      }
    }
    for (i, node) in graph.nodes.enumerated() where node.opType == "Conv" || node.opType == "Gemm" {
      guard node.outputs.count == 1, !outputs.contains(node.outputs[0]),
            let r = readers[node.outputs[0]], r.count == 1 else { continue }
      let next = graph.nodes[r[0]]
      guard next.inputs.first == node.outputs[0] else { continue }
      if next.opType == "Relu" {
        result[i] = (FusedActivation(lower: 0, upper: .infinity), r[0])
      } else if next.opType == "Clip" {
        var lower = -Float.infinity, upper = Float.infinity
        if graph.opset < 11 {
          if case .float(let v)? = next.attributes["min"] { lower = v }
          if case .float(let v)? = next.attributes["max"] { upper = v }
        } else {
          func bound(_ k: Int) -> Float?? {
            guard k < next.inputs.count, !next.inputs[k].isEmpty else { return .some(nil) }
            guard let t = graph.initializers[next.inputs[k]], t.dtype.isFloatingPoint, t.count == 1
            else { return nil }
            return .some(t.floats[0])
          }
          guard let lo = bound(1), let hi = bound(2) else { continue }
          lower = lo ?? lower
          upper = hi ?? upper
        }
        result[i] = (FusedActivation(lower: lower, upper: upper), r[0])
      }
    }
    return result
  }

  /// Checks that a feed matches the declared element type and every fixed dimension.
  public func checkFeed(_ tensor: Tensor, for input: ValueInfo) throws {
    if let dtype = input.dtype, dtype != tensor.dtype {
      throw LowbitError.invalidInput(
        "input '\(input.name)' has type \(tensor.dtype), the model expects \(dtype)")
    }
    guard let dims = input.shape else { return }
    let expected = "[" + dims.map(\.description).joined(separator: ", ") + "]"
    guard dims.count == tensor.rank else {
      throw LowbitError.invalidInput(
        "input '\(input.name)' has shape \(tensor.shape), the model expects \(expected)")
    }
    for (d, actual) in zip(dims, tensor.shape) {
      if let v = d.value, v != actual {
        throw LowbitError.invalidInput(
          "input '\(input.name)' has shape \(tensor.shape), the model expects \(expected)")
      }
    }
  }

  /// Runs the graph. `observe` sees every value a node produces, in execution order
  /// (used by calibration and debugging). Returns the graph outputs by name.
  public func run(
    _ feeds: [String: Tensor], observe: ((Node, [Tensor]) -> Void)? = nil,
    profile: OpProfile? = nil
  ) throws -> [String: Tensor] {
    var env = graph.initializers
    for input in graph.inputs {
      guard let t = feeds[input.name] else {
        throw LowbitError.invalidInput("input '\(input.name)' was not given")
      }
      try checkFeed(t, for: input)
      env[input.name] = t
    }
    let skipped = Set(fused.values.map(\.node)).union(requantized.values.map(\.node))
    for (i, node) in graph.nodes.enumerated() where !skipped.contains(i) {
      let fusion = fused[i]
      var args: [Tensor?] = []
      args.reserveCapacity(node.inputs.count)
      for name in node.inputs {
        if name.isEmpty {
          args.append(nil)
        } else if let t = env[name] {
          args.append(t.unpacked())  // kernels read the compute form once per use
        } else {
          throw node.error(.invalidModel, "input '\(name)' has no value")
        }
      }
      let results: [Tensor]
      let started = profile == nil ? 0 : monotonicSeconds()
      defer { profile?.add(node.opType, seconds: monotonicSeconds() - started) }
      do {
        let context = KernelContext(
          node: node, inputs: args, opset: graph.opset, fusedActivation: fusion?.activation)
        if fusion != nil && node.opType == "QuantizeLinear" {
          results = try Ops.fakeQuantizeLinear(context)
        } else if let layer = integerLayers[i] {
          results = try layer.run(
            node, args, opset: graph.opset, activation: fusion?.activation, requantization: requantized[i]?.requantization)
        } else {
          results = try Ops.kernel(for: node)!(context)
        }
      } catch let error as LowbitError {
        throw error.at(opType: node.opType, node: node.name)
      }
      let wanted = node.outputs.filter { !$0.isEmpty }.count
      guard results.count >= wanted else {
        throw node.error(.unsupported, "produced \(results.count) outputs, the graph reads \(wanted)")
      }
      if let last = (requantized[i]?.node ?? fusion?.node).map({ graph.nodes[$0] }) {
        observe?(last, results)
        env[last.outputs[0]] = results[0]
      } else {
        observe?(node, results)
        for (name, value) in zip(node.outputs, results) where !name.isEmpty {
          env[name] = value
        }
      }
      for name in node.inputs where !name.isEmpty && lastUse[name] == i {
        env[name] = nil
      }
    }
    var outputs: [String: Tensor] = [:]
    for output in graph.outputs {
      guard let t = env[output.name] else {
        throw LowbitError.invalidModel("graph output '\(output.name)' was not computed")
      }
      outputs[output.name] = t
    }
    return outputs
  }
}

/// Seconds and calls per op type, gathered by `Interpreter.run(_:profile:)`.
public final class OpProfile: Sendable {
  private let state = Mutex<(seconds: [String: Double], calls: [String: Int])>(([:], [:]))

  public var seconds: [String: Double] { state.withLock { $0.seconds } }
  public var calls: [String: Int] { state.withLock { $0.calls } }

  public init() {}

  func add(_ opType: String, seconds s: Double) {
    state.withLock {
      $0.seconds[opType, default: 0] += s
      $0.calls[opType, default: 0] += 1
    }
  }
}

#if canImport(Glibc)
  import Glibc
#endif

/// The process's peak resident memory so far in bytes (`getrusage`'s high-water mark), or nil
/// where the system does not say.
public func peakResidentBytes() -> Int? {
  #if canImport(Glibc)
    var usage = rusage()
    guard getrusage(RUSAGE_SELF.rawValue, &usage) == 0 else { return nil }
    return Int(usage.ru_maxrss) * 1024  // Linux reports KiB
  #else
    return nil
  #endif
}

/// The processor time (user + system, all threads) the process has used, in seconds.
public func processorSeconds() -> Double? {
  #if canImport(Glibc)
    var usage = rusage()
    guard getrusage(RUSAGE_SELF.rawValue, &usage) == 0 else { return nil }
    func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) * 1e-6 }
    return seconds(usage.ru_utime) + seconds(usage.ru_stime)
  #else
    return nil
  #endif
}

/// A monotonic clock in seconds.
public func monotonicSeconds() -> Double {
  var ts = timespec()
  clock_gettime(CLOCK_MONOTONIC, &ts)
  return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}
