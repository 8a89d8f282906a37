import LowbitCore

/// Gradient rules of Gemm and MatMul, as matrix products through `MatrixProduct.gemm`.
extension GradientRules {
  static let linearRules: [String: GradientRule] = [
    "Gemm": GradientRule(gemm),
    "MatMul": GradientRule(matMul),
  ]

  /// `Y = alpha * op(A) op(B) + beta * C` with `A` [M, K] (or [K, M] under transA), `B` [K, N]
  /// (or [N, K] under transB):
  /// `d op(A) = alpha * dY op(B)^T`, `d op(B) = alpha * op(A)^T dY`, `dC = beta * sum_bcast(dY)`;
  /// a transposed operand takes the transpose of its `d op(.)`.
  static func gemm(_ ctx: BackwardContext) throws -> [Tensor?] {
    let a = try ctx.input(0), b = try ctx.input(1)
    let transA = try ctx.forward.int("transA", default: 0) != 0
    let transB = try ctx.forward.int("transB", default: 0) != 0
    let alpha = try ctx.forward.float("alpha", default: 1), beta = try ctx.forward.float("beta", default: 1)
    let m = transA ? a.shape[1] : a.shape[0], k = transA ? a.shape[0] : a.shape[1]
    let n = transB ? b.shape[0] : b.shape[1]
    let g = ctx.outputGradient().floats
    var grads: [Tensor?] = [nil, nil, nil]
    if ctx.wants(0) {
      // dA = alpha dY op(B)^T  [M, K], or its transpose alpha op(B) dY^T  [K, M].
      let da = transA
        ? MatrixProduct.product(b.floats, g, m: k, n: m, k: n, transA: transB, transB: true)
        : MatrixProduct.product(g, b.floats, m: m, n: k, k: n, transA: false, transB: !transB)
      grads[0] = TensorArithmetic.scaled(Tensor(shape: a.shape, floats: da), by: alpha)
    }
    if ctx.wants(1) {
      // dB = alpha op(A)^T dY  [K, N], or its transpose alpha dY^T op(A)  [N, K].
      let db = transB
        ? MatrixProduct.product(g, a.floats, m: n, n: k, k: m, transA: true, transB: transA)
        : MatrixProduct.product(a.floats, g, m: k, n: n, k: m, transA: !transA, transB: false)
      grads[1] = TensorArithmetic.scaled(Tensor(shape: b.shape, floats: db), by: alpha)
    }
    if ctx.wants(2), let c = ctx.forward.optionalInput(2) {
      grads[2] = TensorArithmetic.scaled(TensorArithmetic.unbroadcast(ctx.outputGradient(), to: c.shape), by: beta)
    }
    return grads
  }

  /// `Y[..., i, j] = sum_k A[..., i, k] B[..., k, j]` with numpy promotion of 1-D operands and
  /// broadcast batch dims: per batch element `dA_t = dY_t B_t^T`, `dB_t = A_t^T dY_t`, summed
  /// (in batch order) into the operand element each `t` read.
  static func matMul(_ ctx: BackwardContext) throws -> [Tensor?] {
    let a = try ctx.input(0), b = try ctx.input(1)
    let aShape = a.rank == 1 ? [1, a.shape[0]] : a.shape
    let bShape = b.rank == 1 ? [b.shape[0], 1] : b.shape
    let m = aShape[aShape.count - 2], k = aShape[aShape.count - 1], n = bShape[bShape.count - 1]
    let aBatch = Array(aShape.dropLast(2)), bBatch = Array(bShape.dropLast(2))
    let rank = max(aBatch.count, bBatch.count)
    let aPad = [Int](repeating: 1, count: rank - aBatch.count) + aBatch
    let bPad = [Int](repeating: 1, count: rank - bBatch.count) + bBatch
    let batch = zip(aPad, bPad).map { max($0, $1) }
    let g = ctx.outputGradient().floats
    let av = a.floats, bv = b.floats
    var da: [Float]? = ctx.wants(0) ? [Float](repeating: 0, count: a.count) : nil
    var db: [Float]? = ctx.wants(1) ? [Float](repeating: 0, count: b.count) : nil
    if bPad.allSatisfy({ $0 == 1 }) && aPad == batch {
      // B shared by every batch element: A is one [batch * M, K] matrix.
      let rows = aPad.reduce(1, *) * m
      if da != nil { da = MatrixProduct.product(g, bv, m: rows, n: k, k: n, transB: true) }
      if db != nil { db = MatrixProduct.product(av, g, m: k, n: n, k: rows, transA: true) }
    } else {
      let aStrides = TensorArithmetic.broadcastStrides(of: aPad, to: batch)
      let bStrides = TensorArithmetic.broadcastStrides(of: bPad, to: batch)
      // One multi-index per operand (both walk `batch` in step); aIndex/bIndex are matrix numbers.
      var aCursor = [Int](repeating: 0, count: rank), bCursor = aCursor
      var aIndex = 0, bIndex = 0
      for t in 0..<batch.reduce(1, *) {
        let gt = Array(g[(t * m * n)..<((t + 1) * m * n)])
        if da != nil {
          let bt = Array(bv[(bIndex * k * n)..<((bIndex + 1) * k * n)])
          let part = MatrixProduct.product(gt, bt, m: m, n: k, k: n, transB: true)
          for i in 0..<part.count { da![aIndex * m * k + i] += part[i] }
        }
        if db != nil {
          let at = Array(av[(aIndex * m * k)..<((aIndex + 1) * m * k)])
          let part = MatrixProduct.product(at, gt, m: k, n: n, k: m, transA: true)
          for i in 0..<part.count { db![bIndex * k * n + i] += part[i] }
        }
        TensorArithmetic.advance(&aCursor, &aIndex, shape: batch, strides: aStrides)
        TensorArithmetic.advance(&bCursor, &bIndex, shape: batch, strides: bStrides)
      }
    }
    return [da.map { Tensor(shape: a.shape, floats: $0) }, db.map { Tensor(shape: b.shape, floats: $0) }]
  }
}
