import Glibc

/// Binary and variadic elementwise kernels with ONNX multidirectional broadcasting: arithmetic,
/// comparisons, logic, Min/Max/Sum/Mean, Where and PRelu.
///
/// Integer arithmetic wraps to the tensor type's width like a C cast (int8 `127 + 1 == -128`);
/// integer Div truncates toward zero and reports division by zero as an error.
extension Ops {
  static let elementwiseBinaryKernels: [String: Kernel] = [
    "Add": { try arithmetic($0, AddOp()) },
    "Sub": { try arithmetic($0, SubOp()) },
    "Mul": { try arithmetic($0, MulOp()) },
    "Div": divide,
    "Mod": modulo,
    "Pow": power,
    "Equal": { try comparison($0, EqualOp(), allowsBool: true) },
    "Less": { try comparison($0, LessOp()) },
    "LessOrEqual": { try comparison($0, LessOrEqualOp()) },
    "Greater": { try comparison($0, GreaterOp()) },
    "GreaterOrEqual": { try comparison($0, GreaterOrEqualOp()) },
    "And": { try logical($0, AndOp()) },
    "Or": { try logical($0, OrOp()) },
    "Xor": { try logical($0, XorOp()) },
    "Max": { try variadic($0, MaxOp()) },
    "Min": { try variadic($0, MinOp()) },
    "Sum": { try variadic($0, AddOp()) },
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

/// Wraps integers into a type's range (see `wrapInteger`).
struct WrapIntegerOp: UnaryElementOp {
  let dtype: DType
  @inline(__always) func callAsFunction(_ x: Int64) -> Int64 { wrapInteger(x, to: dtype) }
}

/// `values` wrapped into `dtype`'s range (no copy for int64).
func wrapIntegers(_ values: [Int64], to dtype: DType) -> [Int64] {
  dtype == .int64 ? values : parallelMap(values, WrapIntegerOp(dtype: dtype))
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

private func arithmetic<Op: ArithmeticOp>(_ ctx: KernelContext, _ op: Op) throws -> [Tensor] {
  let (a, b) = try sameTypedPair(ctx)
  let plan = try BroadcastPlan(ctx, [a.shape, b.shape])
  switch (a.storage, b.storage) {
  case (.float(let x), .float(let y)):
    let r = broadcastMap(plan, x, y, FloatArithmetic(op: op))
    return [Tensor(dtype: a.dtype, shape: plan.shape, storage: .float(r))]
  case (.int(let x), .int(let y)):
    let r = wrapIntegers(broadcastMap(plan, x, y, IntArithmetic(op: op)), to: a.dtype)
    return [Tensor(dtype: a.dtype, shape: plan.shape, storage: .int(r))]
  default:
    throw ctx.error("inputs of type \(a.dtype) are not supported", .unsupported)
  }
}

/// Throws when an integer divisor holds a zero that the (non-empty) output would use.
private func rejectZeroDivisor(_ ctx: KernelContext, _ a: Tensor, _ b: Tensor, _ what: String) throws {
  guard case .int(let y) = b.storage, y.contains(0) else { return }
  if try BroadcastPlan(ctx, [a.shape, b.shape]).count > 0 {
    throw ctx.error("integer \(what) by zero", .invalidInput)
  }
}

private func divide(_ ctx: KernelContext) throws -> [Tensor] {
  let (a, b) = try sameTypedPair(ctx)
  try rejectZeroDivisor(ctx, a, b, "division")
  return try arithmetic(ctx, DivOp())
}

private func modulo(_ ctx: KernelContext) throws -> [Tensor] {
  let fmod = try ctx.int("fmod", default: 0)
  let (a, b) = try sameTypedPair(ctx)
  if a.dtype.isFloatingPoint && fmod != 1 {
    throw ctx.error("fmod must be 1 for floating-point inputs")
  }
  try rejectZeroDivisor(ctx, a, b, "modulo")
  return try arithmetic(ctx, ModOp(fmod: fmod == 1))
}

private func power(_ ctx: KernelContext) throws -> [Tensor] {
  let a = try ctx.input(0)
  let b = try ctx.input(1)
  let plan = try BroadcastPlan(ctx, [a.shape, b.shape])
  let storage: Tensor.Storage
  switch (a.storage, b.storage) {
  case (.float(let x), .float(let y)): storage = .float(broadcastMap(plan, x, y, cost: 8, PowFloatOp()))
  case (.float(let x), .int(let y)): storage = .float(broadcastMap(plan, x, y, cost: 8, PowFloatIntOp()))
  case (.int(let x), .int(let y)):
    storage = .int(wrapIntegers(broadcastMap(plan, x, y, PowIntOp()), to: a.dtype))
  case (.int(let x), .float(let y)):
    storage = .int(wrapIntegers(broadcastMap(plan, x, y, PowIntFloatOp()), to: a.dtype))
  default:
    throw ctx.error("inputs of types \(a.dtype) and \(b.dtype) are not supported", .unsupported)
  }
  return [Tensor(dtype: a.dtype, shape: plan.shape, storage: storage)]
}

private func comparison<Op: ComparisonOp>(
  _ ctx: KernelContext, _ op: Op, allowsBool: Bool = false
) throws -> [Tensor] {
  let (a, b) = try sameTypedPair(ctx)
  let plan = try BroadcastPlan(ctx, [a.shape, b.shape])
  let r: [Bool]
  switch (a.storage, b.storage) {
  case (.float(let x), .float(let y)): r = broadcastMap(plan, x, y, FloatComparison(op: op))
  case (.int(let x), .int(let y)): r = broadcastMap(plan, x, y, IntComparison(op: op))
  case (.bool(let x), .bool(let y)) where allowsBool: r = broadcastMap(plan, x, y, BoolComparison(op: op))
  default: throw ctx.error("inputs of type \(a.dtype) are not supported", .unsupported)
  }
  return [Tensor(shape: plan.shape, bools: r)]
}

private func logical<Op: BinaryElementOp>(_ ctx: KernelContext, _ op: Op) throws -> [Tensor]
where Op.A == Bool, Op.B == Bool, Op.Out == Bool {
  let (a, b) = try sameTypedPair(ctx)
  guard case .bool(let x) = a.storage, case .bool(let y) = b.storage else {
    throw ctx.error("inputs have type \(a.dtype), expected bool", .unsupported)
  }
  let plan = try BroadcastPlan(ctx, [a.shape, b.shape])
  return [Tensor(shape: plan.shape, bools: broadcastMap(plan, x, y, op))]
}

/// Folds the inputs pairwise with broadcasting (Max, Min, Sum).
private func variadic<Op: ArithmeticOp>(_ ctx: KernelContext, _ op: Op) throws -> [Tensor] {
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
      let r = broadcastMap(plan, x, y, FloatArithmetic(op: op))
      acc = Tensor(dtype: acc.dtype, shape: plan.shape, storage: .float(r))
    case (.int(let x), .int(let y)):
      let r = wrapIntegers(broadcastMap(plan, x, y, IntArithmetic(op: op)), to: acc.dtype)
      acc = Tensor(dtype: acc.dtype, shape: plan.shape, storage: .int(r))
    default:
      throw ctx.error("inputs of type \(acc.dtype) are not supported", .unsupported)
    }
  }
  return [acc]
}

private func mean(_ ctx: KernelContext) throws -> [Tensor] {
  let sum = try variadic(ctx, AddOp())[0]
  guard case .float(let v) = sum.storage else {
    throw ctx.error("inputs of type \(sum.dtype) are not supported", .unsupported)
  }
  let n = Float(ctx.inputs.count)
  return [Tensor(dtype: sum.dtype, shape: sum.shape, storage: .float(parallelMap(v, DivideByOp(divisor: n))))]
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
  case (.float(let u), .float(let v)): storage = .float(broadcastMap3(plan, cond, u, v, SelectOp()))
  case (.int(let u), .int(let v)): storage = .int(broadcastMap3(plan, cond, u, v, SelectOp()))
  case (.bool(let u), .bool(let v)): storage = .bool(broadcastMap3(plan, cond, u, v, SelectOp()))
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
  return try arithmetic(ctx, PReluOp())
}
