import Foundation
import LowbitCore

/// Gradient rules of the activation functions beyond ReLU and Clip (MobileNetV3's HardSwish and
/// HardSigmoid, LeakyReLU, PReLU, ELU, SELU, Softplus, Softsign, GELU as one op):
/// `dX = dY * f'(x)`, with the attributes and the kinks of the forward kernels
/// (`ElementwiseFunctions.swift`).
extension GradientRules {
  static let activationRules: [String: GradientRule] = [
    "LeakyRelu": GradientRule(inputs: [0]) { ctx in
      let alpha = try ctx.forward.float("alpha", default: 0.01)
      return try unary(ctx) { x, _ in x < 0 ? alpha : 1 }
    },
    "PRelu": GradientRule(prelu),
    "Elu": GradientRule(inputs: [0]) { ctx in
      let alpha = try ctx.forward.float("alpha", default: 1)
      return try unary(ctx) { x, y in x < 0 ? y + alpha : 1 }
    },
    "Selu": GradientRule(inputs: [0]) { ctx in
      let alpha = try ctx.forward.float("alpha", default: 1.67326319217681884765625)
      let gamma = try ctx.forward.float("gamma", default: 1.05070102214813232421875)
      return try unary(ctx) { x, y in x <= 0 ? y + gamma * alpha : gamma }
    },
    // y = max(0, min(1, alpha x + beta)): slope alpha strictly inside, 0 where clamped.
    "HardSigmoid": GradientRule(inputs: [0]) { ctx in
      let alpha = try ctx.forward.float("alpha", default: 0.2), beta = try ctx.forward.float("beta", default: 0.5)
      return try unary(ctx) { x, _ in
        let t = alpha * x + beta
        return t > 0 && t < 1 ? alpha : 0
      }
    },
    // y = x * HardSigmoid(x) (alpha 1/6, beta 1/2): 0 below -3, 1 above 3, (2x + 3) / 6 between.
    "HardSwish": GradientRule(inputs: [0]) { try unary($0) { x, _ in x < -3 ? 0 : (x > 3 ? 1 : (2 * x + 3) / 6) } },
    // d/dx x tanh(sp(x)) = tanh(sp(x)) + x (1 - tanh^2(sp(x))) sigmoid(x), sp = softplus.
    "Mish": GradientRule(inputs: [0]) { ctx in
      try unary(ctx) { x, _ in
        let t = tanhf(x > 0 ? x + log1pf(expf(-x)) : log1pf(expf(x)))
        return t + x * (1 - t * t) * SigmoidFunction.value(x)
      }
    },
    "Celu": GradientRule(inputs: [0]) { ctx in
      let alpha = try ctx.forward.float("alpha", default: 1)
      return try unary(ctx) { x, _ in x > 0 ? 1 : expf(x / alpha) }
    },
    "ThresholdedRelu": GradientRule(inputs: [0]) { ctx in
      let alpha = try ctx.forward.float("alpha", default: 1)
      return try unary(ctx) { x, _ in x > alpha ? 1 : 0 }
    },
    // d/dx log(1 + e^x) = sigmoid(x).
    "Softplus": GradientRule(inputs: [0]) { try unary($0) { x, _ in SigmoidFunction.value(x) } },
    // d/dx x / (1 + |x|) = 1 / (1 + |x|)^2.
    "Softsign": GradientRule(inputs: [0]) { try unary($0) { x, _ in 1 / ((1 + abs(x)) * (1 + abs(x))) } },
    "Gelu": GradientRule(inputs: [0]) { ctx in
      switch try ctx.forward.string("approximate", default: "none") {
      case "none":
        // 0.5 (1 + erf(x / sqrt 2)) + x phi(x), phi the standard normal density.
        return try unary(ctx) { x, _ in
          0.5 * (1 + erff(x * 0.70710678118654752)) + x * expf(-0.5 * x * x) * 0.39894228040143268
        }
      case "tanh":
        // u = k (x + c x^3), y = 0.5 x (1 + tanh u): 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 c x^2).
        return try unary(ctx) { x, _ in
          let k: Float = 0.79788456080286536, c: Float = 0.044715
          let t = tanhf(k * (x + c * x * x * x))
          return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * c * x * x)
        }
      case let other:
        throw ctx.error("approximate '\(other)' is not 'none' or 'tanh'")
      }
    },
  ]
}

extension GradientRules {
  /// `Y = x < 0 ? slope x : x`, the slope broadcast to `X`: `dX = dY * (x < 0 ? slope : 1)`,
  /// `dSlope = sum_bcast(dY * min(x, 0))` (a learned slope trains like any parameter).
  static func prelu(_ ctx: BackwardContext) throws -> [Tensor?] {
    let x = try ctx.input(0), slope = try ctx.input(1)
    guard x.dtype.isFloatingPoint, slope.dtype.isFloatingPoint else { throw ctx.error("integer input has no gradient") }
    let xs = x.floats, g = ctx.outputGradient().floats
    var grads: [Tensor?] = [nil, nil]
    if ctx.wants(0) {
      let s = TensorArithmetic.broadcast(slope, to: x.shape)
      grads[0] = Tensor(shape: x.shape, floats: xs.indices.map { g[$0] * (xs[$0] < 0 ? s[$0] : 1) })
    }
    if ctx.wants(1) {
      let negative = Tensor(shape: x.shape, floats: xs.indices.map { xs[$0] < 0 ? g[$0] * xs[$0] : 0 })
      grads[1] = TensorArithmetic.unbroadcast(negative, to: slope.shape)
    }
    return grads
  }
}

/// The logistic function, without overflow for large |x|.
enum SigmoidFunction {
  static func value(_ x: Float) -> Float {
    if x >= 0 { return 1 / (1 + expf(-x)) }
    let e = expf(x)
    return e / (1 + e)
  }
}
