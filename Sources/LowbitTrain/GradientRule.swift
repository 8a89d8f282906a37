import LowbitCore

/// What a gradient rule sees of one recorded node application: the node, the values it read and
/// wrote in the forward pass, the gradients that reached its outputs and what it saved.
public struct BackwardContext {
  /// The node, its forward inputs (`nil` for an omitted optional input) and the opset, with
  /// the attribute readers of `KernelContext`.
  public let forward: KernelContext
  /// The values the node produced in the forward pass.
  public let outputs: [Tensor]
  /// `d(loss)/d(output i)`, `nil` where no gradient reached that output.
  public let outputGradients: [Tensor?]
  /// Whether input `i` wants a gradient (a rule may skip work for the others).
  public let needsGradient: [Bool]
  /// Per-node values the forward pass kept for the backward pass (BatchNormalization's
  /// batch statistics).
  public let saved: SavedForBackward?

  public var node: Node { forward.node }

  /// Input `i` of the forward pass, which must be present.
  public func input(_ i: Int) throws -> Tensor { try forward.input(i) }

  /// `d(loss)/d(output 0)`, or zeros shaped like output 0 when none arrived.
  public func outputGradient() -> Tensor {
    outputGradients.first.flatMap { $0 } ?? Tensor(shape: outputs[0].shape, repeating: 0)
  }

  /// Whether input `i` is present and wants a gradient.
  public func wants(_ i: Int) -> Bool { i < needsGradient.count && needsGradient[i] }

  /// An error located at this node.
  public func error(_ message: String, _ kind: LowbitError.Kind = .unsupported) -> LowbitError {
    forward.error(message, kind)
  }
}

/// Values a forward pass keeps for one node's gradient rule.
public enum SavedForBackward: Sendable {
  /// BatchNormalization: the per-channel mean and `1 / sqrt(var + epsilon)` the forward pass
  /// normalized with (batch statistics in training mode, running ones in evaluation mode).
  case batchNorm(mean: [Float], inverseStd: [Float], training: Bool)
}

/// A gradient rule: returns `d(loss)/d(input i)` for each input (`nil` where not wanted or not
/// differentiable), given `d(loss)/d(outputs)`.
public typealias BackwardKernel = @Sendable (BackwardContext) throws -> [Tensor?]

/// One op's gradient rule and the input slots it differentiates.
public struct GradientRule: Sendable {
  /// Input slots that carry gradients (`nil`: all of them). A float initializer read at such a
  /// slot is a trainable parameter.
  public let differentiableInputs: [Int]?
  public let backward: BackwardKernel

  public init(inputs: [Int]? = nil, _ backward: @escaping BackwardKernel) {
    self.differentiableInputs = inputs
    self.backward = backward
  }

  /// Whether input slot `i` carries a gradient.
  public func differentiates(_ i: Int) -> Bool { differentiableInputs?.contains(i) ?? true }
}

/// The gradient rules of the ops LowbitTrain differentiates, by ONNX op type.
public enum GradientRules {
  /// Every rule, by op type.
  public static let all: [String: GradientRule] = {
    var table: [String: GradientRule] = [:]
    for group in [elementwiseRules, linearRules, convolutionRules, convolutionTransposeRules, poolingRules, shapeRules, routingRules, constantRules, unaryRules, activationRules, reductionRules, softmaxRules, normalizationRules, fakeQuantizeRules, biasQuantizeRules, softRoundingRules] {
      table.merge(group) { first, _ in first }
    }
    return table
  }()

  /// The op types that have a gradient rule.
  public static var supportedOpTypes: [String] { all.keys.sorted() }
}
