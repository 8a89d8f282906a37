/// Shape kernels driven by index data: Gather, GatherElements, Pad and Trilu.
extension Ops {
  static let shapeIndexingKernels: [String: Kernel] = [
    "Gather": gather,
    "GatherElements": gatherElements,
    "Pad": pad,
    "Trilu": trilu,
  ]
}

/// Index values of input `i` made non-negative for an axis of size `dim`, or throws naming the
/// first out-of-range one.
private func checkedIndices(_ ctx: KernelContext, _ i: Int, dim: Int) throws -> (Tensor, [Int]) {
  let t = try ctx.input(i)
  guard case .int(let raw) = t.storage else {
    throw ctx.error("indices have type \(t.dtype), expected int32 or int64")
  }
  var out = [Int](repeating: 0, count: raw.count)
  for (k, v) in raw.enumerated() {
    guard v >= -Int64(dim) && v < Int64(dim) else {
      throw ctx.error("index \(v) is out of range for an axis of size \(dim)", .invalidInput)
    }
    out[k] = Int(v < 0 ? v + Int64(dim) : v)
  }
  return (t, out)
}

/// For each outer index and each entry of `indices`, the block of `inner` elements at that index.
private func gatherBlocks<T: Sendable>(_ src: [T], outer: Int, axisDim: Int, inner: Int, indices: [Int]) -> [T] {
  let k = indices.count
  let n = outer * k * inner
  if n == 0 { return [] }
  return src.withUnsafeBufferPointer { ps in
    SharedBuffer<T>.array(count: n) { out in
      // Safety: every index was checked to lie in 0..<axisDim, so each block
      // `(o * axisDim + index) * inner ..< + inner` lies in src; rows write disjoint blocks.
      let source = SharedBuffer(ps)
      parallelChunks(outer * k, costPerItem: inner) { range in
        for r in range {
          let o = r / k
          let block = source.pointer(at: (o * axisDim + indices[r - o * k]) * inner, count: inner)
          out.pointer(at: r * inner, count: inner).initialize(from: block, count: inner)
        }
      }
    }
  }
}

/// Gather: `data[..., indices[j...], ...]` along `axis`; negative indices count from the end.
private func gather(_ ctx: KernelContext) throws -> [Tensor] {
  let x = try ctx.input(0)
  guard x.rank > 0 else { throw ctx.error("data must have rank >= 1") }
  let axis = try ctx.axis(try ctx.int("axis", default: 0), rank: x.rank)
  let (indices, idx) = try checkedIndices(ctx, 1, dim: x.shape[axis])
  let shape = Array(x.shape[..<axis]) + indices.shape + Array(x.shape[(axis + 1)...])
  _ = try ctx.checkedCount(shape)
  let outer = x.shape[..<axis].reduce(1, *)
  let inner = x.shape[(axis + 1)...].reduce(1, *)
  let dim = x.shape[axis]
  let storage: Tensor.Storage
  switch x.storage {
  case .float(let v): storage = .float(gatherBlocks(v, outer: outer, axisDim: dim, inner: inner, indices: idx))
  case .int(let v): storage = .int(gatherBlocks(v, outer: outer, axisDim: dim, inner: inner, indices: idx))
  case .bool(let v): storage = .bool(gatherBlocks(v, outer: outer, axisDim: dim, inner: inner, indices: idx))
  }
  return [Tensor(dtype: x.dtype, shape: shape, storage: storage)]
}

/// GatherElements: `out[i][j][k] = data[indices[i][j][k]][j][k]` for axis 0, and so on.
private func gatherElements(_ ctx: KernelContext) throws -> [Tensor] {
  let x = try ctx.input(0)
  guard x.rank > 0 else { throw ctx.error("data must have rank >= 1") }
  let axis = try ctx.axis(try ctx.int("axis", default: 0), rank: x.rank)
  let (indices, idx) = try checkedIndices(ctx, 1, dim: x.shape[axis])
  guard indices.rank == x.rank else {
    throw ctx.error("indices have rank \(indices.rank), expected the data's rank \(x.rank)")
  }
  for d in 0..<x.rank where d != axis && indices.shape[d] > x.shape[d] {
    throw ctx.error("indices shape \(indices.shape) exceeds data shape \(x.shape) on axis \(d)")
  }
  let strides = Tensor.strides(of: x.shape)
  var flat = [Int](repeating: 0, count: idx.count)
  var pos = [Int](repeating: 0, count: x.rank)
  for k in 0..<idx.count {
    var o = 0
    for d in 0..<x.rank { o += (d == axis ? idx[k] : pos[d]) * strides[d] }
    flat[k] = o
    var d = x.rank - 1
    while d >= 0 {
      pos[d] += 1
      if pos[d] < indices.shape[d] { break }
      pos[d] = 0
      d -= 1
    }
  }
  return [Tensor(dtype: x.dtype, shape: indices.shape, storage: x.storage.picking(flat))]
}

/// Padded copy: `maps[d][o]` is the source index along dim `d` of output position `o`, or -1
/// for the fill value; the innermost source stride is 1.
private func padElements<T: Sendable>(_ src: [T], maps: [[Int]], strides: [Int], fill: T) -> [T] {
  let dims = maps.map(\.count)
  let n = dims.reduce(1, *)
  if n == 0 { return [] }
  let inner = dims[dims.count - 1]
  let rows = n / inner
  let last = maps[maps.count - 1]
  return src.withUnsafeBufferPointer { ps in
    SharedBuffer<T>.array(count: n) { out in
      // Every map entry is -1 or a valid index along its dim, so `base + last[j]` lies in src
      // whenever both are non-negative; rows write disjoint `inner`-slot ranges of out.
      let source = SharedBuffer(ps)
      parallelChunks(rows, costPerItem: inner) { range in
        for row in range {
          var r = row
          var base = 0
          for d in stride(from: dims.count - 2, through: 0, by: -1) {
            let m = maps[d][r % dims[d]]
            r /= dims[d]
            if m < 0 || base < 0 { base = -1 } else { base += m * strides[d] }
          }
          for j in 0..<inner {
            let m = last[j]
            out.initialize(row * inner + j, to: base >= 0 && m >= 0 ? source[base + m] : fill)
          }
        }
      }
    }
  }
}

