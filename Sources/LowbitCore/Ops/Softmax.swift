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
}

private func softmax(_ ctx: KernelContext, log isLog: Bool) throws -> [Tensor] {
  let input = try ctx.floatInput(0)
  let x = input.rank == 0 ? input.reshaped([1]) : input  // a scalar is a one-element vector
  let outer: Int
  let dim: Int
  let inner: Int
  if ctx.opset >= 13 {
    let axis = try ctx.axis(try ctx.int("axis", default: -1), rank: x.rank)
    dim = x.shape[axis]
    outer = x.shape[..<axis].reduce(1, *)
    inner = x.shape[(axis + 1)...].reduce(1, *)
  } else {
    var axis = try ctx.int("axis", default: 1)
    guard axis >= -x.rank && axis <= x.rank else {
      throw ctx.error("axis \(axis) is out of range for rank \(x.rank)")
    }
    if axis < 0 { axis += x.rank }
    outer = x.shape[..<axis].reduce(1, *)
    dim = x.shape[axis...].reduce(1, *)
    inner = 1
  }
  let n = x.count
  let lanes = outer * inner
  if n == 0 { return [input] }
  let result = x.floats.withUnsafeBufferPointer { px in
    [Float](unsafeUninitializedCapacity: n) { out, initialized in
      // Safety: n = outer * dim * inner > 0; lane (o, i) reads and writes the elements
      // o * dim * inner + i + j * inner for j in 0..<dim, all below n, and lanes are disjoint.
      let (bx, by) = (px.baseAddress!, out.baseAddress!)
      parallelChunks(lanes, costPerItem: dim * 8) { range in
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
      initialized = n
    }
  }
  return [Tensor(dtype: x.dtype, shape: input.shape, storage: .float(result))]
}
