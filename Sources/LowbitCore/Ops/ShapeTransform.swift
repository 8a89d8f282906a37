/// Shape kernels that move elements as strided views: Transpose, Slice, Split, Tile, and Concat.
extension Ops {
  static let shapeTransformKernels: [String: Kernel] = [
    "Transpose": transpose,
    "Slice": slice,
    "Split": split,
    "Tile": tile,
    "Concat": concat,
  ]
}

private func transpose(_ ctx: KernelContext) throws -> [Tensor] {
  let x = try ctx.input(0)
  let perm = try ctx.ints("perm") ?? Array((0..<x.rank).reversed())
  guard perm.count == x.rank && perm.sorted() == Array(0..<x.rank) else {
    throw ctx.error("perm \(perm) is not a permutation of 0..<\(x.rank)")
  }
  let own = Tensor.strides(of: x.shape)
  let shape = perm.map { x.shape[$0] }
  let strides = perm.map { own[$0] }
  return [Tensor(dtype: x.dtype, shape: shape, storage: x.storage.strided(offset: 0, shape: shape, strides: strides))]
}

/// Slice: per axis, negative starts/ends count from the end, then clamp to `[0, dim]` (step > 0)
/// or `[0, dim - 1]` / `[-1, dim - 1]` (step < 0); ends like INT64_MAX mean "to the end".
private func slice(_ ctx: KernelContext) throws -> [Tensor] {
  let x = try ctx.input(0)
  let starts: [Int]
  let ends: [Int]
  var axesList: [Int]?
  var steps: [Int]?
  if ctx.opset >= 10 {
    starts = try ctx.intList(1, what: "starts")
    ends = try ctx.intList(2, what: "ends")
    axesList = try ctx.optionalIntList(3, what: "axes")
    steps = try ctx.optionalIntList(4, what: "steps")
  } else {
    guard let s = try ctx.ints("starts"), let e = try ctx.ints("ends") else {
      throw ctx.error("attributes 'starts' and 'ends' are required")
    }
    (starts, ends) = (s, e)
    axesList = try ctx.ints("axes")
  }
  let axesRaw = axesList ?? Array(0..<starts.count)
  let stepsRaw = steps ?? [Int](repeating: 1, count: starts.count)
  guard ends.count == starts.count && axesRaw.count == starts.count && stepsRaw.count == starts.count
  else {
    throw ctx.error(
      "starts, ends, axes and steps have lengths \(starts.count), \(ends.count), \(axesRaw.count), \(stepsRaw.count)")
  }
  let axes = try ctx.normalizedAxes(axesRaw, rank: x.rank)
  var shape = x.shape
  var strides = Tensor.strides(of: x.shape)
  var offset = 0
  for (i, a) in axes.enumerated() {
    let dim = x.shape[a]
    let step = stepsRaw[i]
    guard step != 0 else { throw ctx.error("step for axis \(a) is 0") }
    var s = starts[i] < 0 ? starts[i] + dim : starts[i]
    var e = ends[i] < 0 ? ends[i] + dim : ends[i]
    let count: Int
    if step > 0 {
      s = min(max(s, 0), dim)
      e = min(max(e, 0), dim)
      count = e > s ? (e - s - 1) / step + 1 : 0
    } else {
      s = min(max(s, 0), dim - 1)
      e = min(max(e, -1), dim - 1)
      count = s > e ? -((s - e - 1) / step) + 1 : 0
    }
    shape[a] = count
    if count > 0 { offset += s * strides[a] }
    strides[a] = count > 1 ? strides[a] * step : 0
  }
  return [Tensor(dtype: x.dtype, shape: shape, storage: x.storage.strided(offset: offset, shape: shape, strides: strides))]
}