/// Pad (modes constant, reflect, edge, wrap): pads and the constant value as inputs from opset 11,
/// axes from opset 18; attributes before. Negative pads crop.
private func pad(_ ctx: KernelContext) throws -> [Tensor] {
  let x = try ctx.input(0)
  let mode = try ctx.string("mode", default: "constant")
  guard ["constant", "reflect", "edge", "wrap"].contains(mode) else {
    throw ctx.error("mode '\(mode)' is not constant, reflect, edge or wrap", .unsupported)
  }
  var pads: [Int]
  var fill = Ops.cast(Tensor(shape: [1], floats: [0]), to: x.dtype).storage
  var axes = Array(0..<x.rank)
  if ctx.opset >= 11 {
    pads = try ctx.intList(1, what: "pads")
    if let v = ctx.optionalInput(2) {
      guard v.count == 1 else { throw ctx.error("constant_value has shape \(v.shape), expected a scalar") }
      guard v.dtype == x.dtype else {
        throw ctx.error("constant_value has type \(v.dtype), expected \(x.dtype)")
      }
      fill = v.storage
    }
    if let a = try ctx.optionalIntList(3, what: "axes") { axes = try ctx.normalizedAxes(a, rank: x.rank) }
  } else {
    guard let p = try ctx.ints("pads") else { throw ctx.error("attribute 'pads' is required") }
    pads = p
    fill = Ops.cast(Tensor(shape: [1], floats: [try ctx.float("value", default: 0)]), to: x.dtype).storage
  }
  guard pads.count == 2 * axes.count else {
    throw ctx.error("pads has \(pads.count) values, expected \(2 * axes.count)")
  }
  if x.rank == 0 { return [x] }
  var begins = [Int](repeating: 0, count: x.rank)
  var ends = [Int](repeating: 0, count: x.rank)
  for (i, a) in axes.enumerated() {
    begins[a] = pads[i]
    ends[a] = pads[i + axes.count]
  }
  var shape: [Int] = []
  for d in 0..<x.rank {
    let (s1, o1) = x.shape[d].addingReportingOverflow(begins[d])
    let (s2, o2) = s1.addingReportingOverflow(ends[d])
    guard !o1 && !o2 && s2 >= 0 else {
      throw ctx.error("pads \(pads) give a negative or absurd size on axis \(d) of shape \(x.shape)")
    }
    if mode != "constant" && x.shape[d] == 0 && s2 > 0 {
      throw ctx.error("cannot \(mode)-pad the empty axis \(d) of shape \(x.shape)")
    }
    shape.append(s2)
  }
  _ = try ctx.checkedCount(shape)
  var maps: [[Int]] = []
  for d in 0..<x.rank {
    let dim = x.shape[d]
    maps.append(
      (0..<shape[d]).map { o in
        let i = o - begins[d]
        if i >= 0 && i < dim { return i }
        switch mode {
        case "edge": return min(max(i, 0), dim - 1)
        case "wrap": return ((i % dim) + dim) % dim
        case "reflect":
          if dim == 1 { return 0 }
          let period = 2 * (dim - 1)
          let m = ((i % period) + period) % period
          return m < dim ? m : period - m
        default: return -1
        }
      })
  }
  let strides = Tensor.strides(of: x.shape)
  let storage: Tensor.Storage
  switch (x.storage, fill) {
  case (.float(let v), .float(let f)): storage = .float(padElements(v, maps: maps, strides: strides, fill: f[0]))
  case (.int(let v), .int(let f)): storage = .int(padElements(v, maps: maps, strides: strides, fill: f[0]))
  case (.bool(let v), .bool(let f)): storage = .bool(padElements(v, maps: maps, strides: strides, fill: f[0]))
  default: throw ctx.error("constant_value does not match the data type \(x.dtype)")
  }
  return [Tensor(dtype: x.dtype, shape: shape, storage: storage)]
}

/// Trilu: keeps `j - i >= k` (upper = 1) or `j - i <= k` (upper = 0) in the last two dims.
private func trilu(_ ctx: KernelContext) throws -> [Tensor] {
  let x = try ctx.input(0)
  guard x.rank >= 2 else { throw ctx.error("input has rank \(x.rank), expected at least 2") }
  let upper = try ctx.int("upper", default: 1) != 0
  var k: Int64 = 0
  if ctx.optionalInput(1) != nil {
    let t = try ctx.scalarInput(1, what: "k")
    guard case .int(let v) = t.storage else { throw ctx.error("k has type \(t.dtype), expected int64") }
    k = v[0]
  }
  let rows = x.shape[x.rank - 2]
  let cols = x.shape[x.rank - 1]
  var indices = [Int](repeating: -1, count: x.count)
  for flat in 0..<x.count {
    let j = Int64(flat % cols)
    let i = Int64((flat / cols) % rows)
    let keep = upper ? j - i >= k : j - i <= k
    if keep { indices[flat] = flat }
  }
  return [Tensor(dtype: x.dtype, shape: x.shape, storage: x.storage.picking(indices))]
}
