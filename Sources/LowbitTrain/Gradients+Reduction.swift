import LowbitCore

/// Gradient rules of the reductions that pool and normalize (mean pooling, L2 normalization,
/// LayerNorm written out with ReduceMean).
extension GradientRules {
  static let reductionRules: [String: GradientRule] = [
    "ReduceSum": GradientRule(inputs: [0]) { try reduction($0) { _, _, _ in 1 } },
    "ReduceMean": GradientRule(inputs: [0]) { try reduction($0) { _, _, count in 1 / Float(count) } },
    "ReduceSumSquare": GradientRule(inputs: [0]) { try reduction($0) { x, _, _ in 2 * x } },
    "ReduceL2": GradientRule(inputs: [0]) { try reduction($0) { x, y, _ in y > 0 ? x / y : 0 } },
  ]

  /// `Y = reduce(X)` over some axes: `dX_i = dY_{r(i)} * partial(x_i, y_{r(i)}, count)`, where
  /// `r(i)` is the output element `x_i` was reduced into and `count` the elements per output.
  /// The axes are the forward kernel's (`Ops.reductionAxes`; none with `noop_with_empty_axes`,
  /// which makes the op elementwise).
  static func reduction(_ ctx: BackwardContext, _ partial: (Float, Float, Int) -> Float) throws -> [Tensor?] {
    let x = try ctx.input(0)
    guard x.dtype.isFloatingPoint else { throw ctx.error("integer input has no gradient") }
    var kept = x.shape
    for a in try Ops.reductionAxes(ctx.forward, rank: x.rank) ?? [] { kept[a] = 1 }
    let count = max(x.count / max(kept.reduce(1, *), 1), 1)
    let g = TensorArithmetic.broadcast(ctx.outputGradient().reshaped(kept), to: x.shape)
    let y = TensorArithmetic.broadcast(ctx.outputs[0].reshaped(kept), to: x.shape)
    let xs = x.floats
    var dx = [Float](repeating: 0, count: xs.count)
    for i in xs.indices { dx[i] = g[i] * partial(xs[i], y[i], count) }
    return [Tensor(shape: x.shape, floats: dx)]
  }
}
