/// Unary elementwise kernels: math functions, activations, rounding and NaN/Inf tests.
///
/// NaN propagates through every float function (Relu, Clip and Sign included). Round is half to
/// even (`Round(2.5) == 2`), as ONNX requires. The functions themselves are in
/// ElementwiseFunctions.swift.
extension Ops {
  static let elementwiseUnaryKernels: [String: Kernel] = [
    "Neg": { try numericUnary($0, NegOp()) },
    "Abs": { try numericUnary($0, AbsOp()) },
    "Sign": { try numericUnary($0, SignOp()) },
    "Relu": { try numericUnary($0, ReluOp()) },
    "Sqrt": { try floatUnary($0, SqrtOp(), cost: 4) },
    "Exp": { try floatUnary($0, ExpOp(), cost: 8) },
    "Log": { try floatUnary($0, LogOp(), cost: 8) },
    "Reciprocal": { try floatUnary($0, ReciprocalOp()) },
    "Tanh": { try floatUnary($0, TanhOp(), cost: 8) },
    "Sigmoid": { try floatUnary($0, SigmoidOp(), cost: 8) },
    "Erf": { try floatUnary($0, ErfOp(), cost: 8) },
    "Sin": { try floatUnary($0, SinOp(), cost: 8) },
    "Cos": { try floatUnary($0, CosOp(), cost: 8) },
    "Floor": { try floatUnary($0, FloorOp()) },
    "Ceil": { try floatUnary($0, CeilOp()) },
    "Round": { try floatUnary($0, RoundOp()) },
    "Softsign": { try floatUnary($0, SoftsignOp()) },
    "Softplus": { try floatUnary($0, SoftplusOp(), cost: 8) },
    "LeakyRelu": { ctx in
      try floatUnary(ctx, LeakyReluOp(alpha: try ctx.float("alpha", default: 0.01)))
    },
    "Elu": { ctx in try floatUnary(ctx, EluOp(alpha: try ctx.float("alpha", default: 1)), cost: 8) },
    "Selu": { ctx in
      let op = SeluOp(
        alpha: try ctx.float("alpha", default: 1.67326319217681884765625),
        gamma: try ctx.float("gamma", default: 1.05070102214813232421875))
      return try floatUnary(ctx, op, cost: 8)
    },
    "HardSigmoid": { ctx in
      let op = HardSigmoidOp(
        alpha: try ctx.float("alpha", default: 0.2), beta: try ctx.float("beta", default: 0.5))
      return try floatUnary(ctx, op)
    },
    "HardSwish": { try floatUnary($0, HardSwishOp()) },
    "Mish": { try floatUnary($0, MishOp(), cost: 8) },
    "Celu": { ctx in try floatUnary(ctx, CeluOp(alpha: try ctx.float("alpha", default: 1)), cost: 8) },
    "ThresholdedRelu": { ctx in try floatUnary(ctx, ThresholdedReluOp(alpha: try ctx.float("alpha", default: 1))) },
    "Gelu": { ctx in
      switch try ctx.string("approximate", default: "none") {
      case "none": return try floatUnary(ctx, GeluOp(), cost: 8)
      case "tanh": return try floatUnary(ctx, GeluTanhOp(), cost: 8)
      case let other: throw ctx.error("approximate '\(other)' is not 'none' or 'tanh'")
      }
    },
    "Clip": clip,
    "Not": { ctx in
      let x = try ctx.input(0)
      guard case .bool(let v) = x.storage else {
        throw ctx.error("input has type \(x.dtype), expected bool", .unsupported)
      }
      return [Tensor(shape: x.shape, bools: parallelMap(v, NotOp()))]
    },
    "IsNaN": { ctx in
      let x = try ctx.floatInput(0)
      return [Tensor(shape: x.shape, bools: parallelMap(x.floats, IsNaNOp()))]
    },
    "IsInf": { ctx in
      let x = try ctx.floatInput(0)
      let op = IsInfOp(
        positive: try ctx.int("detect_positive", default: 1) != 0,
        negative: try ctx.int("detect_negative", default: 1) != 0)
      return [Tensor(shape: x.shape, bools: parallelMap(x.floats, op))]
    },
  ]
}

/// `op` over a floating-point input; the output keeps the input's type and shape.
private func floatUnary<Op: FloatUnaryOp>(_ ctx: KernelContext, _ op: Op, cost: Int = 1) throws -> [Tensor] {
  let x = try ctx.floatInput(0)
  return [Tensor(dtype: x.dtype, shape: x.shape, storage: .float(parallelMap(x.floats, cost: cost, op)))]
}

/// `op` over a floating-point or integer input (integers wrapped to the type's width).
private func numericUnary<Op: NumericUnaryOp>(_ ctx: KernelContext, _ op: Op) throws -> [Tensor] {
  let x = try ctx.input(0)
  switch x.storage {
  case .float(let v):
    return [Tensor(dtype: x.dtype, shape: x.shape, storage: .float(parallelMap(v, FloatNumeric(op: op))))]
  case .int(let v):
    let r = wrapIntegers(parallelMap(v, IntNumeric(op: op)), to: x.dtype)
    return [Tensor(dtype: x.dtype, shape: x.shape, storage: .int(r))]
  case .bool: throw ctx.error("input of type bool is not supported", .unsupported)
  }
}

/// Clip: bounds from inputs 1 and 2 (opset >= 11, either may be omitted) or from the `min`/`max`
/// attributes before. With `min > max` every value becomes `max`, as the spec says.
private func clip(_ ctx: KernelContext) throws -> [Tensor] {
  let x = try ctx.input(0)
  func bound(_ i: Int, _ name: String) throws -> Tensor? {
    guard let t = ctx.optionalInput(i) else { return nil }
    guard t.count == 1 else {
      throw ctx.error("\(name) (input \(i)) has shape \(t.shape), expected a scalar")
    }
    guard t.dtype == x.dtype else {
      throw ctx.error("\(name) (input \(i)) has type \(t.dtype), expected \(x.dtype)")
    }
    return t
  }
  switch x.storage {
  case .float(let v):
    var lo = -Float.infinity
    var hi = Float.infinity
    if ctx.opset < 11 {
      lo = try ctx.float("min", default: -Float.greatestFiniteMagnitude)
      hi = try ctx.float("max", default: Float.greatestFiniteMagnitude)
    } else {
      if let t = try bound(1, "min") { lo = t.floats[0] }
      if let t = try bound(2, "max") { hi = t.floats[0] }
    }
    return [Tensor(dtype: x.dtype, shape: x.shape, storage: .float(parallelMap(v, ClipOp(lo: lo, hi: hi))))]
  case .int(let v):
    var lo = Int64.min
    var hi = Int64.max
    if let t = try bound(1, "min") { lo = t.ints[0] }
    if let t = try bound(2, "max") { hi = t.ints[0] }
    return [Tensor(dtype: x.dtype, shape: x.shape, storage: .int(parallelMap(v, ClipOp(lo: lo, hi: hi))))]
  case .bool:
    throw ctx.error("input of type bool is not supported", .unsupported)
  }
}
