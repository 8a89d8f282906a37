import LowbitCore

/// Gradient rules of the elementwise ops. Binary ops broadcast as numpy does; each operand's
/// gradient is summed over the axes it was broadcast along (`TensorArithmetic.unbroadcast`).
extension GradientRules {
  static let elementwiseRules: [String: GradientRule] = [
    "Add": GradientRule(addSub(sign: 1)),
    "Sub": GradientRule(addSub(sign: -1)),
    "Mul": GradientRule(mul),
    "Div": GradientRule(div),
    "Relu": GradientRule(inputs: [0], relu),
    "Clip": GradientRule(inputs: [0], clip),
    "Identity": GradientRule(inputs: [0], identity),
    "Dropout": GradientRule(inputs: [0], identity),
    "Where": GradientRule(inputs: [1, 2], select),
    "Max": GradientRule(extremum),
    "Min": GradientRule(extremum),
  ]

  /// `Y = max(X_0, ..., X_k)` (or min), broadcast: each element's gradient goes to the first
  /// operand that equals `Y` there, `dX_i = sum_bcast(dY where X_i chosen)` (the subgradient
  /// that picks one operand at a tie, as ReLU's picks 0).
  static func extremum(_ ctx: BackwardContext) throws -> [Tensor?] {
    let y = ctx.outputs[0], g = ctx.outputGradient().floats, ys = y.floats
    var taken = [Bool](repeating: false, count: y.count)
    var grads: [Tensor?] = []
    for i in ctx.forward.inputs.indices {
      let x = try ctx.input(i)
      guard x.dtype.isFloatingPoint else { grads.append(nil); continue }
      let xs = TensorArithmetic.broadcast(x, to: y.shape)
      var chosen = [Float](repeating: 0, count: y.count)
      for k in ys.indices where !taken[k] && xs[k] == ys[k] {
        taken[k] = true
        chosen[k] = g[k]
      }
      grads.append(ctx.wants(i) ? TensorArithmetic.unbroadcast(Tensor(shape: y.shape, floats: chosen), to: x.shape) : nil)
    }
    return grads
  }

  /// `Y = where(C, A, B)`: `dA = sum_bcast(dY where C)`, `dB = sum_bcast(dY where not C)`.
  static func select(_ ctx: BackwardContext) throws -> [Tensor?] {
    let c = try ctx.input(0), g = ctx.outputGradient()
    let zero = Tensor(scalar: Float(0)), opset = ctx.forward.opset
    var grads: [Tensor?] = [nil, nil, nil]
    if ctx.wants(1) {
      let taken = try TensorArithmetic.run("Where", [c, g, zero], opset: opset, at: ctx.node)
      grads[1] = TensorArithmetic.unbroadcast(taken, to: try ctx.input(1).shape)
    }
    if ctx.wants(2) {
      let taken = try TensorArithmetic.run("Where", [c, zero, g], opset: opset, at: ctx.node)
      grads[2] = TensorArithmetic.unbroadcast(taken, to: try ctx.input(2).shape)
    }
    return grads
  }

  /// `Y = A + B` / `Y = A - B`: `dA = sum_bcast(dY)`, `dB = ±sum_bcast(dY)`.
  static func addSub(sign: Float) -> BackwardKernel {
    { ctx in
      let g = ctx.outputGradient()
      let a = try ctx.input(0), b = try ctx.input(1)
      return [
        ctx.wants(0) ? TensorArithmetic.unbroadcast(g, to: a.shape) : nil,
        ctx.wants(1) ? TensorArithmetic.scaled(TensorArithmetic.unbroadcast(g, to: b.shape), by: sign) : nil,
      ]
    }
  }

  /// `Y = A * B`: `dA = sum_bcast(dY * B)`, `dB = sum_bcast(dY * A)`.
  static func mul(_ ctx: BackwardContext) throws -> [Tensor?] {
    let g = ctx.outputGradient()
    let a = try ctx.input(0), b = try ctx.input(1)
    let opset = ctx.forward.opset
    return [
      ctx.wants(0) ? TensorArithmetic.unbroadcast(try TensorArithmetic.run("Mul", [g, b], opset: opset, at: ctx.node), to: a.shape) : nil,
      ctx.wants(1) ? TensorArithmetic.unbroadcast(try TensorArithmetic.run("Mul", [g, a], opset: opset, at: ctx.node), to: b.shape) : nil,
    ]
  }

  /// `Y = A / B`: `dA = sum_bcast(dY / B)`, `dB = sum_bcast(-dY * A / B^2) = sum_bcast(-dY * Y / B)`.
  static func div(_ ctx: BackwardContext) throws -> [Tensor?] {
    let g = ctx.outputGradient()
    let a = try ctx.input(0), b = try ctx.input(1)
    guard a.dtype.isFloatingPoint, b.dtype.isFloatingPoint else {
      throw ctx.error("integer division has no gradient")
    }
    let opset = ctx.forward.opset
    var da: Tensor?, db: Tensor?
    if ctx.wants(0) {
      da = TensorArithmetic.unbroadcast(try TensorArithmetic.run("Div", [g, b], opset: opset, at: ctx.node), to: a.shape)
    }
    if ctx.wants(1) {
      let gy = try TensorArithmetic.run("Mul", [g, ctx.outputs[0]], opset: opset, at: ctx.node)
      let q = try TensorArithmetic.run("Div", [gy, b], opset: opset, at: ctx.node)
      db = TensorArithmetic.scaled(TensorArithmetic.unbroadcast(q, to: b.shape), by: -1)
    }
    return [da, db]
  }

  /// `Y = max(X, 0)`: `dX = dY` where `X > 0`, else 0 (the subgradient 0 at `X = 0`).
  static func relu(_ ctx: BackwardContext) throws -> [Tensor?] {
    let x = try ctx.input(0).floats, g = ctx.outputGradient().floats
    return [Tensor(shape: ctx.outputs[0].shape, floats: TensorArithmetic.passing(g, where: x, above: 0, below: nil))]
  }

  /// `Y = min(max(X, lo), hi)` (ReLU6 is `lo = 0, hi = 6`): `dX = dY` where `lo < X < hi`, else 0
  /// (PyTorch's hardtanh convention; the bounds get no gradient).
  static func clip(_ ctx: BackwardContext) throws -> [Tensor?] {
    var lo = -Float.infinity, hi = Float.infinity
    if ctx.forward.opset < 11 {
      lo = try ctx.forward.float("min", default: -.infinity)
      hi = try ctx.forward.float("max", default: .infinity)
    } else {
      if let t = ctx.forward.optionalInput(1) { lo = t.asFloats()[0] }
      if let t = ctx.forward.optionalInput(2) { hi = t.asFloats()[0] }
    }
    let x = try ctx.input(0).floats, g = ctx.outputGradient().floats
    return [Tensor(shape: ctx.outputs[0].shape, floats: TensorArithmetic.passing(g, where: x, above: lo, below: hi))]
  }

  /// `Y = X` (Identity, and Dropout, which training runs as identity): `dX = dY`.
  static func identity(_ ctx: BackwardContext) throws -> [Tensor?] {
    [ctx.outputGradient().reshaped(try ctx.input(0).shape)]
  }
}
