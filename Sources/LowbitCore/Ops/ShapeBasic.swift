/// Shape kernels that only reinterpret or fill: Shape, Size, Reshape, Flatten, Squeeze,
/// Unsqueeze, Expand, Constant, ConstantOfShape and Range; and the table of all shape kernels.
extension Ops {
  static let shapeKernels: [String: Kernel] = {
    var table: [String: Kernel] = [
      "Shape": shapeOf,
      "Size": { ctx in [Tensor(shape: [], ints: [Int64(try ctx.input(0).count)])] },
      "Reshape": reshape,
      "Flatten": flatten,
      "Squeeze": squeeze,
      "Unsqueeze": unsqueeze,
      "Expand": expand,
      "Constant": constant,
      "ConstantOfShape": constantOfShape,
      "Range": range,
    ]
    table.merge(shapeTransformKernels) { first, _ in first }
    table.merge(shapeIndexingKernels) { first, _ in first }
    table.merge(shapeScatterKernels) { first, _ in first }
    return table
  }()
}

/// Shape (opset 15): the dims from `start` to `end`, both clamped to `[0, rank]` after adding
/// the rank to negative values.
private func shapeOf(_ ctx: KernelContext) throws -> [Tensor] {
  let x = try ctx.input(0)
  let r = x.rank
  func clamped(_ v: Int) -> Int { min(max(v < 0 ? v + r : v, 0), r) }
  let start = clamped(try ctx.int("start", default: 0))
  let end = clamped(try ctx.int("end", default: r))
  let dims = start < end ? x.shape[start..<end].map { Int64($0) } : []
  return [Tensor(shape: [dims.count], ints: dims)]
}

/// Reshape: 0 copies the input dim at that index (unless `allowzero = 1`), one -1 is inferred.
private func reshape(_ ctx: KernelContext) throws -> [Tensor] {
  let x = try ctx.input(0)
  let spec = try ctx.intList(1, what: "shape")
  let allowZero = try ctx.int("allowzero", default: 0) != 0
  var out: [Int] = []
  var inferred: Int?
  for (i, d) in spec.enumerated() {
    switch d {
    case -1:
      guard inferred == nil else { throw ctx.error("shape \(spec) has more than one -1") }
      inferred = i
      out.append(1)
    case 0 where !allowZero:
      guard i < x.rank else {
        throw ctx.error("shape \(spec) copies dim \(i) with 0, but the input has shape \(x.shape)")
      }
      out.append(x.shape[i])
    case ..<0:
      throw ctx.error("shape \(spec) has an invalid dim \(d)")
    default:
      out.append(d)
    }
  }
  var known = 1
  var overflow = false
  for (i, d) in out.enumerated() where i != inferred {
    let (p, o) = known.multipliedReportingOverflow(by: d)
    overflow = overflow || o
    known = p
  }
  if let k = inferred {
    guard !allowZero || !spec.contains(0) else {
      throw ctx.error("shape \(spec) has both 0 and -1 with allowzero = 1")
    }
    guard !overflow && known > 0 && x.count % known == 0 else {
      throw ctx.error("cannot reshape \(x.count) elements of shape \(x.shape) to \(spec)")
    }
    out[k] = x.count / known
  } else {
    guard !overflow && known == x.count else {
      throw ctx.error("cannot reshape \(x.count) elements of shape \(x.shape) to \(out)")
    }
  }
  return [x.reshaped(out)]
}

/// Flatten: `[prod(shape[..<axis]), prod(shape[axis...])]`, axis in `-rank...rank`.
private func flatten(_ ctx: KernelContext) throws -> [Tensor] {
  let x = try ctx.input(0)
  var axis = try ctx.int("axis", default: 1)
  guard axis >= -x.rank && axis <= x.rank else {
    throw ctx.error("axis \(axis) is out of range for rank \(x.rank)")
  }
  if axis < 0 { axis += x.rank }
  let outer = x.shape[..<axis].reduce(1, *)
  let inner = x.shape[axis...].reduce(1, *)
  return [x.reshaped([outer, inner])]
}

/// Axes from input 1 (opset >= `inputSince`) or from the `axes` attribute before; nil if neither.
private func axesArgument(_ ctx: KernelContext, inputSince: Int) throws -> [Int]? {
  if ctx.opset >= inputSince, ctx.optionalInput(1) != nil {
    return try ctx.intList(1, what: "axes")
  }
  return try ctx.ints("axes")
}

private func squeeze(_ ctx: KernelContext) throws -> [Tensor] {
  let x = try ctx.input(0)
  guard let axesList = try axesArgument(ctx, inputSince: 13) else {
    return [x.reshaped(x.shape.filter { $0 != 1 })]
  }
  let axes = try ctx.normalizedAxes(axesList, rank: x.rank)
  for a in axes where x.shape[a] != 1 {
    throw ctx.error("cannot squeeze axis \(a) of shape \(x.shape): its size is not 1")
  }
  let out = x.shape.enumerated().filter { !axes.contains($0.offset) }.map(\.element)
  return [x.reshaped(out)]
}