/// Split: sizes from the `split` input (opset >= 13) or attribute, else `num_outputs` (opset 18,
/// chunks of `ceil(dim / n)` with a smaller last one), else equal parts.
private func split(_ ctx: KernelContext) throws -> [Tensor] {
  let x = try ctx.input(0)
  let axis = try ctx.axis(try ctx.int("axis", default: 0), rank: x.rank)
  guard x.rank > 0 else { throw ctx.error("cannot split a 0-d tensor") }
  let dim = x.shape[axis]
  let outputs = ctx.node.outputs.count
  var sizes: [Int]
  if ctx.opset >= 13, ctx.optionalInput(1) != nil {
    sizes = try ctx.intList(1, what: "split")
  } else if let s = try ctx.ints("split") {
    sizes = s
  } else if let n = ctx.node.attributes["num_outputs"] {
    guard case .int(let n) = n, n > 0, n == outputs else {
      throw ctx.error("num_outputs must be a positive int equal to the \(outputs) outputs")
    }
    let chunk = (dim + n - 1) / n
    sizes = [Int](repeating: chunk, count: n)
    sizes[n - 1] = dim - chunk * (n - 1)
    guard sizes[n - 1] >= 0 else {
      throw ctx.error("cannot split dim \(dim) into \(n) outputs of \(chunk)")
    }
  } else {
    guard outputs > 0 && dim % outputs == 0 else {
      throw ctx.error("cannot split dim \(dim) into \(outputs) equal parts")
    }
    sizes = [Int](repeating: dim / outputs, count: outputs)
  }
  guard sizes.count == outputs else {
    throw ctx.error("split has \(sizes.count) sizes for \(outputs) outputs")
  }
  guard sizes.allSatisfy({ $0 >= 0 }) && sizes.reduce(0, +) == dim else {
    throw ctx.error("split sizes \(sizes) do not add up to dim \(dim) of axis \(axis)")
  }
  let strides = Tensor.strides(of: x.shape)
  var start = 0
  return sizes.map { size in
    var shape = x.shape
    shape[axis] = size
    let storage = x.storage.strided(offset: start * strides[axis], shape: shape, strides: strides)
    start += size
    return Tensor(dtype: x.dtype, shape: shape, storage: storage)
  }
}

/// Tile: as a strided view of shape `[r0, d0, r1, d1, ...]` with stride 0 on the repeats.
private func tile(_ ctx: KernelContext) throws -> [Tensor] {
  let x = try ctx.input(0)
  let repeats = try ctx.intList(1, what: "repeats")
  guard repeats.count == x.rank else {
    throw ctx.error("repeats has \(repeats.count) values for rank \(x.rank)")
  }
  if let bad = repeats.first(where: { $0 < 0 }) { throw ctx.error("repeats has a negative value \(bad)") }
  var shape: [Int] = []
  for (d, r) in zip(x.shape, repeats) {
    let (p, overflow) = d.multipliedReportingOverflow(by: r)
    guard !overflow else { throw ctx.error("tiling \(x.shape) by \(repeats) is too large", .invalidInput) }
    shape.append(p)
  }
  _ = try ctx.checkedCount(shape)
  let own = Tensor.strides(of: x.shape)
  var viewShape: [Int] = []
  var viewStrides: [Int] = []
  for i in 0..<x.rank {
    viewShape += [repeats[i], x.shape[i]]
    viewStrides += [0, own[i]]
  }
  let storage = x.storage.strided(offset: 0, shape: viewShape, strides: viewStrides)
  return [Tensor(dtype: x.dtype, shape: shape, storage: storage)]
}

/// Rows of `parts` interleaved: for each outer index, each part's block in turn.
private func concatElements<T>(_ parts: [[T]], outer: Int, blocks: [Int]) -> [T] {
  var out: [T] = []
  out.reserveCapacity(outer * blocks.reduce(0, +))
  for o in 0..<outer {
    for (p, b) in zip(parts, blocks) where b > 0 {
      out.append(contentsOf: p[(o * b)..<((o + 1) * b)])
    }
  }
  return out
}

private func concat(_ ctx: KernelContext) throws -> [Tensor] {
  guard ctx.node.attributes["axis"] != nil else { throw ctx.error("attribute 'axis' is required") }
  guard !ctx.inputs.isEmpty else { throw ctx.error("needs at least one input") }
  let xs = try (0..<ctx.inputs.count).map { try ctx.input($0) }
  let first = xs[0]
  guard first.rank > 0 else { throw ctx.error("cannot concatenate 0-d tensors") }
  let axis = try ctx.axis(try ctx.int("axis", default: 0), rank: first.rank)
  var total = 0
  for (i, t) in xs.enumerated() {
    guard t.dtype == first.dtype else {
      throw ctx.error("input \(i) has type \(t.dtype), expected \(first.dtype)")
    }
    guard t.rank == first.rank
      && (0..<t.rank).allSatisfy({ $0 == axis || t.shape[$0] == first.shape[$0] })
    else {
      throw ctx.error("input \(i) has shape \(t.shape), incompatible with \(first.shape) on axis \(axis)")
    }
    total += t.shape[axis]
  }
  var shape = first.shape
  shape[axis] = total
  _ = try ctx.checkedCount(shape)
  let outer = first.shape[..<axis].reduce(1, *)
  let inner = first.shape[(axis + 1)...].reduce(1, *)
  let blocks = xs.map { $0.shape[axis] * inner }
  let storage: Tensor.Storage
  switch first.storage {
  case .float: storage = .float(concatElements(xs.map(\.floats), outer: outer, blocks: blocks))
  case .int: storage = .int(concatElements(xs.map(\.ints), outer: outer, blocks: blocks))
  case .bool: storage = .bool(concatElements(xs.map(\.bools), outer: outer, blocks: blocks))
  }
  return [Tensor(dtype: first.dtype, shape: shape, storage: storage)]
}
