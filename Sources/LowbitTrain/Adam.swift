#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif
import LowbitCore

/// Adam (Kingma & Ba), as PyTorch's `torch.optim.Adam` / `AdamW` define it, per element at step t:
/// `g = grad (+ weightDecay * p unless decoupled)`, `m = b1 m + (1 - b1) g`,
/// `v = b2 v + (1 - b2) g^2`, `p = p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`;
/// with `decoupledWeightDecay` (AdamW) `p = p * (1 - lr * weightDecay)` first instead.
public struct Adam: Optimizer, Equatable {
  public var beta1: Float
  public var beta2: Float
  public var epsilon: Float
  public var weightDecay: Float
  public var decoupledWeightDecay: Bool
  /// Parameters without weight decay.
  public var noWeightDecay: Set<String>
  /// First and second moment estimates and the step count, by parameter name.
  public private(set) var firstMoment: [String: [Float]] = [:]
  public private(set) var secondMoment: [String: [Float]] = [:]
  public private(set) var steps: [String: Int] = [:]

  public init(
    beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8, weightDecay: Float = 0,
    decoupledWeightDecay: Bool = false, noWeightDecay: Set<String> = []
  ) {
    self.beta1 = beta1
    self.beta2 = beta2
    self.epsilon = epsilon
    self.weightDecay = weightDecay
    self.decoupledWeightDecay = decoupledWeightDecay
    self.noWeightDecay = noWeightDecay
  }

  public mutating func update(_ parameters: inout [String: Tensor], gradients: [String: Tensor], learningRate: Float) throws {
    for name in parameters.keys.sorted() {
      guard let gradient = gradients[name], let p = parameters[name] else { continue }
      let grad = try checkedGradient(gradient, for: name, parameter: p)
      var w = p.floats
      var m = firstMoment[name] ?? [Float](repeating: 0, count: w.count)
      var v = secondMoment[name] ?? [Float](repeating: 0, count: w.count)
      let t = (steps[name] ?? 0) + 1
      let decay = noWeightDecay.contains(name) ? 0 : weightDecay
      let correction1 = 1 - Float(pow(Double(beta1), Double(t)))
      let correction2 = 1 - Float(pow(Double(beta2), Double(t)))
      for i in 0..<w.count {
        var g = grad[i]
        if decoupledWeightDecay { w[i] *= 1 - learningRate * decay } else { g += decay * w[i] }
        m[i] = beta1 * m[i] + (1 - beta1) * g
        v[i] = beta2 * v[i] + (1 - beta2) * g * g
        w[i] -= learningRate * (m[i] / correction1) / ((v[i] / correction2).squareRoot() + epsilon)
      }
      firstMoment[name] = m
      secondMoment[name] = v
      steps[name] = t
      parameters[name] = Tensor(shape: p.shape, floats: w)
    }
  }
}
