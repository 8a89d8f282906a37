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
  /// The axes are read as the forward kernel reads them (input 1 from opset 13 for ReduceSum and
  /// 18 for the others, the attribute before; empty axes reduce everything unless
  /// `noop_with_empty_axes`, which makes the op elementwise).
  static func reduction(_ ctx: BackwardContext, _ partial: (Float, Float, Int) -> Float) throws -> [Tensor?] {
    let x = try ctx.input(0)
    guard x.dtype.isFloatingPoint else { throw ctx.error("integer input has no gradient") }
    let inputSince = ctx.node.opType == "ReduceSum" ? 13 : 18
    var axes: [Int] = []
    if ctx.forward.opset >= inputSince, let t = ctx.forward.optionalInput(1) {
      axes = t.asFloats().map { Int($0) }
    } else if let a = try ctx.forward.ints("axes") {
      axes = a
    }
    let noop = try ctx.forward.int("noop_with_empty_axes", default: 0) != 0
    var kept = x.shape
    if !(axes.isEmpty && noop) {
      let normalized = try axes.isEmpty ? Array(0..<x.rank) : axes.map { try ctx.forward.axis($0, rank: x.rank) }
      for a in normalized { kept[a] = 1 }
    }
    let count = max(x.count / max(kept.reduce(1, *), 1), 1)
    let g = TensorArithmetic.broadcast(ctx.outputGradient().reshaped(kept), to: x.shape)
    let y = TensorArithmetic.broadcast(ctx.outputs[0].reshaped(kept), to: x.shape)
    let xs = x.floats
    var dx = [Float](repeating: 0, count: xs.count)
    for i in xs.indices { dx[i] = g[i] * partial(xs[i], y[i], count) }
    return [Tensor(shape: x.shape, floats: dx)]
  }
}
