import Foundation
import LowbitCore

/// The losses that compare a quantized model's (or block's) outputs `y` with the float model's
/// `t`, and their gradients with respect to `y`.
enum OutputLoss {
  /// Rows of an output: its elements over its channels (axis 1; the last axis of a rank-3 value).
  static func rows(_ shape: [Int]) -> Int {
    let count = shape.reduce(1, *)
    guard shape.count >= 2 else { return max(count, 1) }
    return max(count / max(shape[shape.count == 3 ? 2 : 1], 1), 1)
  }

  /// `(1/R) sum (y - t)^2` over the R rows of `y` (summed over channels), gradient `2 (y - t) / R`.
  static func meanSquared(_ y: Tensor, _ t: Tensor) -> (loss: Double, gradient: Tensor) {
    let ys = y.floats, ts = t.floats
    let scale = 1 / Float(rows(y.shape))
    var g = [Float](repeating: 0, count: ys.count)
    var sum: Double = 0
    for i in ys.indices {
      let d = ys[i] - ts[i]
      sum += Double(d * d)
      g[i] = 2 * scale * d
    }
    return (sum * Double(scale), Tensor(shape: y.shape, floats: g))
  }

  /// For logits `y`, `t` of shape [N, C]: the mean over rows of
  /// `KL(softmax(t) || softmax(y)) = sum_c p_c (log p_c - log q_c)`, gradient `(q - p) / N`.
  static func divergence(_ y: Tensor, _ t: Tensor) -> (loss: Double, gradient: Tensor) {
    let n = y.shape[0], c = y.shape[1], ys = y.floats, ts = t.floats
    var g = [Float](repeating: 0, count: ys.count)
    var total: Double = 0
    for r in 0..<n {
      let lp = logSoftmax(ts[(r * c)..<((r + 1) * c)]), lq = logSoftmax(ys[(r * c)..<((r + 1) * c)])
      for j in 0..<c {
        let p = exp(lp[j]), q = exp(lq[j])
        total += p * (lp[j] - lq[j])
        g[r * c + j] = Float((q - p) / Double(n))
      }
    }
    return (total / Double(max(n, 1)), Tensor(shape: y.shape, floats: g))
  }

  /// Whether the float model's outputs `t` (batches of one graph output) are logits: [N, C]
  /// with C >= 2 whose rows are not already normalized. Rows of unit L2 norm (sentence
  /// embeddings) and nonnegative rows that sum to 1 (probabilities) are not: a softmax over them
  /// flattens their differences, so they are compared by the mean square.
  static func isLogits(_ t: [Tensor]) -> Bool {
    guard let shape = t.first?.shape, shape.count == 2, shape[1] >= 2 else { return false }
    func normalized(_ row: ArraySlice<Float>) -> Bool {
      let norm = row.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
      let sum = row.reduce(0.0) { $0 + Double($1) }
      return abs(norm - 1) < 1e-3 || (row.allSatisfy { $0 >= 0 } && abs(sum - 1) < 1e-3)
    }
    return !t.allSatisfy { batch in
      let c = batch.shape[1], v = batch.floats
      return (0..<batch.shape[0]).allSatisfy { normalized(v[($0 * c)..<(($0 + 1) * c)]) }
    }
  }

  /// Logits take the divergence; anything else the mean square.
  static func compare(_ y: Tensor, _ t: Tensor, logits: Bool) -> (loss: Double, gradient: Tensor) {
    logits ? divergence(y, t) : meanSquared(y, t)
  }

  static func logSoftmax(_ z: ArraySlice<Float>) -> [Double] {
    let m = Double(z.max() ?? 0)
    let sum = z.reduce(0.0) { $0 + exp(Double($1) - m) }
    let log = Foundation.log(sum)
    return z.map { Double($0) - m - log }
  }
}
