import Glibc

/// Unary elementwise kernels: math functions, activations, rounding and NaN/Inf tests.
///
/// NaN propagates through every float function (Relu, Clip and Sign included). Round is half to
/// even (`Round(2.5) == 2`), as ONNX requires.
extension Ops {
  static let elementwiseUnaryKernels: [String: Kernel] = [
    "Neg": { try numericUnary($0, float: { -$0 }, int: { 0 &- $0 }) },
    "Abs": { try numericUnary($0, float: { Swift.abs($0) }, int: { $0 < 0 ? 0 &- $0 : $0 }) },
    "Sign": {
      try numericUnary($0, float: { $0 > 0 ? 1 : ($0 < 0 ? -1 : ($0.isNaN ? $0 : 0)) },
        int: { $0 > 0 ? 1 : ($0 < 0 ? -1 : 0) })
    },
    "Relu": { try numericUnary($0, float: { $0 < 0 ? 0 : $0 }, int: { Swift.max($0, 0) }) },
    "Sqrt": { try floatUnary($0, cost: 4) { sqrtf($0) } },
    "Exp": { try floatUnary($0, cost: 8) { expf($0) } },
    "Log": { try floatUnary($0, cost: 8) { logf($0) } },
    "Reciprocal": { try floatUnary($0) { 1 / $0 } },
    "Tanh": { try floatUnary($0, cost: 8) { tanhf($0) } },
    "Sigmoid": { try floatUnary($0, cost: 8) { stableSigmoid($0) } },
    "Erf": { try floatUnary($0, cost: 8) { erff($0) } },
    "Sin": { try floatUnary($0, cost: 8) { sinf($0) } },
    "Cos": { try floatUnary($0, cost: 8) { cosf($0) } },
    "Floor": { try floatUnary($0) { $0.rounded(.down) } },
    "Ceil": { try floatUnary($0) { $0.rounded(.up) } },
    "Round": { try floatUnary($0) { $0.rounded(.toNearestOrEven) } },
    "Softsign": { try floatUnary($0) { $0 / (1 + Swift.abs($0)) } },
    "Softplus": {
      // log(1 + e^x), without overflow for large x.
      try floatUnary($0, cost: 8) { $0 > 0 ? $0 + log1pf(expf(-$0)) : log1pf(expf($0)) }
    },
    "LeakyRelu": { ctx in
      let alpha = try ctx.float("alpha", default: 0.01)
      return try floatUnary(ctx) { $0 < 0 ? alpha * $0 : $0 }
    },
    "Elu": { ctx in
      let alpha = try ctx.float("alpha", default: 1)
      return try floatUnary(ctx, cost: 8) { $0 < 0 ? alpha * (expf($0) - 1) : $0 }
    },
    "Selu": { ctx in
      let alpha = try ctx.float("alpha", default: 1.67326319217681884765625)
      let gamma = try ctx.float("gamma", default: 1.05070102214813232421875)
      return try floatUnary(ctx, cost: 8) { $0 <= 0 ? gamma * (alpha * expf($0) - alpha) : gamma * $0 }
    },
    "HardSigmoid": { ctx in
      let alpha = try ctx.float("alpha", default: 0.2)
      let beta = try ctx.float("beta", default: 0.5)
      return try floatUnary(ctx) { clamp01(alpha * $0 + beta) }
    },
    "HardSwish": { try floatUnary($0) { $0 * clamp01($0 / 6 + 0.5) } },
    "Gelu": gelu,
    "Clip": clip,
    "Not": { ctx in
      let x = try ctx.input(0)
      guard case .bool(let v) = x.storage else {
        throw ctx.error("input has type \(x.dtype), expected bool", .unsupported)
      }
      return [Tensor(shape: x.shape, bools: parallelMap(v) { !$0 })]
    },
    "IsNaN": { ctx in
      let x = try ctx.floatInput(0)
      return [Tensor(shape: x.shape, bools: parallelMap(x.floats) { $0.isNaN })]
    },
    "IsInf": { ctx in
      let x = try ctx.floatInput(0)
      let negative = try ctx.int("detect_negative", default: 1) != 0
      let positive = try ctx.int("detect_positive", default: 1) != 0
      let r = parallelMap(x.floats) { $0.isInfinite && ($0 > 0 ? positive : negative) }
      return [Tensor(shape: x.shape, bools: r)]
    },
  ]
}

