import Glibc

/// Reductions (ReduceSum ... ReduceLogSumExp) and ArgMax/ArgMin.
///
/// Axes come from input 1 from opset 13 for ReduceSum and opset 18 for the others, from the
/// `axes` attribute before. Empty axes reduce everything unless `noop_with_empty_axes = 1`, which
/// returns the input with only the elementwise part applied (square for ReduceSumSquare, as the
/// ONNX reference does). Float sums accumulate in Double. Reducing an empty set gives the
/// operation's identity: 0 for sums, 1 for products, -inf for max, +inf for min, NaN for mean.
extension Ops {
  static let reductionKernels: [String: Kernel] = [
    "ReduceSum": { try reduce($0, .sum) },
    "ReduceMean": { try reduce($0, .mean) },
    "ReduceMax": { try reduce($0, .max) },
    "ReduceMin": { try reduce($0, .min) },
    "ReduceProd": { try reduce($0, .prod) },
    "ReduceL1": { try reduce($0, .l1) },
    "ReduceL2": { try reduce($0, .l2) },
    "ReduceSumSquare": { try reduce($0, .sumSquare) },
    "ReduceLogSum": { try reduce($0, .logSum) },
    "ReduceLogSumExp": { try reduce($0, .logSumExp) },
    "ArgMax": { try argExtreme($0, max: true) },
    "ArgMin": { try argExtreme($0, max: false) },
  ]
}

private struct IntArithmeticSquare: UnaryElementOp {
  @inline(__always) func callAsFunction(_ x: Int64) -> Int64 { x &* x }
}

private enum Reduction {
  case sum, mean, max, min, prod, l1, l2, sumSquare, logSum, logSumExp
}

/// One reduced value of `count` floats at `p`.
@inline(__always)
private func reduceFloats(_ p: UnsafePointer<Float>, _ count: Int, _ op: Reduction) -> Float {
  switch op {
  case .max, .min:
    var best: Float = op == .max ? -.infinity : .infinity
    for j in 0..<count {
      let v = p[j]
      if v.isNaN { return v }
      if op == .max ? v > best : v < best { best = v }
    }
    return best
  case .prod:
    var acc: Double = 1
    for j in 0..<count { acc *= Double(p[j]) }
    return Float(acc)
  case .logSumExp:
    var m = -Float.infinity
    for j in 0..<count where p[j] > m || p[j].isNaN { m = p[j] }
    if !m.isFinite { return m }
    var acc: Double = 0
    for j in 0..<count { acc += Double(expf(p[j] - m)) }
    return m + Float(log(acc))
  default:
    var acc: Double = 0
    switch op {
    case .l1: for j in 0..<count { acc += Double(Swift.abs(p[j])) }
    case .l2, .sumSquare: for j in 0..<count { acc += Double(p[j]) * Double(p[j]) }
    default: for j in 0..<count { acc += Double(p[j]) }
    }
    switch op {
    case .mean: return Float(acc / Double(count))
    case .l2: return Float(acc.squareRoot())
    case .logSum: return Float(log(acc))
    default: return Float(acc)
    }
  }
}

/// One reduced value of `count` integers at `p` (wrapping arithmetic), or nil if unsupported.
@inline(__always)
private func reduceInts(_ p: UnsafePointer<Int64>, _ count: Int, _ op: Reduction, _ range: ClosedRange<Int64>) -> Int64 {
  var acc: Int64
  switch op {
  case .max:
    acc = range.lowerBound
    for j in 0..<count { acc = Swift.max(acc, p[j]) }
  case .min:
    acc = range.upperBound
    for j in 0..<count { acc = Swift.min(acc, p[j]) }
  case .prod:
    acc = 1
    for j in 0..<count { acc = acc &* p[j] }
  case .l1:
    acc = 0
    for j in 0..<count { acc = acc &+ (p[j] < 0 ? 0 &- p[j] : p[j]) }
  case .l2, .sumSquare:
    acc = 0
    for j in 0..<count { acc = acc &+ p[j] &* p[j] }
    if op == .l2 { acc = truncatedInt64(Double(acc).squareRoot()) }
  default:
    acc = 0
    for j in 0..<count { acc = acc &+ p[j] }
    if op == .mean { acc = count == 0 ? 0 : acc / Int64(count) }
  }
  return acc
}

/// `reduceOne(row)` for each of `rows` rows of `inner` contiguous elements.
@inline(__always)
private func reduceRows<T: Sendable, R: Sendable>(
  _ data: [T], rows: Int, inner: Int, _ reduceOne: @Sendable (UnsafePointer<T>) -> R
) -> [R] {
  if rows == 0 { return [] }
  return data.withUnsafeBufferPointer { pd in
    SharedBuffer<R>.array(count: rows) { out in
      // Safety: data holds rows * inner elements (when inner is 0 the pointer is never read);
      // each row writes one slot of out.
      let source = SharedBuffer(pd)
      parallelChunks(rows, costPerItem: max(inner, 1)) { range in
        for r in range { out.initialize(r, to: reduceOne(source.pointer(at: r * inner, count: inner))) }
      }
    }
  }
}

extension Ops {
  /// The axes a Reduce* node reduces over an input of `rank`, normalized: from input 1 from
  /// opset 13 for ReduceSum and 18 for the others, from the `axes` attribute before; empty axes
  /// mean every axis, or nil with `noop_with_empty_axes = 1` (the op is then elementwise).
  public static func reductionAxes(_ ctx: KernelContext, rank: Int) throws -> [Int]? {
    let inputSince = ctx.node.opType == "ReduceSum" ? 13 : 18
    var axes: [Int] = []
    if ctx.opset >= inputSince, let a = try ctx.optionalIntList(1, what: "axes") {
      axes = a
    } else if let a = try ctx.ints("axes") {
      axes = a
    }
    if axes.isEmpty { return try ctx.int("noop_with_empty_axes", default: 0) != 0 ? nil : Array(0..<rank) }
    return try ctx.normalizedAxes(axes, rank: rank)
  }
}

