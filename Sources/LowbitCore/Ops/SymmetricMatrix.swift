import CBLAS
import Dispatch

/// A dense symmetric `n x n` matrix in Float64, row-major with both triangles stored: the Gram
/// matrices `sum x^T x` and Hessians of second-order weight rounding (GPTQ), with the Cholesky
/// factorization and inverse it needs, through OpenBLAS (LAPACK's `dpotrf`, `dpotri`).
///
/// LAPACK works column-major; a symmetric matrix reads the same either way, and the lower factor
/// `L` it writes column-major (`A = L L^T`) is, read row-major, the upper factor `U = L^T` with
/// `A = U^T U`.
public struct SymmetricMatrix: Sendable, Equatable {
  public let n: Int
  /// `n * n` values, `values[i * n + j] == values[j * n + i]`.
  public private(set) var values: [Double]

  /// The zero matrix.
  public init(zeros n: Int) {
    precondition(n >= 0, "SymmetricMatrix: negative size \(n)")
    self.n = n
    values = [Double](repeating: 0, count: n * n)
  }

  /// The matrix of `values` (`n * n`, row-major), made exactly symmetric as `(A + A^T) / 2`.
  public init(n: Int, values: [Double]) {
    precondition(values.count == n * n, "SymmetricMatrix: \(values.count) values for \(n) x \(n)")
    self.n = n
    self.values = values
    for i in 0..<n {
      for j in (i + 1)..<max(n, i + 1) {
        let m = (values[i * n + j] + values[j * n + i]) / 2
        self.values[i * n + j] = m
        self.values[j * n + i] = m
      }
    }
  }

  public subscript(i: Int, j: Int) -> Double { values[i * n + j] }

  /// The diagonal.
  public var diagonal: [Double] { (0..<n).map { values[$0 * n + $0] } }

  /// `A[i, i] = value` (the diagonal only, so the matrix stays symmetric).
  public mutating func setDiagonal(_ i: Int, to value: Double) { values[i * n + i] = value }

  /// `A[i, i] += value` for every `i`.
  public mutating func addToDiagonal(_ value: Double) {
    for i in 0..<n { values[i * n + i] += value }
  }

  /// `A = scale * A`.
  public mutating func scale(by factor: Double) {
    for e in values.indices { values[e] *= factor }
  }

  /// `A += alpha * X^T X` for the `rows` rows of `x` (`[rows, n]`, row-major, Float), in Float64:
  /// the upper triangle by column blocks on every kernel thread (each block `A[0..<j1, j0..<j1]`
  /// is one `dgemm`, the blocks sized for equal work), then mirrored into the lower one.
  public mutating func addGram(_ x: [Float], rows: Int, alpha: Double = 1) {
    precondition(x.count >= rows * n, "SymmetricMatrix.addGram: \(x.count) values for \(rows) rows of \(n)")
    guard rows > 0, n > 0 else { return }
    _ = configureBLAS
    let n = self.n
    let chunk = max(1, min(rows, (1 << 22) / n))  // about 32 MiB of Float64 rows at a time
    let threads = max(1, min(kernelThreadCount, n / 64))
    // Column j costs j + 1 dot products: block b ends at n * sqrt((b + 1) / threads).
    let ends = (0...threads).map { b in b == threads ? n : Int((Double(n) * (Double(b) / Double(threads)).squareRoot()).rounded()) }
    var xd = [Double](repeating: 0, count: chunk * n)
    values.withUnsafeMutableBufferPointer { a in
      let sa = SharedBuffer(a)
      for start in stride(from: 0, to: rows, by: chunk) {
        let m = min(chunk, rows - start)
        for e in 0..<(m * n) { xd[e] = Double(x[start * n + e]) }
        xd.withUnsafeBufferPointer { xs in
          // Safety: block b writes rows 0..<j1 of columns j0..<j1 of A; the blocks' columns are
          // disjoint; X (m x n, ld n) is only read.
          let sx = SharedBuffer(xs)
          let work = { @Sendable (b: Int) in
            let (j0, j1) = (ends[b], ends[b + 1])
            guard j0 < j1 else { return }
            let (px, pa) = (UnsafePointer(sx.pointer()), sa.pointer())
            cblas_dgemm(
              CblasRowMajor, CblasTrans, CblasNoTrans, Int32(j1), Int32(j1 - j0), Int32(m), alpha, px, Int32(n),
              px + j0, Int32(n), 1, pa + j0, Int32(n))
          }
          if threads == 1 { work(0) } else { DispatchQueue.concurrentPerform(iterations: threads, execute: work) }
        }
      }
    }
    for i in 0..<n {
      for j in 0..<i { values[i * n + j] = values[j * n + i] }
    }
  }

