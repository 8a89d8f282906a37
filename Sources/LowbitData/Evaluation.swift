import Foundation
import LowbitCore

/// The outcome of running a model over a data set.
public struct Evaluation: Sendable {
  /// Every graph output, batches concatenated along dim 0, by output name.
  public var outputs: [String: Tensor]
  /// Top-1 accuracy in percent, when the data set has labels and the first output is [N, classes].
  public var top1: Double?
  public var samples: Int
  /// Seconds spent inside the interpreter (data loading and model loading excluded).
  public var seconds: Double
}

extension Dataset {
  /// Feeds for one batch: unnamed data goes to the graph's first input, named data by name.
  /// Throws when a graph input has no data, a name matches no input, or dtypes disagree.
  public func feeds(for graph: Graph, batch range: Range<Int>) throws -> [String: Tensor] {
    let slice = try batch(range)
    var feeds: [String: Tensor] = [:]
    let names = graph.inputs.map(\.name)
    for (name, tensor) in slice.inputs {
      let target: String
      if let name = name {
        guard names.contains(name) else {
          throw LowbitError.invalidInput("the data names input '\(name)', the model's inputs are \(names)")
        }
        target = name
      } else {
        guard let first = names.first else { throw LowbitError.invalidInput("the model has no inputs") }
        guard names.count == 1 || slice.inputs.count == 1 else {
          throw LowbitError.invalidInput("the model has inputs \(names): name each one, e.g. npy:\(first)=a.npy,...")
        }
        target = first
      }
      feeds[target] = tensor
    }
    for name in names where feeds[name] == nil {
      throw LowbitError.invalidInput("no data for model input '\(name)' (the model's inputs are \(names))")
    }
    return feeds
  }

  /// Runs `interpreter` over the data set in batches of `batchSize`, calling `progress` with the
  /// number of samples done after each batch.
  public func evaluate(
    _ interpreter: Interpreter, batchSize: Int, profile: OpProfile? = nil,
    progress: ((Int) -> Void)? = nil
  ) throws -> Evaluation {
    precondition(batchSize > 0, "batchSize must be positive")
    var collected: [String: [Tensor]] = [:]
    var seconds = 0.0
    for range in batches(size: batchSize) {
      let feeds = try feeds(for: interpreter.graph, batch: range)
      let start = Date()
      let result = try interpreter.run(feeds, profile: profile)
      seconds += Date().timeIntervalSince(start)
      for (name, tensor) in result { collected[name, default: []].append(tensor) }
      progress?(range.upperBound)
    }
    var outputs: [String: Tensor] = [:]
    for (name, parts) in collected { outputs[name] = try concatenateBatches(parts, name: name) }
    var top1: Double?
    if let labels = labels, let first = interpreter.graph.outputs.first.flatMap({ outputs[$0.name] }) {
      top1 = try topOneAccuracy(logits: first, labels: labels)
    }
    return Evaluation(outputs: outputs, top1: top1, samples: count, seconds: seconds)
  }
}

/// Concatenates per-batch outputs along dim 0 (all parts must agree on the other dims).
public func concatenateBatches(_ parts: [Tensor], name: String) throws -> Tensor {
  guard let first = parts.first else { throw LowbitError.invalidInput("output '\(name)' is empty") }
  if parts.count == 1 { return first }
  guard first.rank >= 1, parts.allSatisfy({ $0.rank == first.rank && $0.shape.dropFirst() == first.shape.dropFirst() && $0.dtype == first.dtype }) else {
    throw LowbitError.invalidInput("output '\(name)' has no batch dimension to concatenate along")
  }
  let shape = [parts.reduce(0) { $0 + $1.shape[0] }] + first.shape.dropFirst()
  switch first.storage {
  case .float: return Tensor(dtype: first.dtype, shape: shape, storage: .float(parts.flatMap(\.floats)))
  case .int: return Tensor(dtype: first.dtype, shape: shape, storage: .int(parts.flatMap(\.ints)))
  case .bool: return Tensor(dtype: first.dtype, shape: shape, storage: .bool(parts.flatMap(\.bools)))
  }
}

/// Percentage of rows whose arg-max equals the label. Logits [N, C], labels [N].
public func topOneAccuracy(logits: Tensor, labels: Tensor) throws -> Double {
  guard logits.rank == 2, logits.dtype.isFloatingPoint else {
    throw LowbitError.invalidInput("top-1 needs logits of shape [N, classes], the model gives \(logits.shape)")
  }
  let n = logits.shape[0], c = logits.shape[1]
  guard labels.count == n else {
    throw LowbitError.invalidInput("\(labels.count) labels for \(n) outputs")
  }
  let values = logits.floats, truth = labels.asInts()
  var correct = 0
  for i in 0..<n where c > 0 {
    var best = 0
    for j in 1..<c where values[i * c + j] > values[i * c + best] { best = j }
    if Int64(best) == truth[i] { correct += 1 }
  }
  return n == 0 ? 0 : 100 * Double(correct) / Double(n)
}