private func reduce(_ ctx: KernelContext, _ op: Reduction) throws -> [Tensor] {
  let x = try ctx.input(0)
  let keepDims = try ctx.int("keepdims", default: 1) != 0
  guard let axes = try Ops.reductionAxes(ctx, rank: x.rank) else {
    switch (op, x.storage) {
    case (.sumSquare, .float(let v)):
      return [Tensor(dtype: x.dtype, shape: x.shape, storage: .float(parallelMap(v, SquareOp())))]
    case (.sumSquare, .int(let v)):
      let squares = parallelMap(v, IntArithmeticSquare())
      return [Tensor(dtype: x.dtype, shape: x.shape, storage: .int(wrapIntegers(squares, to: x.dtype)))]
    case (.l1, .float(let v)), (.l2, .float(let v)):
      return [Tensor(dtype: x.dtype, shape: x.shape, storage: .float(parallelMap(v, FloatNumeric(op: AbsOp()))))]
    case (.logSum, .float(let v)):
      return [Tensor(dtype: x.dtype, shape: x.shape, storage: .float(parallelMap(v, LogOp())))]
    default:
      return [x]
    }
  }
  let reduced = Set(axes)
  let kept = (0..<x.rank).filter { !reduced.contains($0) }
  let order = kept + (0..<x.rank).filter { reduced.contains($0) }
  var outShape: [Int] = []
  for d in 0..<x.rank {
    if !reduced.contains(d) { outShape.append(x.shape[d]) } else if keepDims { outShape.append(1) }
  }
  let rows = kept.map { x.shape[$0] }.reduce(1, *)
  let inner = reduced.map { x.shape[$0] }.reduce(1, *)
  var storage = x.storage
  if order != Array(0..<x.rank) {
    let own = Tensor.strides(of: x.shape)
    storage = storage.strided(offset: 0, shape: order.map { x.shape[$0] }, strides: order.map { own[$0] })
  }
  let result: Tensor.Storage
  switch storage {
  case .float(let v):
    result = .float(reduceRows(v, rows: rows, inner: inner) { reduceFloats($0, inner, op) })
  case .int(let v):
    guard op != .logSum && op != .logSumExp else {
      throw ctx.error("input of type \(x.dtype) is not supported", .unsupported)
    }
    let range = x.dtype.integerRange!
    result = .int(wrapIntegers(reduceRows(v, rows: rows, inner: inner) { reduceInts($0, inner, op, range) }, to: x.dtype))
  case .bool(let v):
    guard op == .max || op == .min else {
      throw ctx.error("input of type bool is not supported", .unsupported)
    }
    result = .bool(
      reduceRows(v, rows: rows, inner: inner) { p in
        op == .max ? (0..<inner).contains { p[$0] } : (0..<inner).allSatisfy { p[$0] }
      })
  }
  return [Tensor(dtype: x.dtype, shape: outShape, storage: result)]
}

/// ArgMax/ArgMin along `axis` (default 0): the first extreme index, or the last with
/// `select_last_index = 1`. NaN counts as the extreme, like numpy.
private func argExtreme(_ ctx: KernelContext, max isMax: Bool) throws -> [Tensor] {
  let x = try ctx.input(0)
  let axis = try ctx.axis(try ctx.int("axis", default: 0), rank: x.rank)
  let keepDims = try ctx.int("keepdims", default: 1) != 0
  let last = try ctx.int("select_last_index", default: 0) != 0
  let dim = x.rank == 0 ? 1 : x.shape[axis]
  guard dim > 0 else { throw ctx.error("cannot take the arg-extreme of an empty axis \(axis)") }
  var outShape = x.shape
  if x.rank > 0 {
    if keepDims { outShape[axis] = 1 } else { outShape.remove(at: axis) }
  }
  let outer = x.rank == 0 ? 1 : x.shape[..<axis].reduce(1, *)
  let inner = x.rank == 0 ? 1 : x.shape[(axis + 1)...].reduce(1, *)
  var result = [Int64](repeating: 0, count: outer * inner)
  switch x.storage {
  case .float(let v):
    for o in 0..<outer {
      for i in 0..<inner {
        let base = o * dim * inner + i
        var best = v[base]
        var index = 0
        for j in 1..<Swift.max(dim, 1) {
          let u = v[base + j * inner]
          if best.isNaN {
            if last && u.isNaN { index = j }
            continue
          }
          let better = u.isNaN || (isMax ? u > best : u < best) || (last && u == best)
          if better {
            best = u
            index = j
          }
        }
        result[o * inner + i] = Int64(index)
      }
    }
  case .int(let v):
    for o in 0..<outer {
      for i in 0..<inner {
        let base = o * dim * inner + i
        var best = v[base]
        var index = 0
        for j in 1..<Swift.max(dim, 1) {
          let u = v[base + j * inner]
          if (isMax ? u > best : u < best) || (last && u == best) {
            best = u
            index = j
          }
        }
        result[o * inner + i] = Int64(index)
      }
    }
  case .bool:
    throw ctx.error("input of type bool is not supported", .unsupported)
  }
  return [Tensor(shape: outShape, ints: result)]
}