/// `1 / (1 + e^-x)`, computed without overflow for large |x|.
@inline(__always)
func stableSigmoid(_ x: Float) -> Float {
  if x >= 0 { return 1 / (1 + expf(-x)) }
  let e = expf(x)
  return e / (1 + e)
}

/// `max(0, min(1, x))`, keeping NaN.
@inline(__always)
private func clamp01(_ x: Float) -> Float { x < 0 ? 0 : (x > 1 ? 1 : x) }

/// `op` over a floating-point input; the output keeps the input's type and shape.
@inline(__always)
func floatUnary(_ ctx: KernelContext, cost: Int = 1, _ op: (Float) -> Float) throws -> [Tensor] {
  let x = try ctx.floatInput(0)
  return [Tensor(dtype: x.dtype, shape: x.shape, storage: .float(parallelMap(x.floats, cost: cost, op)))]
}

/// `float` over a floating-point input or `int` over an integer one (wrapped to its width).
@inline(__always)
private func numericUnary(
  _ ctx: KernelContext, float fop: (Float) -> Float, int iop: (Int64) -> Int64
) throws -> [Tensor] {
  let x = try ctx.input(0)
  switch x.storage {
  case .float(let v): return [Tensor(dtype: x.dtype, shape: x.shape, storage: .float(parallelMap(v, fop)))]
  case .int(let v):
    let r = wrapIntegers(parallelMap(v, iop), to: x.dtype)
    return [Tensor(dtype: x.dtype, shape: x.shape, storage: .int(r))]
  case .bool: throw ctx.error("input of type bool is not supported", .unsupported)
  }
}

/// Gelu (opset 20): `0.5 x (1 + erf(x / sqrt 2))`, or with `approximate = "tanh"`
/// `0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))`.
private func gelu(_ ctx: KernelContext) throws -> [Tensor] {
  switch try ctx.string("approximate", default: "none") {
  case "none":
    return try floatUnary(ctx, cost: 8) { 0.5 * $0 * (1 + erff($0 * 0.70710678118654752)) }
  case "tanh":
    let k: Float = 0.79788456080286536  // sqrt(2 / pi)
    return try floatUnary(ctx, cost: 8) { x in 0.5 * x * (1 + tanhf(k * (x + 0.044715 * x * x * x))) }
  case let other:
    throw ctx.error("approximate '\(other)' is not 'none' or 'tanh'")
  }
}

/// Clip: bounds from inputs 1 and 2 (opset >= 11, either may be omitted) or from the `min`/`max`
/// attributes before. With `min > max` every value becomes `max`, as the spec says.
private func clip(_ ctx: KernelContext) throws -> [Tensor] {
  let x = try ctx.input(0)
  func bound(_ i: Int, _ name: String) throws -> Tensor? {
    guard let t = ctx.optionalInput(i) else { return nil }
    guard t.count == 1 else { throw ctx.error("\(name) (input \(i)) has shape \(t.shape), expected a scalar") }
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
    let r = parallelMap(v) { (y: Float) -> Float in
      let z = y < lo ? lo : y
      return z > hi ? hi : z
    }
    return [Tensor(dtype: x.dtype, shape: x.shape, storage: .float(r))]
  case .int(let v):
    var lo = Int64.min
    var hi = Int64.max
    if let t = try bound(1, "min") { lo = t.ints[0] }
    if let t = try bound(2, "max") { hi = t.ints[0] }
    let r = parallelMap(v) { Swift.min(Swift.max($0, lo), hi) }
    return [Tensor(dtype: x.dtype, shape: x.shape, storage: .int(r))]
  case .bool:
    throw ctx.error("input of type bool is not supported", .unsupported)
  }
}
