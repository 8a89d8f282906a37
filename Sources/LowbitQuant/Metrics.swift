/// Measures of how far quantized outputs are from float ones.
public enum Metrics {
  /// Signal-to-quantization-noise ratio in dB: `10 log10(sum r^2 / sum (r - q)^2)`
  /// (infinite when the outputs are identical).
  public static func sqnr(reference r: [Float], quantized q: [Float]) -> Double {
    precondition(r.count == q.count, "sqnr: \(r.count) vs \(q.count) values")
    var sums = SQNRSums()
    sums.add(reference: r, quantized: q)
    return sums.decibels
  }

  /// Mean over rows of the cosine similarity of each row of `r` and `q` (rows of `width`).
  public static func meanCosine(reference r: [Float], quantized q: [Float], width: Int) -> Double {
    precondition(r.count == q.count && width > 0 && r.count % width == 0, "meanCosine: bad sizes")
    let rows = r.count / width
    guard rows > 0 else { return 1 }
    var total = 0.0
    for i in 0..<rows {
      var dot = 0.0, na = 0.0, nb = 0.0
      for j in 0..<width {
        let a = Double(r[i * width + j]), b = Double(q[i * width + j])
        dot += a * b
        na += a * a
        nb += b * b
      }
      total += (na == 0 && nb == 0) ? 1 : dot / max((na * nb).squareRoot(), .leastNormalMagnitude)
    }
    return total / Double(rows)
  }

  /// Mean over rows (of `width`) of `KL(softmax(r) || softmax(q)) = sum_j p_j (log p_j - log q_j)`
  /// in nats, each log-softmax computed in double with the row's maximum subtracted.
  public static func meanKLDivergence(reference r: [Float], quantized q: [Float], width: Int) -> Double {
    precondition(r.count == q.count && width > 0 && r.count % width == 0, "meanKLDivergence: bad sizes")
    let rows = r.count / width
    guard rows > 0 else { return 0 }
    func logSoftmax(_ v: [Float], _ row: Int) -> [Double] {
      let z = (0..<width).map { Double(v[row * width + $0]) }
      let m = z.max() ?? 0
      let lse = m + log(z.reduce(0) { $0 + exp($1 - m) })
      return z.map { $0 - lse }
    }
    var total = 0.0
    for i in 0..<rows {
      let lp = logSoftmax(r, i), lq = logSoftmax(q, i)
      for j in 0..<width { total += exp(lp[j]) * (lp[j] - lq[j]) }
    }
    return total / Double(rows)
  }

  /// Fraction of rows (of `width`) whose arg-max agrees.
  public static func argmaxAgreement(_ a: [Float], _ b: [Float], width: Int) -> Double {
    precondition(a.count == b.count && width > 0 && a.count % width == 0, "argmaxAgreement: bad sizes")
    let rows = a.count / width
    guard rows > 0 else { return 1 }
    func argmax(_ v: [Float], _ row: Int) -> Int {
      var best = 0
      for j in 1..<width where v[row * width + j] > v[row * width + best] { best = j }
      return best
    }
    return Double((0..<rows).filter { argmax(a, $0) == argmax(b, $0) }.count) / Double(rows)
  }
}

#if canImport(Glibc)
  import Glibc
#endif

/// The running sums of an SQNR over many tensors: `10 log10(sum r^2 / sum (r - q)^2)` in dB,
/// infinite when every pair is identical.
public struct SQNRSums: Sendable, Equatable {
  public var signal = 0.0
  public var noise = 0.0

  public init() {}

  public mutating func add(reference r: [Float], quantized q: [Float]) {
    for (a, b) in zip(r, q) {
      signal += Double(a) * Double(a)
      noise += (Double(a) - Double(b)) * (Double(a) - Double(b))
    }
  }

  public var decibels: Double { noise == 0 ? .infinity : 10 * log10(max(signal, .leastNormalMagnitude) / noise) }
}
