import LowbitCore

/// A graph under training: runs forward passes that record a `GradientTape` and backward passes
/// that return `d(loss)/d(parameter)` for every trainable parameter (reverse-mode automatic
/// differentiation over the node list, one `GradientRule` per op).
///
/// Trainable parameters are the float initializers that some node reads at a differentiable input
/// slot; BatchNormalization running statistics are buffers, moved by training-mode passes.
/// Forward values come from the inference kernels (`Ops.kernels`), except for BatchNormalization
/// in training mode (`BatchNormTraining`) and Dropout, which training runs as identity, and the
/// training-only ops of domain `lowbit.train` (`TrainingOps`: FakeQuantize).
public struct Trainer: Sendable {
  /// The graph, nodes in topological order; its initializers hold the current parameters.
  public internal(set) var graph: Graph
  /// Trainable parameter names, sorted.
  public let parameterNames: [String]
  /// BatchNormalization running-statistics initializers, sorted.
  public let bufferNames: [String]
  /// Running variance from the unbiased batch variance (PyTorch) rather than the biased one.
  public var unbiasedRunningVariance = true

  /// Validates `graph` (topological order, defined names, a forward kernel for every op).
  public init(_ graph: Graph) throws {
    let ordered = try graph.validated()
    var parameters = Set<String>(), buffers = Set<String>()
    for node in ordered.nodes {
      guard TrainingOps.kernel(for: node) != nil else {
        throw node.error(.unsupported, "operator \(node.domain.isEmpty ? "" : node.domain + ".")\(node.opType) is not supported")
      }
      let rule = GradientRules.all[node.opType]
      for (slot, name) in node.inputs.enumerated() {
        guard let t = ordered.initializers[name], t.dtype.isFloatingPoint else { continue }
        if node.opType == "BatchNormalization" && slot >= 3 {
          buffers.insert(name)
        } else if let rule = rule, rule.differentiates(slot) {
          parameters.insert(name)
        }
      }
    }
    if let both = parameters.intersection(buffers).sorted().first {
      throw LowbitError.unsupported("initializer '\(both)' is both a parameter and BatchNormalization statistics")
    }
    self.graph = ordered
    self.parameterNames = parameters.sorted()
    self.bufferNames = buffers.sorted()
  }

  /// The trainable parameters by name. Setting replaces initializers; shapes must not change.
  public var parameters: [String: Tensor] {
    get { Dictionary(uniqueKeysWithValues: parameterNames.map { ($0, graph.initializers[$0]!) }) }
    set {
      for name in parameterNames {
        guard let t = newValue[name] else { continue }
        precondition(t.shape == graph.initializers[name]!.shape, "parameter '\(name)' changed shape")
        graph.initializers[name] = t
      }
    }
  }

  /// Replaces the running statistics with those a training-mode pass computed.
  public mutating func updateStatistics(from tape: GradientTape) {
    updateStatistics(tape.runningStatistics)
  }

  /// Replaces running statistics by name (e.g. ones averaged over ranks); shapes must not change.
  public mutating func updateStatistics(_ statistics: [String: Tensor]) {
    for (name, value) in statistics {
      precondition(graph.initializers[name].map { $0.shape == value.shape } ?? true, "statistics '\(name)' changed shape")
      graph.initializers[name] = value
    }
  }

  /// Runs the graph on `feeds` and records every value.
  public func forward(_ feeds: [String: Tensor], mode: ExecutionMode = .training) throws -> GradientTape {
    var env = graph.initializers
    for input in graph.inputs {
      guard let t = feeds[input.name] else { throw LowbitError.invalidInput("input '\(input.name)' was not given") }
      env[input.name] = t
    }
    var tape = GradientTape(mode: mode, values: [:], saved: [:], runningStatistics: [:])
    for (index, node) in graph.nodes.enumerated() {
      let args: [Tensor?] = try node.inputs.map { name in
        if name.isEmpty { return nil }
        guard let t = env[name] else { throw node.error(.invalidModel, "input '\(name)' has no value") }
        return t
      }
      let ctx = KernelContext(node: node, inputs: args, opset: graph.opset)
      let results: [Tensor]
      do {
        switch node.opType {
        case "BatchNormalization":
          results = try batchNorm(ctx, mode: mode, index: index, tape: &tape)
        case "Dropout":
          let x = try ctx.input(0)
          results = [x, Tensor(shape: x.shape, bools: [Bool](repeating: true, count: x.count))]
        default:
          results = try TrainingOps.kernel(for: node)!(ctx)
        }
      } catch let error as LowbitError {
        throw error.at(opType: node.opType, node: node.name)
      }
      for (name, value) in zip(node.outputs, results) where !name.isEmpty { env[name] = value }
    }
    tape.values = env
    return tape
  }

  /// BatchNormalization's forward pass: batch statistics in training mode, running ones in
  /// inference mode; keeps the statistics it used for the gradient rule.
  private func batchNorm(_ ctx: KernelContext, mode: ExecutionMode, index: Int, tape: inout GradientTape) throws -> [Tensor] {
    let x = try ctx.floatInput(0)
    let params = try (1...4).map { try ctx.floatInput($0) }
    guard x.rank >= 2, params.allSatisfy({ $0.count == x.shape[1] }) else {
      throw ctx.error("scale, B, mean and var must have \(x.rank >= 2 ? x.shape[1] : 0) values for input \(x.shape)")
    }
    let epsilon = try ctx.float("epsilon", default: 1e-5)
    guard mode == .training else {
      var node = ctx.node
      node.attributes["training_mode"] = nil
      let y = try Ops.kernels["BatchNormalization"]!(KernelContext(node: node, inputs: ctx.inputs, opset: ctx.opset))[0]
      let inverse = params[3].floats.map { 1 / ($0 + epsilon).squareRoot() }
      tape.saved[index] = .batchNorm(mean: params[2].floats, inverseStd: inverse, training: false)
      return [y, params[2], params[3]]
    }
    let f = BatchNormTraining.forward(
      x: x, scale: params[0], bias: params[1], runningMean: params[2], runningVariance: params[3],
      epsilon: epsilon, momentum: try ctx.float("momentum", default: 0.9),
      unbiasedRunningVariance: unbiasedRunningVariance)
    tape.saved[index] = .batchNorm(mean: f.mean, inverseStd: f.inverseStd, training: true)
    for (slot, value) in [(3, f.runningMean), (4, f.runningVariance)] where graph.initializers[ctx.node.inputs[slot]] != nil {
      tape.runningStatistics[ctx.node.inputs[slot]] = value
    }
    return [f.output, f.runningMean, f.runningVariance]
  }
}
