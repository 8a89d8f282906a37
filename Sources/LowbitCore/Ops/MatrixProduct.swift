/// Dense matrix products for code outside the kernels (AdaRound, bias correction, training).
///
/// Row-major: `C = alpha * op(A) * op(B) + beta * C` with `op(A)` of shape [m, k] and `op(B)` of
/// shape [k, n]; `op(X)` is `X^T` when its flag is set. Runs through OpenBLAS's sgemm, split over
/// the kernel threads when large.
public enum MatrixProduct {
  /// Writes (or, with `beta` 1, accumulates) the product into `c`, which must hold m * n values.
  public static func gemm(
    _ a: [Float], _ b: [Float], into c: inout [Float], m: Int, n: Int, k: Int,
    transA: Bool = false, transB: Bool = false, alpha: Float = 1, beta: Float = 0
  ) {
    precondition(a.count >= m * k && b.count >= k * n && c.count >= m * n, "matrix sizes do not match")
    _ = configureBLAS
    a.withUnsafeBufferPointer { pa in
      b.withUnsafeBufferPointer { pb in
        c.withUnsafeMutableBufferPointer { pc in
          parallelSgemm(
            transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: pa.baseAddress!,
            lda: transA ? m : k, b: pb.baseAddress!, ldb: transB ? k : n, beta: beta, c: pc.baseAddress!, ldc: n)
        }
      }
    }
  }

  /// The same product on raw row-major buffers with leading dimensions, on the calling thread
  /// (for kernels outside Core that split work over threads themselves).
  ///
  /// Safety: the buffers hold at least the elements the shapes and leading dimensions address.
  public static func gemm(
    transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int, beta: Float = 0,
    c: UnsafeMutablePointer<Float>, ldc: Int
  ) {
    _ = configureBLAS
    sgemm(
      transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
      beta: beta, c: c, ldc: ldc)
  }

  /// `op(A) * op(B)` as a new [m, n] array.
  public static func product(
    _ a: [Float], _ b: [Float], m: Int, n: Int, k: Int, transA: Bool = false, transB: Bool = false
  ) -> [Float] {
    var c = [Float](repeating: 0, count: m * n)
    gemm(a, b, into: &c, m: m, n: n, k: k, transA: transA, transB: transB)
    return c
  }
}
