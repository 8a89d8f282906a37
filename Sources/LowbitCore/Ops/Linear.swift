extension Ops {
  static let linearKernels: [String: Kernel] = ["Gemm": gemm, "MatMul": matMul]

  /// ONNX Gemm: `Y = alpha * op(A) * op(B) + beta * C`, C broadcast to [M, N].
  static func gemm(_ ctx: KernelContext) throws -> [Tensor] {
    _ = configureBLAS
    let a = try ctx.floatInput(0), b = try ctx.floatInput(1)
    guard a.rank == 2, b.rank == 2 else {
      throw ctx.error("A \(a.shape) and B \(b.shape) must both be 2-D")
    }
    let transA = try ctx.int("transA", default: 0) != 0
    let transB = try ctx.int("transB", default: 0) != 0
    let alpha = try ctx.float("alpha", default: 1), beta = try ctx.float("beta", default: 1)
    let m = transA ? a.shape[1] : a.shape[0], k = transA ? a.shape[0] : a.shape[1]
    let kb = transB ? b.shape[1] : b.shape[0], n = transB ? b.shape[0] : b.shape[1]
    guard k == kb else { throw ctx.error("A \(a.shape) and B \(b.shape) have inner sizes \(k) and \(kb)") }
    var y = [Float](repeating: 0, count: try checkedElementCount([m, n], ctx))
    var betaUsed: Float = 0
    if let c = ctx.optionalInput(2), beta != 0 {
      guard c.dtype.isFloatingPoint else { throw ctx.error("C must be floating point", .unsupported) }
      let cs = c.floats
      switch c.shape {
      case [], [1], [1, 1]: for i in 0..<y.count { y[i] = cs[0] }
      case [n], [1, n]: for i in 0..<m { for j in 0..<n { y[i * n + j] = cs[j] } }
      case [m, 1]: for i in 0..<m { for j in 0..<n { y[i * n + j] = cs[i] } }
      case [m, n]: y = cs
      default: throw ctx.error("C \(c.shape) does not broadcast to [\(m), \(n)]")
      }
      betaUsed = beta
    }
    let av = a.floats, bv = b.floats
    // Safety: A, B and Y hold m*k, k*n and m*n elements as checked above.
    av.withUnsafeBufferPointer { ap in
      bv.withUnsafeBufferPointer { bp in
        y.withUnsafeMutableBufferPointer { yp in
          parallelSgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
                        a: ap.baseAddress!, lda: a.shape[1], b: bp.baseAddress!, ldb: b.shape[1],
                        beta: betaUsed, c: yp.baseAddress!, ldc: n)
        }
      }
    }
    if let activation = ctx.fusedActivation {
      y.withUnsafeMutableBufferPointer { if let base = $0.baseAddress { activation.apply(base, count: $0.count) } }
    }
    return [Tensor(shape: [m, n], floats: y)]
  }

  /// ONNX MatMul with numpy semantics: 1-D operands are promoted and the promoted dim removed,
  /// leading (batch) dims broadcast. `Y[..., i, j] = sum_k A[..., i, k] * B[..., k, j]`.
  static func matMul(_ ctx: KernelContext) throws -> [Tensor] {
    _ = configureBLAS
    let a = try ctx.floatInput(0), b = try ctx.floatInput(1)
    guard a.rank >= 1, b.rank >= 1 else { throw ctx.error("MatMul operands must have at least 1 dim") }
    let aShape = a.rank == 1 ? [1, a.shape[0]] : a.shape
    let bShape = b.rank == 1 ? [b.shape[0], 1] : b.shape
    let m = aShape[aShape.count - 2], k = aShape[aShape.count - 1]
    let kb = bShape[bShape.count - 2], n = bShape[bShape.count - 1]
    guard k == kb else { throw ctx.error("A \(a.shape) and B \(b.shape) have inner sizes \(k) and \(kb)") }
    let aBatch = Array(aShape.dropLast(2)), bBatch = Array(bShape.dropLast(2))
    let rank = max(aBatch.count, bBatch.count)
    let aPad = [Int](repeating: 1, count: rank - aBatch.count) + aBatch
    let bPad = [Int](repeating: 1, count: rank - bBatch.count) + bBatch
    var batch = [Int]()
    for i in 0..<rank {
      guard aPad[i] == bPad[i] || aPad[i] == 1 || bPad[i] == 1 else {
        throw ctx.error("batch dims of A \(a.shape) and B \(b.shape) do not broadcast")
      }
      batch.append(aPad[i] == 1 ? bPad[i] : aPad[i])
    }
    var outShape = batch + [m, n]
    let total = try checkedElementCount(outShape, ctx)
    if a.rank == 1 { outShape.remove(at: outShape.count - 2) }
    if b.rank == 1 { outShape.removeLast() }
    var y = [Float](repeating: 0, count: total)
    let batchCount = batch.reduce(1, *)
    let av = a.floats, bv = b.floats
    // Safety: offsets come from broadcast strides over the checked batch shape.
    av.withUnsafeBufferPointer { ap in
      bv.withUnsafeBufferPointer { bp in
        y.withUnsafeMutableBufferPointer { yp in
          let A = ap.baseAddress!, B = bp.baseAddress!, Y = yp.baseAddress!
          if bPad.allSatisfy({ $0 == 1 }) {
            // B shared by every batch: one GEMM over all rows of A (batch * m rows).
            let rowsA = aPad.reduce(1, *) * m
            if aPad == batch {
              parallelSgemm(transA: false, transB: false, m: rowsA, n: n, k: k, a: A, lda: k,
                            b: B, ldb: n, c: Y, ldc: n)
              return
            }
          }
          let aStrides = broadcastStrides(aPad, matrix: m * k)
          let bStrides = broadcastStrides(bPad, matrix: k * n)
          let (sa, sb, sy) = (SharedBuffer(ap), SharedBuffer(bp), SharedBuffer(yp))
          let batch = batch
          parallelChunks(batchCount, costPerItem: m * n * k) { range in
            let A = UnsafePointer(sa.pointer()), B = UnsafePointer(sb.pointer()), Y = sy.pointer()
            for bi in range {
              var rem = bi, aOff = 0, bOff = 0
              for d in stride(from: rank - 1, through: 0, by: -1) {
                let idx = rem % batch[d]
                rem /= batch[d]
                aOff += idx * aStrides[d]
                bOff += idx * bStrides[d]
              }
              if range.count == batchCount {
                parallelSgemm(transA: false, transB: false, m: m, n: n, k: k, a: A + aOff, lda: k,
                              b: B + bOff, ldb: n, c: Y + bi * m * n, ldc: n)
              } else {
                sgemm(transA: false, transB: false, m: m, n: n, k: k, a: A + aOff, lda: k,
                      b: B + bOff, ldb: n, c: Y + bi * m * n, ldc: n)
              }
            }
          }
        }
      }
    }
    return [Tensor(shape: outShape, floats: y)]
  }

  /// Element strides of each batch dim for a stack of matrices of `matrix` elements, 0 where broadcast.
  private static func broadcastStrides(_ dims: [Int], matrix: Int) -> [Int] {
    var strides = [Int](repeating: 0, count: dims.count)
    var acc = matrix
    for d in stride(from: dims.count - 1, through: 0, by: -1) {
      strides[d] = dims[d] == 1 ? 0 : acc
      acc *= dims[d]
    }
    return strides
  }
}
