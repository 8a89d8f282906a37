import Foundation
import Testing

@testable import LowbitQuant

@Suite struct MetricsTests {
  /// KL(p || q) for two rows against the formula: identical rows give 0; logits (0, 0) against
  /// (log 3, 0), i.e. p = (1/2, 1/2) and q = (3/4, 1/4), give 1/2 log(2/3) + 1/2 log 2.
  @Test func klDivergenceMatchesTheFormula() {
    let r: [Float] = [0, 0, 5, -1]
    let q: [Float] = [Float(log(3.0)), 0, 5, -1]
    let expected = (0.5 * log(2.0 / 3.0) + 0.5 * log(2.0)) / 2
    #expect(abs(Metrics.meanKLDivergence(reference: r, quantized: q, width: 2) - expected) < 1e-7)
    #expect(Metrics.meanKLDivergence(reference: r, quantized: r, width: 2) == 0)
    // Shifting a row by a constant leaves its softmax, so the divergence, unchanged.
    #expect(abs(Metrics.meanKLDivergence(reference: [1, 2, 3], quantized: [101, 102, 103], width: 3)) < 1e-12)
  }
}
