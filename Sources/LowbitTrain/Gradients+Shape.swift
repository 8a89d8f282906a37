import LowbitCore

/// Gradient rules of the ops that move elements without changing them.
extension GradientRules {
  static let shapeRules: [String: GradientRule] = [
    "Flatten": GradientRule(inputs: [0], identity),
    "Reshape": GradientRule(inputs: [0], identity),
    "Squeeze": GradientRule(inputs: [0], identity),
    "Unsqueeze": GradientRule(inputs: [0], identity),
    "Transpose": GradientRule(inputs: [0], transpose),
    "Concat": GradientRule(concat),
    "Expand": GradientRule(inputs: [0], expand),
    "Gather": GradientRule(inputs: [0], gather),
    "Cast": GradientRule(inputs: [0], cast),
  ]

  /// Ops whose outputs are integers or booleans (comparisons, shapes, indices): a value carrying
  /// a gradient may reach them, but none flows back.
  static let constantRules: [String: GradientRule] = Dictionary(uniqueKeysWithValues: [
    "Shape", "Size", "IsNaN", "IsInf", "Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Not", "And",
    "Or", "Xor", "ArgMax", "ArgMin", "NonZero",
  ].map { ($0, GradientRule(inputs: []) { _ in [] }) })

  /// `Y = expand(X, shape)`: `dX = sum_bcast(dY)`.
  static func expand(_ ctx: BackwardContext) throws -> [Tensor?] {
    [TensorArithmetic.unbroadcast(ctx.outputGradient(), to: try ctx.input(0).shape)]
  }

  /// `Y = gather(X, indices; axis)`: `dX[..., idx[k], ...] += dY[..., k, ...]` (repeated indices
  /// add up; negative ones count from the end, as in the forward pass).
  static func gather(_ ctx: BackwardContext) throws -> [Tensor?] {
    let x = try ctx.input(0), indices = try ctx.input(1)
    let axis = try ctx.forward.axis(try ctx.forward.int("axis", default: 0), rank: x.rank)
    let dim = x.shape[axis], inner = x.shape[(axis + 1)...].reduce(1, *), outer = x.shape[..<axis].reduce(1, *)
    let picks = indices.asInts().map { Int($0) < 0 ? Int($0) + dim : Int($0) }
    let g = ctx.outputGradient().floats
    var dx = [Float](repeating: 0, count: x.count)
    for o in 0..<outer {
      for (k, index) in picks.enumerated() {
        let from = (o * picks.count + k) * inner, to = (o * dim + index) * inner
        for i in 0..<inner { dx[to + i] += g[from + i] }
      }
    }
    return [Tensor(shape: x.shape, floats: dx), nil]
  }

  /// `Y = cast(X)`: `dX = dY` between floating-point types; no gradient through integers.
  static func cast(_ ctx: BackwardContext) throws -> [Tensor?] {
    let x = try ctx.input(0)
    guard x.dtype.isFloatingPoint, ctx.outputs[0].dtype.isFloatingPoint else { return [nil] }
    return [ctx.outputGradient()]
  }

  /// `Y = transpose(X, perm)`: `dX = transpose(dY, perm^-1)` with `perm^-1[perm[i]] = i`.
  static func transpose(_ ctx: BackwardContext) throws -> [Tensor?] {
    let x = try ctx.input(0)
    let perm = try ctx.forward.ints("perm") ?? Array((0..<x.rank).reversed())
    var inverse = [Int](repeating: 0, count: perm.count)
    for (i, p) in perm.enumerated() { inverse[p] = i }
    return [try TensorArithmetic.run("Transpose", [ctx.outputGradient()], attributes: ["perm": .ints(inverse)],
                                     opset: ctx.forward.opset, at: ctx.node)]
  }

  /// `Y = concat(X_0, ..., X_k; axis)`: `dX_i` is the slab of `dY` that `X_i` filled.
  static func concat(_ ctx: BackwardContext) throws -> [Tensor?] {
    let xs = try ctx.forward.inputs.indices.map { try ctx.input($0) }
    let out = ctx.outputs[0]
    let axis = try ctx.forward.axis(try ctx.forward.int("axis", default: 0), rank: out.rank)
    let outer = out.shape[..<axis].reduce(1, *), inner = out.shape[(axis + 1)...].reduce(1, *)
    let row = out.shape[axis] * inner
    let g = ctx.outputGradient().floats
    var start = 0
    var grads: [Tensor?] = []
    for (i, x) in xs.enumerated() {
      let block = x.shape[axis] * inner
      if ctx.wants(i) && x.dtype.isFloatingPoint {
        var dx = [Float]()
        dx.reserveCapacity(x.count)
        for o in 0..<outer { dx.append(contentsOf: g[(o * row + start)..<(o * row + start + block)]) }
        grads.append(Tensor(shape: x.shape, floats: dx))
      } else {
        grads.append(nil)
      }
      start += block
    }
    return grads
  }
}
