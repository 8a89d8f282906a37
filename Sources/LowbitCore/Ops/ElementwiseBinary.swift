import Glibc

/// Binary and variadic elementwise kernels with ONNX multidirectional broadcasting: arithmetic,
/// comparisons, logic, Min/Max/Sum/Mean, Where and PRelu.
///
/// Integer arithmetic wraps to the tensor type's width like a C cast (int8 `127 + 1 == -128`);
/// integer Div truncates toward zero and reports division by zero as an error.
extension Ops {
  static let elementwiseBinaryKernels: [String: Kernel] = [
    "Add": { try arithmetic($0, float: { $0 + $1 }, int: { $0 &+ $1 }) },
    "Sub": { try arithmetic($0, float: { $0 - $1 }, int: { $0 &- $1 }) },
    "Mul": { try arithmetic($0, float: { $0 * $1 }, int: { $0 &* $1 }) },
    "Div": divide,
    "Mod": modulo,
    "Pow": power,
    "Equal": {
      try comparison($0, allowsBool: true, float: { $0 == $1 }, int: { $0 == $1 }, bool: { $0 == $1 })
    },
    "Less": { try comparison($0, float: { $0 < $1 }, int: { $0 < $1 }, bool: { _, _ in false }) },
    "LessOrEqual": {
      try comparison($0, float: { $0 <= $1 }, int: { $0 <= $1 }, bool: { _, _ in false })
    },
    "Greater": { try comparison($0, float: { $0 > $1 }, int: { $0 > $1 }, bool: { _, _ in false }) },
    "GreaterOrEqual": {
      try comparison($0, float: { $0 >= $1 }, int: { $0 >= $1 }, bool: { _, _ in false })
    },
    "And": { try logical($0) { $0 && $1 } },
    "Or": { try logical($0) { $0 || $1 } },
    "Xor": { try logical($0) { $0 != $1 } },
    "Max": { try variadic($0, float: { ($0 > $1 || $0.isNaN) ? $0 : $1 }, int: { Swift.max($0, $1) }) },
    "Min": { try variadic($0, float: { ($0 < $1 || $0.isNaN) ? $0 : $1 }, int: { Swift.min($0, $1) }) },
    "Sum": { try variadic($0, float: { $0 + $1 }, int: { $0 &+ $1 }) },
    "Mean": mean,
    "Where": select,
    "PRelu": prelu,
  ]
}

/// Wraps an integer result into `dtype`'s range as a C cast does (4-bit types saturate; uint64,
/// held as Int64, keeps non-negative values).
@inline(__always)
func wrapInteger(_ x: Int64, to dtype: DType) -> Int64 {
  switch dtype {
  case .int8: return Int64(Int8(truncatingIfNeeded: x))
  case .uint8: return Int64(UInt8(truncatingIfNeeded: x))
  case .int16: return Int64(Int16(truncatingIfNeeded: x))
  case .uint16: return Int64(UInt16(truncatingIfNeeded: x))
  case .int32: return Int64(Int32(truncatingIfNeeded: x))
  case .uint32: return Int64(UInt32(truncatingIfNeeded: x))
  case .int4: return Swift.min(Swift.max(x, -8), 7)
  case .uint4: return Swift.min(Swift.max(x, 0), 15)
  case .uint64: return Swift.max(x, 0)
  default: return x
  }
}

/// `values` wrapped into `dtype`'s range (no copy for int64).
func wrapIntegers(_ values: [Int64], to dtype: DType) -> [Int64] {
  dtype == .int64 ? values : parallelMap(values) { wrapInteger($0, to: dtype) }
}

/// The two inputs of a binary op, checked to share one element type.
private func sameTypedPair(_ ctx: KernelContext) throws -> (Tensor, Tensor) {
  let a = try ctx.input(0)
  let b = try ctx.input(1)
  guard a.dtype == b.dtype else {
    throw ctx.error("inputs have different types \(a.dtype) and \(b.dtype)")
  }
  return (a, b)
}

@inline(__always)
private func arithmetic(
  _ ctx: KernelContext, float fop: (Float, Float) -> Float, int iop: (Int64, Int64) -> Int64
) throws -> [Tensor] {
  let (a, b) = try sameTypedPair(ctx)
  let plan = try BroadcastPlan(ctx, [a.shape, b.shape])
  switch (a.storage, b.storage) {
  case (.float(let x), .float(let y)):
    return [Tensor(dtype: a.dtype, shape: plan.shape, storage: .float(broadcastMap(plan, x, y, fop)))]
  case (.int(let x), .int(let y)):
    let r = wrapIntegers(broadcastMap(plan, x, y, iop), to: a.dtype)
    return [Tensor(dtype: a.dtype, shape: plan.shape, storage: .int(r))]
  default:
    throw ctx.error("inputs of type \(a.dtype) are not supported", .unsupported)
  }
}

