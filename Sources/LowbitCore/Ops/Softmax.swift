import Glibc

/// Softmax and LogSoftmax.
///
/// Opset 13 and later: along one `axis` (default -1). Before opset 13: the input is seen as a 2-D
/// matrix `[prod(shape[..<axis]), prod(shape[axis...])]` (axis default 1) and each row is
/// normalized. Both subtract the maximum first, so large inputs do not overflow.
extension Ops {
  static let softmaxKernels: [String: Kernel] = [
    "Softmax": { try softmax($0, log: false) },
    "LogSoftmax": { try softmax($0, log: true) },
  ]

  /// The lanes Softmax and LogSoftmax normalize over an input of `shape` (a scalar counts as a
  /// one-element vector): lane `(o, i)` holds the elements `o * dim * inner + i + j * inner`,
  /// `j < dim`. Opset 13 and later: along `axis` (default -1); before: the input as a matrix
  /// `[prod(shape[..<axis]), prod(shape[axis...])]` (axis default 1), so `inner = 1`.
  public static func softmaxLanes(_ ctx: KernelContext, shape: [Int]) throws -> (outer: Int, dim: Int, inner: Int) {
    let dims = shape.isEmpty ? [1] : shape
    if ctx.opset >= 13 {
      let axis = try ctx.axis(try ctx.int("axis", default: -1), rank: dims.count)
      return (dims[..<axis].reduce(1, *), dims[axis], dims[(axis + 1)...].reduce(1, *))
    }
    var axis = try ctx.int("axis", default: 1)
    guard axis >= -dims.count && axis <= dims.count else {
      throw ctx.error("axis \(axis) is out of range for rank \(dims.count)")
    }
    if axis < 0 { axis += dims.count }
    return (dims[..<axis].reduce(1, *), dims[axis...].reduce(1, *), 1)
  }
}

private func softmax(_ ctx: KernelContext, log isLog: Bool) throws -> [Tensor] {
  let input = try ctx.floatInput(0)
  let x = input.rank == 0 ? input.reshaped([1]) : input  // a scalar is a one-element vector
  let (outer, dim, inner) = try Ops.softmaxLanes(ctx, shape: x.shape)
  let n = x.count
  let lanes = outer * inner
  if n == 0 { return [input] }
  let result = x.floats.withUnsafeBufferPointer { px in
    SharedBuffer<Float>.array(count: n) { out in
      // Safety: n = outer * dim * inner > 0; lane (o, i) reads and writes the elements
      // o * dim * inner + i + j * inner for j in 0..<dim, all below n, and lanes are disjoint.
      let x = SharedBuffer(px)
      parallelChunks(lanes, costPerItem: dim * 8) { range in
        let (bx, by) = (UnsafePointer(x.pointer(count: n)), out.pointer(count: n))
        for lane in range {
          let o = lane / inner
          let base = o * dim * inner + (lane - o * inner)
          var m = -Float.infinity
          for j in 0..<dim where bx[base + j * inner] > m || bx[base + j * inner].isNaN {
            m = bx[base + j * inner]
            if m.isNaN { break }
          }
          if !m.isFinite && !m.isNaN { m = 0 }  // all -inf (or +inf): keep exp finite
          var sum: Float = 0
          for j in 0..<dim {
            let e = expf(bx[base + j * inner] - m)
            (by + base + j * inner).initialize(to: e)
            sum += e
          }
          if isLog {
            let logSum = logf(sum)
            for j in 0..<dim { by[base + j * inner] = bx[base + j * inner] - m - logSum }
          } else {
            let inv = 1 / sum
            for j in 0..<dim { by[base + j * inner] *= inv }
          }
        }
      }
    }
  }
  return [Tensor(dtype: x.dtype, shape: input.shape, storage: .float(result))]
}
