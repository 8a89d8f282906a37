/// One dimension of a value's shape: a number, or a symbol for a size known only at run time.
public enum Dim: Sendable, Equatable, Hashable, CustomStringConvertible {
  case fixed(Int)
  case symbol(String)

  public var value: Int? {
    if case .fixed(let v) = self { return v }
    return nil
  }

  public var description: String {
    switch self {
    case .fixed(let v): return String(v)
    case .symbol(let s): return s
    }
  }
}

/// Name, element type and (possibly partial) shape of a graph value.
public struct ValueInfo: Sendable, Equatable {
  public var name: String
  public var dtype: DType?
  /// `nil` when the rank is unknown.
  public var shape: [Dim]?

  public init(name: String, dtype: DType? = nil, shape: [Dim]? = nil) {
    self.name = name
    self.dtype = dtype
    self.shape = shape
  }
}

/// A node attribute, as ONNX defines them (graphs are not supported as attributes).
public enum Attribute: Sendable, Equatable {
  case int(Int)
  case float(Float)
  case string(String)
  case tensor(Tensor)
  case ints([Int])
  case floats([Float])
  case strings([String])
}

/// One operator application. An empty input name marks an omitted optional input.
public struct Node: Sendable, Equatable {
  public var name: String
  public var opType: String
  public var domain: String
  public var inputs: [String]
  public var outputs: [String]
  public var attributes: [String: Attribute]

  public init(
    name: String, opType: String, domain: String = "", inputs: [String], outputs: [String],
    attributes: [String: Attribute] = [:]
  ) {
    self.name = name
    self.opType = opType
    self.domain = domain
    self.inputs = inputs
    self.outputs = outputs
    self.attributes = attributes
  }

  /// An error located at this node.
  public func error(_ kind: LowbitError.Kind, _ message: String) -> LowbitError {
    LowbitError(kind, message, opType: opType, node: name)
  }
}

/// A computation graph: a value type, transformed by functions that return new graphs.
public struct Graph: Sendable, Equatable {
  public var name: String
  /// Nodes, in an order where each node follows the producers of its inputs.
  public var nodes: [Node]
  /// Runtime inputs (initializers are not listed here).
  public var inputs: [ValueInfo]
  public var outputs: [ValueInfo]
  /// Constant tensors by name: weights, biases, folded constants.
  public var initializers: [String: Tensor]
  /// Known types and shapes of intermediate values.
  public var valueInfo: [String: ValueInfo]
  /// Opset version per operator domain ("" is the default ONNX domain).
  public var opsets: [String: Int]
  /// Free-form facts about where the graph came from (producer, IR version, ...).
  public var metadata: [String: String]

  public init(
    name: String = "graph", nodes: [Node] = [], inputs: [ValueInfo] = [],
    outputs: [ValueInfo] = [], initializers: [String: Tensor] = [:],
    valueInfo: [String: ValueInfo] = [:], opsets: [String: Int] = ["": 17],
    metadata: [String: String] = [:]
  ) {
    self.name = name
    self.nodes = nodes
    self.inputs = inputs
    self.outputs = outputs
    self.initializers = initializers
    self.valueInfo = valueInfo
    self.opsets = opsets
    self.metadata = metadata
  }

  /// The default-domain opset version.
  public var opset: Int { opsets[""] ?? 1 }

  /// Number of scalar parameters held in float initializers.
  public var parameterCount: Int {
    initializers.values.reduce(0) { $0 + ($1.dtype.isFloatingPoint ? $1.count : 0) }
  }

  /// How many nodes of each op type the graph holds.
  public var opHistogram: [String: Int] {
    nodes.reduce(into: [:]) { $0[$1.opType, default: 0] += 1 }
  }

  /// For each value name, the indices of the nodes that read it.
  public func consumers() -> [String: [Int]] {
    var result: [String: [Int]] = [:]
    for (i, node) in nodes.enumerated() {
      for input in node.inputs where !input.isEmpty { result[input, default: []].append(i) }
    }
    return result
  }

  /// For each value name, the index of the node that writes it.
  public func producers() -> [String: Int] {
    var result: [String: Int] = [:]
    for (i, node) in nodes.enumerated() {
      for output in node.outputs where !output.isEmpty { result[output] = i }
    }
    return result
  }
}
