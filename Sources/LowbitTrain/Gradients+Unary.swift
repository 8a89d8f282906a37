import Foundation
import LowbitCore

/// Gradient rules of the smooth elementwise functions transformers use (GELU's Erf, LayerNorm
/// written out with Sqrt and Pow, Tanh and Sigmoid activations): `dX = dY * f'(x)`, with `f'`
/// written through the output `y` where that is cheaper.
extension GradientRules {
  static let unaryRules: [String: GradientRule] = [
    "Erf": GradientRule(inputs: [0]) { try unary($0) { x, _ in Float(2 / Double.pi.squareRoot()) * Foundation.exp(-x * x) } },
    "Sqrt": GradientRule(inputs: [0]) { try unary($0) { _, y in y > 0 ? 0.5 / y : 0 } },
    "Tanh": GradientRule(inputs: [0]) { try unary($0) { _, y in 1 - y * y } },
    "Sigmoid": GradientRule(inputs: [0]) { try unary($0) { _, y in y * (1 - y) } },
    "Exp": GradientRule(inputs: [0]) { try unary($0) { _, y in y } },
    "Log": GradientRule(inputs: [0]) { try unary($0) { x, _ in 1 / x } },
    "Neg": GradientRule(inputs: [0]) { try unary($0) { _, _ in -1 } },
    "Abs": GradientRule(inputs: [0]) { try unary($0) { x, _ in x > 0 ? 1 : (x < 0 ? -1 : 0) } },
    "Reciprocal": GradientRule(inputs: [0]) { try unary($0) { _, y in -y * y } },
    "Pow": GradientRule(inputs: [0], power),
  ]

  /// `dX_i = dY_i * derivative(x_i, y_i)` for a float elementwise `Y = f(X)`.
  static func unary(_ ctx: BackwardContext, _ derivative: (Float, Float) -> Float) throws -> [Tensor?] {
    let x = try ctx.input(0)
    guard x.dtype.isFloatingPoint else { throw ctx.error("integer input has no gradient") }
    let xs = x.floats, ys = ctx.outputs[0].floats, g = ctx.outputGradient().floats
    var dx = [Float](repeating: 0, count: xs.count)
    for i in xs.indices { dx[i] = g[i] * derivative(xs[i], ys[i]) }
    return [Tensor(shape: x.shape, floats: dx)]
  }

  /// `Y = A ^ B` (B held constant): `dA = sum_bcast(dY * B * A^(B - 1))`.
  static func power(_ ctx: BackwardContext) throws -> [Tensor?] {
    let a = try ctx.input(0), b = try ctx.input(1)
    guard a.dtype.isFloatingPoint else { throw ctx.error("integer base has no gradient") }
    let opset = ctx.forward.opset
    let lowered = Tensor(shape: b.shape, floats: b.asFloats().map { $0 - 1 })
    let slope = try TensorArithmetic.run("Mul", [try TensorArithmetic.run("Pow", [a, lowered], opset: opset, at: ctx.node),
                                                 Tensor(shape: b.shape, floats: b.asFloats())], opset: opset, at: ctx.node)
    let g = try TensorArithmetic.run("Mul", [ctx.outputGradient(), slope], opset: opset, at: ctx.node)
    return [TensorArithmetic.unbroadcast(g, to: a.shape), nil]
  }
}
