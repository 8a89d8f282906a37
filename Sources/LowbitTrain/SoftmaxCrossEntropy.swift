#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif
import LowbitCore

/// Softmax cross-entropy of logits `z` [N, C] against integer labels, averaged over the batch:
/// `L = (1/N) sum_n (log sum_j exp(z[n, j]) - z[n, y_n])`, computed as
/// `m + log sum_j exp(z[n, j] - m)` with `m = max_j z[n, j]` so that no exponential overflows.
/// Its gradient is `dL/dz[n, j] = (softmax(z[n])_j - [j == y_n]) / N`.
public struct SoftmaxCrossEntropy: Sendable {
  /// The mean loss.
  public let value: Float
  /// `dL/dz`, shaped like the logits.
  public let gradient: Tensor
  /// Rows whose largest logit is the label (ties count for the first largest).
  public let correct: Int

  /// Evaluates the loss; throws `invalidInput` for a shape mismatch or a label outside `0..<C`.
  public init(logits: Tensor, labels: [Int]) throws {
    guard logits.rank == 2, logits.dtype.isFloatingPoint else {
      throw LowbitError.invalidInput("softmax cross-entropy needs float logits [N, C], got \(logits.description)")
    }
    let n = logits.shape[0], c = logits.shape[1]
    guard labels.count == n else {
      throw LowbitError.invalidInput("\(labels.count) labels for \(n) rows of logits")
    }
    if let bad = labels.first(where: { $0 < 0 || $0 >= c }) {
      throw LowbitError.invalidInput("label \(bad) is outside 0..<\(c)")
    }
    let z = logits.floats
    var grad = [Float](repeating: 0, count: z.count)
    var total = 0.0
    var correct = 0
    for row in 0..<n {
      let base = row * c
      var m = -Double.infinity, arg = 0
      for j in 0..<c where Double(z[base + j]) > m { m = Double(z[base + j]); arg = j }
      var s = 0.0
      for j in 0..<c { s += exp(Double(z[base + j]) - m) }
      total += m + log(s) - Double(z[base + labels[row]])
      for j in 0..<c {
        let p = exp(Double(z[base + j]) - m) / s
        grad[base + j] = Float((p - (j == labels[row] ? 1 : 0)) / Double(n))
      }
      if arg == labels[row] { correct += 1 }
    }
    value = n > 0 ? Float(total / Double(n)) : 0
    gradient = Tensor(shape: logits.shape, floats: grad)
    self.correct = correct
  }
}
