/// Scatter kernels: ScatterND and ScatterElements (the shifted-window code of Swin-style exports,
/// in-place index updates of PyTorch exports).
extension Ops {
  static let shapeScatterKernels: [String: Kernel] = [
    "ScatterND": scatterND,
    "ScatterElements": scatterElements,
  ]
}

/// How a scatter combines an update `u` with the value `v` already there (`reduction`), in the
/// data's own type; nil for `none` (the update replaces the value).
private func combiner<T: Numeric & Comparable>(_ ctx: KernelContext, _: T.Type) throws -> ((T, T) -> T)? {
  switch try ctx.string("reduction", default: "none") {
  case "none": return nil
  case "add": return { v, u in v + u }
  case "mul": return { v, u in v * u }
  case "max": return { v, u in max(v, u) }
  case "min": return { v, u in min(v, u) }
  case let r: throw ctx.error("reduction '\(r)' is not one of none, add, mul, max, min")
  }
}

/// `values` with element `target[k]` replaced by (or combined with) `updates[k]`, in order.
private func scattered<T: Numeric & Comparable>(_ ctx: KernelContext, _ values: [T], _ updates: [T], _ target: [Int]) throws -> [T] {
  var v = values
  if let combine = try combiner(ctx, T.self) {
    for (k, t) in target.enumerated() { v[t] = combine(v[t], updates[k]) }
  } else {
    for (k, t) in target.enumerated() { v[t] = updates[k] }
  }
  return v
}

/// Writes `updates` element `u` into element `target[u]` of a copy of `data` (combined by the
/// reduction; later updates win for `none`). Float, int and bool data.
private func scatter(_ ctx: KernelContext, data x: Tensor, updates: Tensor, target: [Int]) throws -> Tensor {
  switch (x.storage, updates.storage) {
  case (.float(let v), .float(let u)) where updates.dtype == x.dtype:
    return Tensor(dtype: x.dtype, shape: x.shape, storage: .float(try scattered(ctx, v, u, target)))
  case (.int(let v), .int(let u)) where updates.dtype == x.dtype:
    return Tensor(dtype: x.dtype, shape: x.shape, storage: .int(try scattered(ctx, v, u, target)))
  case (.bool(var v), .bool(let u)) where updates.dtype == x.dtype:
    guard try ctx.string("reduction", default: "none") == "none" else { throw ctx.error("a reduction needs numeric data, got \(x.dtype)") }
    for (k, t) in target.enumerated() { v[t] = u[k] }
    return Tensor(dtype: x.dtype, shape: x.shape, storage: .bool(v))
  default:
    throw ctx.error("updates have type \(updates.dtype), data \(x.dtype)")
  }
}

/// ScatterND: `indices` of shape `[i_1, ..., i_q-1, k]` address slices `data[idx]` of shape
/// `data.shape[k...]`; `updates` of shape `[i_1, ..., i_q-1] + data.shape[k...]` replaces them
/// (or combines with them under `reduction`). Negative indices count from the end.
private func scatterND(_ ctx: KernelContext) throws -> [Tensor] {
  let x = try ctx.input(0), indices = try ctx.input(1), updates = try ctx.input(2)
  guard case .int(let raw) = indices.storage, indices.rank >= 1 else {
    throw ctx.error("indices must be int64 of rank >= 1, got \(indices.dtype) \(indices.shape)")
  }
  let k = indices.shape[indices.rank - 1]
  guard k >= 1 && k <= x.rank else { throw ctx.error("index tuples of length \(k) for data of rank \(x.rank)") }
  let expected = Array(indices.shape.dropLast()) + Array(x.shape[k...])
  guard updates.shape == expected else {
    throw ctx.error("updates have shape \(updates.shape), expected \(expected) for indices \(indices.shape) and data \(x.shape)")
  }
  let strides = Tensor.strides(of: x.shape)
  let slice = x.shape[k...].reduce(1, *)
  let tuples = raw.count / k
  var target = [Int](repeating: 0, count: tuples * slice)
  for t in 0..<tuples {
    var base = 0
    for d in 0..<k {
      let v = raw[t * k + d], dim = Int64(x.shape[d])
      guard v >= -dim && v < dim else { throw ctx.error("index \(v) is out of range for axis \(d) of size \(dim)", .invalidInput) }
      base += Int(v < 0 ? v + dim : v) * strides[d]
    }
    for e in 0..<slice { target[t * slice + e] = base + e }
  }
  return [try scatter(ctx, data: x, updates: updates, target: target)]
}

/// ScatterElements: `out[..., indices[i][j], ...] = updates[i][j]` along `axis` (the inverse of
/// GatherElements), combined under `reduction`.
private func scatterElements(_ ctx: KernelContext) throws -> [Tensor] {
  let x = try ctx.input(0), indices = try ctx.input(1), updates = try ctx.input(2)
  guard x.rank > 0 else { throw ctx.error("data must have rank >= 1") }
  let axis = try ctx.axis(try ctx.int("axis", default: 0), rank: x.rank)
  guard case .int(let raw) = indices.storage, indices.rank == x.rank, updates.shape == indices.shape else {
    throw ctx.error("indices \(indices.dtype) \(indices.shape) and updates \(updates.shape) must match, with the data's rank \(x.rank)")
  }
  for d in 0..<x.rank where d != axis && indices.shape[d] > x.shape[d] {
    throw ctx.error("indices shape \(indices.shape) exceeds data shape \(x.shape) on axis \(d)")
  }
  let strides = Tensor.strides(of: x.shape), istrides = Tensor.strides(of: indices.shape)
  let dim = Int64(x.shape[axis])
  var target = [Int](repeating: 0, count: raw.count)
  for i in raw.indices {
    let v = raw[i]
    guard v >= -dim && v < dim else { throw ctx.error("index \(v) is out of range for an axis of size \(dim)", .invalidInput) }
    var o = 0, rest = i
    for d in 0..<x.rank {
      let p = rest / istrides[d]
      rest %= istrides[d]
      o += (d == axis ? Int(v < 0 ? v + dim : v) : p) * strides[d]
    }
    target[i] = o
  }
  return [try scatter(ctx, data: x, updates: updates, target: target)]
}