private func divide(_ ctx: KernelContext) throws -> [Tensor] {
  let (a, b) = try sameTypedPair(ctx)
  if case .int(let y) = b.storage {
    let plan = try BroadcastPlan(ctx, [a.shape, b.shape])
    if plan.count > 0 && y.contains(0) {
      throw ctx.error("integer division by zero", .invalidInput)
    }
  }
  // Int64.min / -1 wraps (to Int64.min) instead of trapping.
  return try arithmetic(
    ctx, float: { $0 / $1 }, int: { $1 == 0 ? 0 : $0.dividedReportingOverflow(by: $1).partialValue })
}

private func modulo(_ ctx: KernelContext) throws -> [Tensor] {
  let fmod = try ctx.int("fmod", default: 0)
  let (a, b) = try sameTypedPair(ctx)
  if a.dtype.isFloatingPoint && fmod != 1 {
    throw ctx.error("fmod must be 1 for floating-point inputs")
  }
  if case .int(let y) = b.storage {
    let plan = try BroadcastPlan(ctx, [a.shape, b.shape])
    if plan.count > 0 && y.contains(0) { throw ctx.error("integer modulo by zero", .invalidInput) }
  }
  if fmod == 1 {
    // C fmod: the result takes the sign of the dividend.
    return try arithmetic(
      ctx, float: { fmodf($0, $1) },
      int: { $1 == 0 ? 0 : $0.remainderReportingOverflow(dividingBy: $1).partialValue })
  }
  // Python-style: the result takes the sign of the divisor.
  return try arithmetic(
    ctx, float: { fmodf($0, $1) },
    int: { x, y in
      if y == 0 { return 0 }
      let r = x.remainderReportingOverflow(dividingBy: y).partialValue
      return (r != 0 && (r < 0) != (y < 0)) ? r &+ y : r
    })
}

/// Integer power with wrapping; negative exponents give 0 unless |base| is 1 (C-style
/// truncation of the exact reciprocal).
@inline(__always)
private func integerPower(_ base: Int64, _ exponent: Int64) -> Int64 {
  if exponent < 0 {
    if base == 1 { return 1 }
    if base == -1 { return exponent & 1 == 0 ? 1 : -1 }
    return 0
  }
  var result: Int64 = 1
  var b = base
  var e = exponent
  while e > 0 {
    if e & 1 == 1 { result = result &* b }
    b = b &* b
    e >>= 1
  }
  return result
}

/// Float to Int64 truncating toward zero, NaN to 0, saturating outside Int64's range.
@inline(__always)
func truncatedInt64(_ x: Double) -> Int64 {
  if x.isNaN { return 0 }
  if x >= 9_223_372_036_854_775_807.0 { return Int64.max }
  if x <= -9_223_372_036_854_775_808.0 { return Int64.min }
  return Int64(x)
}

private func power(_ ctx: KernelContext) throws -> [Tensor] {
  let a = try ctx.input(0)
  let b = try ctx.input(1)
  let plan = try BroadcastPlan(ctx, [a.shape, b.shape])
  let storage: Tensor.Storage
  switch (a.storage, b.storage) {
  case (.float(let x), .float(let y)): storage = .float(broadcastMap(plan, x, y, cost: 8) { powf($0, $1) })
  case (.float(let x), .int(let y)):
    storage = .float(broadcastMap(plan, x, y, cost: 8) { powf($0, Float($1)) })
  case (.int(let x), .int(let y)):
    storage = .int(wrapIntegers(broadcastMap(plan, x, y) { integerPower($0, $1) }, to: a.dtype))
  case (.int(let x), .float(let y)):
    let r = broadcastMap(plan, x, y) { truncatedInt64(pow(Double($0), Double($1))) }
    storage = .int(wrapIntegers(r, to: a.dtype))
  default:
    throw ctx.error("inputs of types \(a.dtype) and \(b.dtype) are not supported", .unsupported)
  }
  return [Tensor(dtype: a.dtype, shape: plan.shape, storage: storage)]
}

@inline(__always)
private func comparison(
  _ ctx: KernelContext, allowsBool: Bool = false, float fop: (Float, Float) -> Bool,
  int iop: (Int64, Int64) -> Bool, bool bop: (Bool, Bool) -> Bool
) throws -> [Tensor] {
  let (a, b) = try sameTypedPair(ctx)
  let plan = try BroadcastPlan(ctx, [a.shape, b.shape])
  let r: [Bool]
  switch (a.storage, b.storage) {
  case (.float(let x), .float(let y)): r = broadcastMap(plan, x, y, fop)
  case (.int(let x), .int(let y)): r = broadcastMap(plan, x, y, iop)
  case (.bool(let x), .bool(let y)) where allowsBool: r = broadcastMap(plan, x, y, bop)
  default: throw ctx.error("inputs of type \(a.dtype) are not supported", .unsupported)
  }
  return [Tensor(shape: plan.shape, bools: r)]
}