private func unsqueeze(_ ctx: KernelContext) throws -> [Tensor] {
  let x = try ctx.input(0)
  guard let axesList = try axesArgument(ctx, inputSince: 13) else {
    throw ctx.error("axes are required")
  }
  let outRank = x.rank + axesList.count
  let axes = Set(try ctx.normalizedAxes(axesList, rank: outRank))
  var out: [Int] = []
  var next = x.shape.makeIterator()
  for d in 0..<outRank { out.append(axes.contains(d) ? 1 : next.next()!) }
  return [x.reshaped(out)]
}

/// Expand: broadcast the input with the shape input (either side may hold the 1s).
private func expand(_ ctx: KernelContext) throws -> [Tensor] {
  let x = try ctx.input(0)
  let shape = try ctx.intList(1, what: "shape")
  if let bad = shape.first(where: { $0 < 0 }) {
    throw ctx.error("shape \(shape) has a negative dim \(bad)")
  }
  let out = try ctx.broadcastShape([x.shape, shape])
  _ = try ctx.checkedCount(out)
  return [x.broadcast(to: out)]
}

private func constant(_ ctx: KernelContext) throws -> [Tensor] {
  let attrs = ctx.node.attributes
  let known = ["value", "value_float", "value_floats", "value_int", "value_ints"]
  for name in ["sparse_value", "value_string", "value_strings"] where attrs[name] != nil {
    throw ctx.error("attribute '\(name)' is not supported", .unsupported)
  }
  let present = known.filter { attrs[$0] != nil }
  guard present.count == 1 else {
    throw ctx.error("needs exactly one value attribute, found \(present.count)")
  }
  switch (present[0], attrs[present[0]]!) {
  case ("value", .tensor(let t)): return [t]
  case ("value_float", .float(let v)): return [Tensor(scalar: v)]
  case ("value_float", .int(let v)): return [Tensor(scalar: Float(v))]
  case ("value_floats", .floats(let v)): return [Tensor(shape: [v.count], floats: v)]
  case ("value_int", .int(let v)): return [Tensor(shape: [], ints: [Int64(v)])]
  case ("value_ints", .ints(let v)): return [Tensor(shape: [v.count], ints: v.map { Int64($0) })]
  case ("value_ints", .int(let v)): return [Tensor(shape: [1], ints: [Int64(v)])]
  case let (name, _): throw ctx.error("attribute '\(name)' has the wrong kind")
  }
}

private func constantOfShape(_ ctx: KernelContext) throws -> [Tensor] {
  let shape = try ctx.intList(0, what: "shape")
  let n = try ctx.checkedCount(shape)
  var value = Tensor(shape: [1], floats: [0])
  switch ctx.node.attributes["value"] {
  case nil: break
  case .tensor(let t)?:
    guard t.count == 1 else { throw ctx.error("value has \(t.count) elements, expected 1") }
    value = t
  default: throw ctx.error("attribute 'value' must be a tensor")
  }
  return [Tensor(dtype: value.dtype, shape: shape, storage: value.storage.repeatingFirst(n))]
}

/// Range: `start + i * delta` for `i` in `0..<max(ceil((limit - start) / delta), 0)`.
private func range(_ ctx: KernelContext) throws -> [Tensor] {
  let start = try ctx.scalarInput(0, what: "start")
  let limit = try ctx.scalarInput(1, what: "limit")
  let delta = try ctx.scalarInput(2, what: "delta")
  guard start.dtype == limit.dtype && start.dtype == delta.dtype else {
    throw ctx.error("start, limit and delta have types \(start.dtype), \(limit.dtype), \(delta.dtype)")
  }
  switch (start.storage, limit.storage, delta.storage) {
  case (.float(let s), .float(let l), .float(let d)):
    let (s0, l0, d0) = (Double(s[0]), Double(l[0]), Double(d[0]))
    guard d0 != 0 else { throw ctx.error("delta is 0") }
    // The count as ONNX Runtime computes it: the difference in the tensor type, then a ceil.
    let steps = (Double(l[0] - s[0]) / d0).rounded(.up)
    guard !steps.isNaN else { throw ctx.error("start \(s0), limit \(l0), delta \(d0) give no count") }
    guard steps <= Double(kernelMaxElementCount) else {
      throw ctx.error("range of \(steps) elements is too large", .invalidInput)
    }
    let n = Swift.max(Int(steps), 0)
    let values = (0..<n).map { Float(s0 + Double($0) * d0) }
    return [Tensor(dtype: start.dtype, shape: [n], storage: .float(values))]
  case (.int(let s), .int(let l), .int(let d)):
    let (s0, l0, d0) = (s[0], l[0], d[0])
    guard d0 != 0 else { throw ctx.error("delta is 0") }
    let (diff, overflow) = l0.subtractingReportingOverflow(s0)
    guard !overflow else { throw ctx.error("range from \(s0) to \(l0) is too large", .invalidInput) }
    let steps: Int64
    if d0 > 0 { steps = diff <= 0 ? 0 : (diff - 1) / d0 + 1 } else { steps = diff >= 0 ? 0 : (diff + 1) / d0 + 1 }
    guard steps <= Int64(kernelMaxElementCount) else {
      throw ctx.error("range of \(steps) elements is too large", .invalidInput)
    }
    let values = (0..<Int(steps)).map { s0 + Int64($0) * d0 }
    return [Tensor(dtype: start.dtype, shape: [Int(steps)], storage: .int(values))]
  default:
    throw ctx.error("inputs of type \(start.dtype) are not supported", .unsupported)
  }
}
