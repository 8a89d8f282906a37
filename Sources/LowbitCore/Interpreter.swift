/// Executes a graph on the CPU, node by node, with the kernels of `Ops`.
///
/// Construction validates the graph once (topological order, defined names, supported ops);
/// `run` checks the feeds against the declared inputs and frees each value after its last use.
public struct Interpreter: Sendable {
  public let graph: Graph
  /// Index of the last node reading each value (graph outputs are never freed).
  private let lastUse: [String: Int]

  public init(_ graph: Graph) throws {
    let ordered = try graph.validated()
    for node in ordered.nodes {
      guard node.domain.isEmpty || node.domain == "ai.onnx" else {
        throw node.error(.unsupported, "operator domain '\(node.domain)' is not supported")
      }
      guard Ops.kernels[node.opType] != nil else {
        throw node.error(.unsupported, "operator \(node.opType) is not supported (supported: \(Ops.supportedOpTypes.count) ops, see `lowbit ops`)")
      }
    }
    var last: [String: Int] = [:]
    for (i, node) in ordered.nodes.enumerated() {
      for input in node.inputs where !input.isEmpty { last[input] = i }
    }
    for output in ordered.outputs { last[output.name] = Int.max }
    self.graph = ordered
    self.lastUse = last
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
    for (i, node) in graph.nodes.enumerated() {
      var args: [Tensor?] = []
      args.reserveCapacity(node.inputs.count)
      for name in node.inputs {
        if name.isEmpty {
          args.append(nil)
        } else if let t = env[name] {
          args.append(t)
        } else {
          throw node.error(.invalidModel, "input '\(name)' has no value")
        }
      }
      let results: [Tensor]
      let started = profile == nil ? 0 : monotonicSeconds()
      defer { profile?.add(node.opType, seconds: monotonicSeconds() - started) }
      do {
        results = try Ops.kernels[node.opType]!(
          KernelContext(node: node, inputs: args, opset: graph.opset))
      } catch let error as LowbitError {
        throw error.at(opType: node.opType, node: node.name)
      }
      let wanted = node.outputs.filter { !$0.isEmpty }.count
      guard results.count >= wanted else {
        throw node.error(.unsupported, "produced \(results.count) outputs, the graph reads \(wanted)")
      }
      observe?(node, results)
      for (name, value) in zip(node.outputs, results) where !name.isEmpty {
        env[name] = value
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
public final class OpProfile: @unchecked Sendable {
  public private(set) var seconds: [String: Double] = [:]
  public private(set) var calls: [String: Int] = [:]

  public init() {}

  func add(_ opType: String, seconds s: Double) {
    seconds[opType, default: 0] += s
    calls[opType, default: 0] += 1
  }
}

#if canImport(Glibc)
  import Glibc
#endif

/// A monotonic clock in seconds.
public func monotonicSeconds() -> Double {
  var ts = timespec()
  clock_gettime(CLOCK_MONOTONIC, &ts)
  return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}