@inline(__always)
private func logical(_ ctx: KernelContext, _ op: (Bool, Bool) -> Bool) throws -> [Tensor] {
  let (a, b) = try sameTypedPair(ctx)
  guard case .bool(let x) = a.storage, case .bool(let y) = b.storage else {
    throw ctx.error("inputs have type \(a.dtype), expected bool", .unsupported)
  }
  let plan = try BroadcastPlan(ctx, [a.shape, b.shape])
  return [Tensor(shape: plan.shape, bools: broadcastMap(plan, x, y, op))]
}

/// Folds the inputs pairwise with broadcasting (Max, Min, Sum).
@inline(__always)
private func variadic(
  _ ctx: KernelContext, float fop: (Float, Float) -> Float, int iop: (Int64, Int64) -> Int64
) throws -> [Tensor] {
  guard !ctx.inputs.isEmpty else { throw ctx.error("needs at least one input") }
  var acc = try ctx.input(0)
  guard acc.dtype.storageClass != .bool else {
    throw ctx.error("inputs of type \(acc.dtype) are not supported", .unsupported)
  }
  for i in 1..<max(ctx.inputs.count, 1) {
    let next = try ctx.input(i)
    guard next.dtype == acc.dtype else {
      throw ctx.error("input \(i) has type \(next.dtype), expected \(acc.dtype)")
    }
    let plan = try BroadcastPlan(ctx, [acc.shape, next.shape])
    switch (acc.storage, next.storage) {
    case (.float(let x), .float(let y)):
      acc = Tensor(dtype: acc.dtype, shape: plan.shape, storage: .float(broadcastMap(plan, x, y, fop)))
    case (.int(let x), .int(let y)):
      let r = wrapIntegers(broadcastMap(plan, x, y, iop), to: acc.dtype)
      acc = Tensor(dtype: acc.dtype, shape: plan.shape, storage: .int(r))
    default:
      throw ctx.error("inputs of type \(acc.dtype) are not supported", .unsupported)
    }
  }
  return [acc]
}

private func mean(_ ctx: KernelContext) throws -> [Tensor] {
  let sum = try variadic(ctx, float: { $0 + $1 }, int: { $0 &+ $1 })[0]
  guard case .float(let v) = sum.storage else {
    throw ctx.error("inputs of type \(sum.dtype) are not supported", .unsupported)
  }
  let n = Float(ctx.inputs.count)
  return [Tensor(dtype: sum.dtype, shape: sum.shape, storage: .float(parallelMap(v) { $0 / n }))]
}

private func select(_ ctx: KernelContext) throws -> [Tensor] {
  let c = try ctx.input(0)
  let (x, y) = (try ctx.input(1), try ctx.input(2))
  guard case .bool(let cond) = c.storage else {
    throw ctx.error("condition has type \(c.dtype), expected bool")
  }
  guard x.dtype == y.dtype else {
    throw ctx.error("X and Y have different types \(x.dtype) and \(y.dtype)")
  }
  let plan = try BroadcastPlan(ctx, [c.shape, x.shape, y.shape])
  let storage: Tensor.Storage
  switch (x.storage, y.storage) {
  case (.float(let u), .float(let v)): storage = .float(broadcastMap3(plan, cond, u, v) { $0 ? $1 : $2 })
  case (.int(let u), .int(let v)): storage = .int(broadcastMap3(plan, cond, u, v) { $0 ? $1 : $2 })
  case (.bool(let u), .bool(let v)): storage = .bool(broadcastMap3(plan, cond, u, v) { $0 ? $1 : $2 })
  default: throw ctx.error("X and Y storage differ")
  }
  return [Tensor(dtype: x.dtype, shape: plan.shape, storage: storage)]
}

private func prelu(_ ctx: KernelContext) throws -> [Tensor] {
  let (x, slope) = try sameTypedPair(ctx)
  let plan = try BroadcastPlan(ctx, [x.shape, slope.shape])
  guard plan.shape == x.shape else {
    throw ctx.error("slope shape \(slope.shape) does not broadcast to X shape \(x.shape)")
  }
  return try arithmetic(ctx, float: { $0 < 0 ? $0 * $1 : $0 }, int: { $0 < 0 ? $0 &* $1 : $0 })
}
