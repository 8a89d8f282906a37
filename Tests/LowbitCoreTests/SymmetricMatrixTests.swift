import LowbitCore
import LowbitTestSupport
import Testing

@Suite struct SymmetricMatrixTests {
  /// A positive definite matrix `B^T B + I` of size `n`.
  private func positiveDefinite(_ n: Int, seed: UInt64) -> SymmetricMatrix {
    let b = randomTensor([n + 3, n], seed: seed).floats
    var a = SymmetricMatrix(zeros: n)
    a.addGram(b, rows: n + 3)
    a.addToDiagonal(1)
    return a
  }

  /// LAPACK's factor is the textbook loop's, `U^T U` gives `A` back, and `A A^-1 = I`.
  @Test(arguments: [1, 5, 70, 200]) func choleskyAndInverse(n: Int) throws {
    let a = positiveDefinite(n, seed: UInt64(n))
    let u = try #require(a.choleskyUpper())
    let reference = try #require(a.referenceCholeskyUpper())
    #expect(zip(u, reference).allSatisfy { abs($0 - $1) <= 1e-10 * max(1, abs($1)) })
    for i in 0..<n { for j in 0..<i { #expect(u[i * n + j] == 0) } }
    var product = [Double](repeating: 0, count: n * n)
    gemm64(transA: true, m: n, n: n, k: n, a: u, lda: n, b: u, ldb: n, c: &product, ldc: n)
    #expect(zip(product, a.values).allSatisfy { abs($0 - $1) <= 1e-9 * max(1, abs($1)) })
    let inverse = try #require(a.inverse())
    var identity = [Double](repeating: 0, count: n * n)
    gemm64(transA: false, m: n, n: n, k: n, a: a.values, lda: n, b: inverse.values, ldb: n, c: &identity, ldc: n)
    for i in 0..<n { for j in 0..<n { #expect(abs(identity[i * n + j] - (i == j ? 1 : 0)) < 1e-9) } }
    for i in 0..<n { for j in 0..<n { #expect(inverse[i, j] == inverse[j, i]) } }
  }

  /// `addGram` is `sum x^T x` in Float64, on one thread or several, in chunks or not.
  @Test func gramMatchesTheDirectSum() {
    let (rows, n) = (300, 130)
    let x = randomTensor([rows, n], seed: 4).floats
    var a = SymmetricMatrix(zeros: n)
    a.addGram(Array(x[..<(100 * n)]), rows: 100)
    a.addGram(Array(x[(100 * n)...]), rows: 200, alpha: 1)
    for (i, j) in [(0, 0), (5, 129), (129, 5), (64, 77), (128, 128)] {
      let direct = (0..<rows).reduce(0.0) { $0 + Double(x[$1 * n + i]) * Double(x[$1 * n + j]) }
      #expect(abs(a[i, j] - direct) <= 1e-10 * abs(direct) + 1e-12)
    }
    #expect(a == SymmetricMatrix(n: n, values: a.values))
  }

  /// Not positive definite: no factor, no inverse.
  @Test func indefiniteMatrixHasNoFactor() {
    let a = SymmetricMatrix(n: 2, values: [1, 2, 2, 1])
    #expect(a.choleskyUpper() == nil)
    #expect(a.referenceCholeskyUpper() == nil)
    #expect(a.inverse() == nil)
  }
}
