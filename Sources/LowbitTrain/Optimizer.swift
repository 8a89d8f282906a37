import LowbitCore

/// A first-order optimizer: moves parameters against their gradients. Its state (momentum
/// buffers, moment estimates, step count) is part of the value and `Codable`, so a checkpoint
/// can save it and a resumed run continues bit for bit.
public protocol Optimizer: Codable, Sendable {
  /// Applies one step with learning rate `learningRate` to every parameter that has a gradient
  /// (parameters are visited in sorted name order; each one is updated on its own).
  mutating func update(_ parameters: inout [String: Tensor], gradients: [String: Tensor], learningRate: Float) throws
}

extension Optimizer {
  /// The float elements of `gradient` for parameter `name`, checked against its shape.
  func checkedGradient(_ gradient: Tensor, for name: String, parameter: Tensor) throws -> [Float] {
    guard gradient.shape == parameter.shape, gradient.dtype.isFloatingPoint else {
      throw LowbitError.invalidArgument("gradient of '\(name)' has shape \(gradient.shape), the parameter \(parameter.shape)")
    }
    return gradient.floats
  }
}

/// Stochastic gradient descent with momentum, weight decay and optional Nesterov momentum, as
/// PyTorch's `torch.optim.SGD` defines them, per element:
/// `g = grad + weightDecay * p`; `v = momentum * v + (1 - dampening) * g` (`v = g` on the first
/// step); `d = nesterov ? g + momentum * v : v` (`d = g` without momentum); `p = p - lr * d`.
public struct SGD: Optimizer, Equatable {
  public var momentum: Float
  public var dampening: Float
  public var weightDecay: Float
  public var nesterov: Bool
  /// Parameters without weight decay (often biases and BatchNormalization scales and shifts).
  public var noWeightDecay: Set<String>
  /// Momentum buffers by parameter name.
  public private(set) var velocity: [String: [Float]] = [:]

  public init(
    momentum: Float = 0.9, dampening: Float = 0, weightDecay: Float = 0, nesterov: Bool = false,
    noWeightDecay: Set<String> = []
  ) {
    self.momentum = momentum
    self.dampening = dampening
    self.weightDecay = weightDecay
    self.nesterov = nesterov
    self.noWeightDecay = noWeightDecay
  }

  public mutating func update(_ parameters: inout [String: Tensor], gradients: [String: Tensor], learningRate: Float) throws {
    for name in parameters.keys.sorted() {
      guard let gradient = gradients[name], let p = parameters[name] else { continue }
      let grad = try checkedGradient(gradient, for: name, parameter: p)
      var w = p.floats
      let decay = noWeightDecay.contains(name) ? 0 : weightDecay
      let first = velocity[name] == nil
      var v = velocity[name] ?? [Float](repeating: 0, count: momentum != 0 ? w.count : 0)
      for i in 0..<w.count {
        var g = grad[i] + decay * w[i]
        if momentum != 0 {
          v[i] = first ? g : momentum * v[i] + (1 - dampening) * g
          g = nesterov ? g + momentum * v[i] : v[i]
        }
        w[i] -= learningRate * g
      }
      if momentum != 0 { velocity[name] = v }
      parameters[name] = Tensor(shape: p.shape, floats: w)
    }
  }
}
