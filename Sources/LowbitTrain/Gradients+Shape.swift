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
  ]

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
