import Dispatch
import CBLAS

/// Row-major single-precision GEMM through OpenBLAS: `C = alpha * op(A) * op(B) + beta * C`,
/// with `op(A)` of shape [m, k] and `op(B)` of shape [k, n].
///
/// Safety: callers pass buffers holding at least the elements the leading dimensions address.
@inlinable
func sgemm(
  transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
  a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
  beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
) {
  if m == 0 || n == 0 { return }
  if k == 0 {
    for i in 0..<m { for j in 0..<n { c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j] } }
    return
  }
  #if LOWBIT_SGEMM_PROBE
    sgemmProbe(transA: transA, transB: transB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc)
  #endif
  cblas_sgemm(
    CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// The same GEMM with the columns of B and C split across worker threads (OpenBLAS itself runs
/// single-threaded, so the split is the only parallelism and results do not depend on timing).
@inlinable
func parallelSgemm(
  transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
  a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
  beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
) {
  let blocks = min(kernelThreadCount, max(1, n / 64))
  if blocks <= 1 || m * n * k < 1 << 18 {
    sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
          b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
    return
  }
  // The extents the leading dimensions address (the last row only as long as it is used).
  let aCount = transA ? (k - 1) * lda + m : (m - 1) * lda + k
  let bCount = transB ? (n - 1) * ldb + k : (k - 1) * ldb + n
  let (sa, sb) = (SharedBuffer(start: a, count: aCount), SharedBuffer(start: b, count: bCount))
  let sc = SharedBuffer(start: c, count: (m - 1) * ldc + n)
  DispatchQueue.concurrentPerform(iterations: blocks) { blk in
    let j0 = n * blk / blocks, j1 = n * (blk + 1) / blocks
    guard j0 < j1 else { return }
    let a = UnsafePointer(sa.pointer()), b = UnsafePointer(sb.pointer()), c = sc.pointer()
    // Column block j0..<j1 of op(B): row-major B[k, n] starts at column j0; B^T[n, k] at row j0.
    let bBlock = transB ? b + j0 * ldb : b + j0
    sgemm(transA: transA, transB: transB, m: m, n: j1 - j0, k: k, alpha: alpha, a: a, lda: lda,
          b: bBlock, ldb: ldb, beta: beta, c: c + j0, ldc: ldc)
  }
}

/// `sgemm` and `parallelSgemm` as positional functions with one signature, to pick at run time:
/// (transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc).
typealias GemmFunction = @Sendable (
  Bool, Bool, Int, Int, Int, Float, UnsafePointer<Float>, Int, UnsafePointer<Float>, Int, Float,
  UnsafeMutablePointer<Float>, Int
) -> Void

let sgemm: GemmFunction = {
  sgemm(transA: $0, transB: $1, m: $2, n: $3, k: $4, alpha: $5, a: $6, lda: $7, b: $8, ldb: $9, beta: $10, c: $11, ldc: $12)
}
let parallelSgemm: GemmFunction = {
  parallelSgemm(transA: $0, transB: $1, m: $2, n: $3, k: $4, alpha: $5, a: $6, lda: $7, b: $8, ldb: $9, beta: $10, c: $11, ldc: $12)
}

/// Makes OpenBLAS single-threaded once; lowbit parallelizes around it.
let configureBLAS: Void = {
  openblas_set_num_threads(1)
}()

#if LOWBIT_SGEMM_PROBE
  import Foundation
  #if canImport(Glibc)
    import Glibc
  #endif

  /// Probe: every row sgemm addresses must be live, unpoisoned memory (AddressSanitizer's
  /// shadow), and the leading dimensions must be at least the row lengths.
  @usableFromInline
  let asanRegionIsPoisoned: (@convention(c) (UnsafeMutableRawPointer?, Int) -> UnsafeMutableRawPointer?)? = {
    guard let f = dlsym(nil, "__asan_region_is_poisoned") else {  // RTLD_DEFAULT
      fputs("SGEMM PROBE: no __asan_region_is_poisoned, checking row ends only\n", stderr)
      return nil
    }
    let probe = unsafeBitCast(f, to: (@convention(c) (UnsafeMutableRawPointer?, Int) -> UnsafeMutableRawPointer?).self)
    let t = UnsafeMutablePointer<Float>.allocate(capacity: 4)
    let inside = probe(UnsafeMutableRawPointer(t), 16), past = probe(UnsafeMutableRawPointer(t), 20)
    t.deallocate()
    let freed = probe(UnsafeMutableRawPointer(t), 16)
    fputs("SGEMM PROBE: checking every row with __asan_region_is_poisoned (self-test: inside \(inside == nil ? "clean" : "POISONED"), one past \(past == nil ? "MISSED" : "poisoned"), freed \(freed == nil ? "MISSED" : "poisoned"))\n", stderr)
    return unsafeBitCast(f, to: (@convention(c) (UnsafeMutableRawPointer?, Int) -> UnsafeMutableRawPointer?).self)
  }()

  @usableFromInline
  func sgemmProbe(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    c: UnsafeMutablePointer<Float>, ldc: Int
  ) {
    let (aRows, aCols) = transA ? (k, m) : (m, k)
    let (bRows, bCols) = transB ? (n, k) : (k, n)
    func fail(_ what: String) -> Never {
      let msg = "SGEMM PROBE: \(what): transA \(transA) transB \(transB) m \(m) n \(n) k \(k) lda \(lda) ldb \(ldb) ldc \(ldc)\n"
        + Thread.callStackSymbols.joined(separator: "\n") + "\n"
      fputs(msg, stderr)
      fatalError(what)
    }
    if m < 0 || n < 0 || k < 0 { fail("negative size") }
    if lda < max(1, aCols) { fail("lda < \(aCols)") }
    if ldb < max(1, bCols) { fail("ldb < \(bCols)") }
    if ldc < max(1, n) { fail("ldc < \(n)") }
    func check(_ p: UnsafeRawPointer, rows: Int, cols: Int, ld: Int, _ name: String) {
      guard rows > 0, cols > 0 else { return }
      for r in 0..<rows {
        let row = p + 4 * r * ld
        if let probe = asanRegionIsPoisoned {
          if let bad = probe(UnsafeMutableRawPointer(mutating: row), 4 * cols) {
            fputs("SGEMM PROBE: \(name) row \(r) of \(rows) (\(cols) floats, ld \(ld)) poisoned at byte \(bad - UnsafeMutableRawPointer(mutating: row))\n", stderr)
            // Touch the bad byte so AddressSanitizer reports the allocation.
            _ = bad.load(as: UInt8.self)
            fail("\(name) out of bounds")
          }
        } else {
          _ = row.load(as: Float.self)
          _ = (row + 4 * (cols - 1)).load(as: Float.self)
        }
      }
    }
    check(a, rows: aRows, cols: aCols, ld: lda, "A")
    check(b, rows: bRows, cols: bCols, ld: ldb, "B")
    check(c, rows: m, cols: n, ld: ldc, "C")
  }
#endif
