/// What a kernel sees of one node application: the node, its input tensors and the opset.
public struct KernelContext {
  public let node: Node
  /// Inputs in the node's order; `nil` for an omitted optional input.
  public let inputs: [Tensor?]
  /// The default-domain opset version of the graph.
  public let opset: Int

  /// An activation the interpreter fused into this Conv or Gemm: applied to the output in the
  /// kernel's last pass instead of by a separate node.
  public let fusedActivation: FusedActivation?

  public init(node: Node, inputs: [Tensor?], opset: Int, fusedActivation: FusedActivation? = nil) {
    self.node = node
    self.inputs = inputs
    self.opset = opset
    self.fusedActivation = fusedActivation
  }

  /// An error located at this node.
  public func error(_ message: String, _ kind: LowbitError.Kind = .invalidModel) -> LowbitError {
    node.error(kind, message)
  }

  /// Input `i`, which must be present.
  public func input(_ i: Int) throws -> Tensor {
    guard i < inputs.count, let t = inputs[i] else {
      throw error("input \(i) is required but missing")
    }
    return t
  }

  /// Input `i`, or nil when omitted.
  public func optionalInput(_ i: Int) -> Tensor? {
    i < inputs.count ? inputs[i] : nil
  }

  /// Input `i`, which must be present and of a floating-point type.
  public func floatInput(_ i: Int) throws -> Tensor {
    let t = try input(i)
    guard t.dtype.isFloatingPoint else {
      throw error("input \(i) has type \(t.dtype), expected a floating-point type", .unsupported)
    }
    return t
  }

  /// Integer attribute `name`, or `defaultValue` when absent.
  public func int(_ name: String, default defaultValue: Int) throws -> Int {
    switch node.attributes[name] {
    case nil: return defaultValue
    case .int(let v)?: return v
    default: throw error("attribute '\(name)' must be an int")
    }
  }

  /// Float attribute `name`, or `defaultValue` when absent.
  public func float(_ name: String, default defaultValue: Float) throws -> Float {
    switch node.attributes[name] {
    case nil: return defaultValue
    case .float(let v)?: return v
    case .int(let v)?: return Float(v)
    default: throw error("attribute '\(name)' must be a float")
    }
  }

  /// Integer-list attribute `name`, or nil when absent.
  public func ints(_ name: String) throws -> [Int]? {
    switch node.attributes[name] {
    case nil: return nil
    case .ints(let v)?: return v
    case .int(let v)?: return [v]
    default: throw error("attribute '\(name)' must be a list of ints")
    }
  }

  /// String attribute `name`, or `defaultValue` when absent.
  public func string(_ name: String, default defaultValue: String) throws -> String {
    switch node.attributes[name] {
    case nil: return defaultValue
    case .string(let v)?: return v
    default: throw error("attribute '\(name)' must be a string")
    }
  }

  /// Normalizes an axis in `-rank..<rank` to `0..<rank`, or throws naming the attribute.
  public func axis(_ axis: Int, rank: Int, what: String = "axis") throws -> Int {
    guard axis >= -rank && axis < rank else {
      throw error("\(what) \(axis) is out of range for rank \(rank)")
    }
    return axis < 0 ? axis + rank : axis
  }
}

/// A clamp that a Conv or Gemm applies to its own output: Relu is `clamp(x, 0, +inf)`, Clip
/// `clamp(x, min, max)`. NaN passes through as it does through the separate ops.
public struct FusedActivation: Sendable, Equatable {
  public var lower: Float
  public var upper: Float

  public init(lower: Float, upper: Float) {
    self.lower = lower
    self.upper = upper
  }

  /// Clamps `count` values in place.
  @inlinable
  public func apply(_ p: UnsafeMutablePointer<Float>, count: Int) {
    let lo = lower, hi = upper
    for i in 0..<count {
      let v = p[i]
      p[i] = v < lo ? lo : (v > hi ? hi : v)
    }
  }
}

/// A forward kernel: reads the context, returns the node's outputs in order.
///
/// Kernels validate every shape and attribute before touching memory: a bad model ends in a
/// `LowbitError` naming the node, never in a trap.
public typealias Kernel = @Sendable (KernelContext) throws -> [Tensor]

/// The closed set of operators lowbit executes, by ONNX op type (default domain).
public enum Ops {
  /// Every kernel, by op type.
  public static let kernels: [String: Kernel] = {
    var table: [String: Kernel] = [:]
    for group in [
      convolutionKernels, convolutionTransposeKernels, linearKernels, poolingKernels, normalizationKernels,
      elementwiseKernels, shapeKernels, reductionKernels, miscKernels, quantizationKernels, resizeKernels, rearrangeKernels, recurrentKernels,
    ] {
      table.merge(group) { first, _ in first }
    }
    return table
  }()

  /// The op types lowbit can run.
  public static var supportedOpTypes: [String] { kernels.keys.sorted() }
}