  /// The upper Cholesky factor `U` (row-major, zeros below the diagonal) with `A = U^T U`, or nil
  /// when `A` is not positive definite (LAPACK `dpotrf`).
  public func choleskyUpper() -> [Double]? {
    var u = values
    guard n == 0 || Self.lapackFactor(&u, n) else { return nil }
    for i in 0..<n {
      for j in 0..<i { u[i * n + j] = 0 }
    }
    return u
  }

  /// `A^-1`, or nil when `A` is not positive definite (LAPACK `dpotrf`, then `dpotri`).
  public func inverse() -> SymmetricMatrix? {
    var a = values
    guard n > 0 else { return self }
    guard Self.lapackFactor(&a, n) else { return nil }
    var (size, info) = (Int32(n), Int32(0))
    // Row-major upper = column-major lower: dpotri("L") inverts from the factor dpotrf("L") left.
    dpotri_("L", &size, &a, &size, &info, 1)
    guard info == 0 else { return nil }
    // The inverse is in the row-major upper triangle; the lower one still holds A.
    for i in 0..<n {
      for j in 0..<i { a[i * n + j] = a[j * n + i] }
    }
    var result = self
    result.values = a
    return result
  }

  /// The same factor as `choleskyUpper` by the textbook loop (`U[i, i] = sqrt(A[i, i] - sum_k
  /// U[k, i]^2)`, `U[i, j] = (A[i, j] - sum_k U[k, i] U[k, j]) / U[i, i]`): the reference the
  /// LAPACK path is tested against.
  public func referenceCholeskyUpper() -> [Double]? {
    var u = [Double](repeating: 0, count: n * n)
    for i in 0..<n {
      var d = values[i * n + i]
      for k in 0..<i { d -= u[k * n + i] * u[k * n + i] }
      guard d > 0, d.isFinite else { return nil }
      let r = d.squareRoot()
      u[i * n + i] = r
      for j in (i + 1)..<max(n, i + 1) {
        var s = values[i * n + j]
        for k in 0..<i { s -= u[k * n + i] * u[k * n + j] }
        u[i * n + j] = s / r
      }
    }
    return u
  }

  /// `dpotrf("L")` on column-major `a` (the row-major upper factor), true when it succeeded.
  private static func lapackFactor(_ a: inout [Double], _ n: Int) -> Bool {
    _ = configureBLAS
    var (size, info) = (Int32(n), Int32(0))
    dpotrf_("L", &size, &a, &size, &info, 1)
    return info == 0
  }
}

/// `C = alpha * op(A) B + beta * C` on row-major Float64 arrays: `op(A)` is `[m, k]` (A stored
/// `[k, m]` when `transA`), B is `[k, n]`, C is `[m, n]`, each starting at its offset with its
/// leading dimension (OpenBLAS `dgemm`). The extents are checked before the call.
public func gemm64(
  transA: Bool, m: Int, n: Int, k: Int, alpha: Double = 1, a: [Double], aOffset: Int = 0, lda: Int,
  b: [Double], bOffset: Int = 0, ldb: Int, beta: Double = 0, c: inout [Double], cOffset: Int = 0, ldc: Int
) {
  guard m > 0, n > 0 else { return }
  if k == 0 {
    for i in 0..<m { for j in 0..<n { c[cOffset + i * ldc + j] *= beta } }
    return
  }
  let (aRows, aColumns) = transA ? (k, m) : (m, k)
  precondition(lda >= max(aColumns, 1) && ldb >= n && ldc >= n, "gemm64: leading dimension too short")
  precondition(aOffset >= 0 && bOffset >= 0 && cOffset >= 0, "gemm64: negative offset")
  precondition(aOffset + (aRows - 1) * lda + aColumns <= a.count && bOffset + (k - 1) * ldb + n <= b.count,
               "gemm64: A or B shorter than its extent")
  precondition(cOffset + (m - 1) * ldc + n <= c.count, "gemm64: C shorter than its extent")
  _ = configureBLAS
  a.withUnsafeBufferPointer { pa in
    b.withUnsafeBufferPointer { pb in
      c.withUnsafeMutableBufferPointer { pc in
        // Safety: the extents were checked against the arrays above.
        cblas_dgemm(
          CblasRowMajor, transA ? CblasTrans : CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k), alpha,
          pa.baseAddress! + aOffset, Int32(lda), pb.baseAddress! + bOffset, Int32(ldb), beta, pc.baseAddress! + cOffset,
          Int32(ldc))
      }
    }
  }
}
