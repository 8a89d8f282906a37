import Glibc
import LowbitCore

/// Range setting from exact values (weights), from logits (cross-entropy) and from batch
/// normalization statistics (data-free), white paper sec. 3.1. Each function returns a finite
/// range with `lower <= upper` (`0...0` when there is nothing to go on); the scale and zero
/// point follow from `UniformQuantizer.params(lower:upper:grid:symmetric:powerOfTwo:)`.
///
/// For per-channel or per-group weights, split the tensor with `TensorQuantizer.partition` and
/// call `weightRange` once per part.
public enum RangeSearch {
  // MARK: - Weights

  /// The clipping range of `values` (exact, no histogram):
  ///
  /// | method                      | range                                                          |
  /// |-----------------------------|----------------------------------------------------------------|
  /// | `minMax`, `runningMinMax`   | `[min w, max w]` (a weight tensor is a single batch)           |
  /// | `percentile`                | signed symmetric `+-P_p(abs(w))`, unsigned symmetric           |
  /// |                             | `[0, P_p(w)]`, asymmetric `[P_(100-p)(w), P_p(w)]`             |
  /// | `mse`                       | `argmin sum (w - fq(w))^2` over the candidates of              |
  /// |                             | `ClippingSearch` (fractions `i / 100` of the min-max extent)   |
  ///
  /// `P_p` interpolates linearly between order statistics: with the values sorted,
  /// `P_p = w[k] + (h - k) (w[k + 1] - w[k])` for `h = (n - 1) p / 100`, `k = floor(h)`.
  /// The MSE error is the one `UniformQuantizer.fakeQuantize` gives, i.e. what a runtime
  /// computes; min-max is always a candidate, so MSE never has a larger error than min-max.
  ///
  /// Non-finite values are left out of the range (a runtime saturates infinities and sends NaN
  /// to the zero point); reject them beforehand where they must not occur. Empty input gives
  /// `0...0`. `crossEntropy` and `bnBased` are not defined on values alone (a precondition:
  /// `QuantConfig.validate` rejects them for weights); `percentile` must lie in `(0, 100]`.
  public static func weightRange(
    _ values: [Float], method: RangeMethod, grid: IntegerGrid, symmetric: Bool,
    percentile: Double = 99.99
  ) -> ClosedRange<Float> {
    precondition(
      method.isComputableFromValues, "weight range '\(method.rawValue)' needs more than the weights"
    )
    precondition(percentile > 0 && percentile <= 100, "percentile \(percentile) outside (0, 100]")
    let finite = values.allSatisfy(\.isFinite) ? values : values.filter(\.isFinite)
    guard let lower = finite.min(), let upper = finite.max() else { return 0...0 }
    switch method {
    case .minMax, .runningMinMax, .crossEntropy, .bnBased:
      return lower...upper
    case .percentile:
      return percentileRange(finite, percentile, grid: grid, symmetric: symmetric)
    case .mse:
      return ClippingSearch.search(lower: lower, upper: upper, grid: grid, symmetric: symmetric) {
        squaredError(finite, $0, grid)
      }
    }
  }

  /// `sum (w - fq(w))^2` over the finite values for the quantizer fitted to `range` by
  /// `UniformQuantizer.params(lower:upper:grid:symmetric:powerOfTwo:)` (in `Double`).
  public static func squaredError(
    _ values: [Float], range: ClosedRange<Float>, grid: IntegerGrid, symmetric: Bool,
    powerOfTwo: Bool = false
  ) -> Double {
    let p = UniformQuantizer.params(
      lower: range.lowerBound, upper: range.upperBound, grid: grid, symmetric: symmetric,
      powerOfTwo: powerOfTwo)
    return squaredError(values.filter(\.isFinite), p, grid)
  }

  static func squaredError(_ values: [Float], _ p: QuantParams, _ grid: IntegerGrid) -> Double {
    var total = 0.0
    for w in values {
      let e = Double(w) - Double(UniformQuantizer.fakeQuantize(w, p, grid))
      total += e * e
    }
    return total
  }

  /// The p-th percentile of `sorted` (ascending, non-empty), linear between order statistics.
  static func percentile(_ p: Double, ofSorted sorted: [Float]) -> Float {
    if p >= 100 { return sorted[sorted.count - 1] }
    if p <= 0 { return sorted[0] }
    let h = Double(sorted.count - 1) * p / 100
    let k = Int(h.rounded(.down))
    guard k + 1 < sorted.count else { return sorted[k] }
    let t = h - Double(k)
    return Float(Double(sorted[k]) + t * (Double(sorted[k + 1]) - Double(sorted[k])))
  }

  private static func percentileRange(
    _ values: [Float], _ p: Double, grid: IntegerGrid, symmetric: Bool
  ) -> ClosedRange<Float> {
    if symmetric && grid.signed {
      let a = percentile(p, ofSorted: values.map { abs($0) }.sorted())
      return -a...a
    }
    let sorted = values.sorted()
    let upper = percentile(p, ofSorted: sorted)
    if symmetric { return 0...max(upper, 0) }
    let lower = percentile(100 - p, ofSorted: sorted)
    return min(lower, upper)...max(lower, upper)
  }

  /// Throws `invalidArgument` unless `p` lies in `(0, 100]`.
  static func checkPercentile(_ p: Double, name: String) throws {
    guard p > 0 && p <= 100 else {
      throw LowbitError.invalidArgument("\(name): percentile must be in (0, 100], got \(p)")
    }
  }

  // MARK: - Cross-entropy (logits)

  /// The clipping range of a classifier's logits that best keeps its predicted distribution
  /// (white paper sec. 3.1, "Cross entropy"):
  /// `argmin_range (1 / N) sum_n CE(softmax(x_n), softmax(fq(x_n)))` with
  /// `CE(p, q) = -sum_c p_c log q_c`, over the same candidates as MSE (`ClippingSearch`).
  ///
  /// `logits` holds N rows of `classes` values (row-major, the class axis last). Minimizing CE
  /// is minimizing `KL(p || q)`, since `CE = H(p) + KL(p || q)` and `H(p)` does not depend on the
  /// range. Min-max is a candidate, so the result's CE is never above min-max's. Rows with a
  /// non-finite logit are left out (`RangeObserver.checkFinite` rejects them first). Requires
  /// `classes >= 1` and `logits.count` a multiple of it (a precondition).
  public static func crossEntropyRange(
    logits: [Float], classes: Int, grid: IntegerGrid, symmetric: Bool
  ) -> ClosedRange<Float> {
    let targets = SoftmaxTargets(logits: logits, classes: classes)
    guard let lower = targets.logits.min(), let upper = targets.logits.max() else { return 0...0 }
    return ClippingSearch.search(lower: lower, upper: upper, grid: grid, symmetric: symmetric) {
      targets.crossEntropy($0, grid)
    }
  }

  /// `(1 / N) sum_n CE(softmax(x_n), softmax(fq(x_n)))` for the quantizer fitted to `range`
  /// (natural log; rows with a non-finite logit left out; 0 for no rows).
  public static func crossEntropy(
    logits: [Float], classes: Int, range: ClosedRange<Float>, grid: IntegerGrid, symmetric: Bool
  ) -> Double {
    let p = UniformQuantizer.params(
      lower: range.lowerBound, upper: range.upperBound, grid: grid, symmetric: symmetric)
    return SoftmaxTargets(logits: logits, classes: classes).crossEntropy(p, grid)
  }

  // MARK: - BN-based (data-free)

  /// The range of the activation after a batch normalization, from its parameters alone
  /// (white paper sec. 3.1, "BN based"): per channel c the output is taken to have mean
  /// `beta_c` and standard deviation `abs(gamma_c)`, and
  ///
  ///     lower = min_c (beta_c - alpha abs(gamma_c)),  upper = max_c (beta_c + alpha abs(gamma_c)).
  ///
  /// `alpha` is how many standard deviations to keep; the paper uses `alpha = 6`, which clips
  /// almost nothing of a Gaussian. With `followedByReLU` the quantizer sees `max(x, 0)`, so the
  /// range becomes `[max(lower, 0), max(upper, 0)]`. Channels with a non-finite gamma or beta are
  /// left out; no channels gives `0...0`.
  public static func batchNormRange(
    _ stats: BatchNormStatistics, alpha: Float = 6, followedByReLU: Bool
  ) -> ClosedRange<Float> {
    batchNormRange(
      gamma: stats.gamma, beta: stats.beta, alpha: alpha, followedByReLU: followedByReLU)
  }

  /// `batchNormRange` from the per-channel `gamma` and `beta` (equal counts; `alpha` finite and
  /// positive, both preconditions).
  public static func batchNormRange(
    gamma: [Float], beta: [Float], alpha: Float = 6, followedByReLU: Bool
  ) -> ClosedRange<Float> {
    precondition(
      gamma.count == beta.count, "BN gamma has \(gamma.count) channels, beta \(beta.count)")
    precondition(
      alpha.isFinite && alpha > 0, "BN-based range alpha \(alpha) must be finite and positive")
    var lower = Float.infinity
    var upper = -Float.infinity
    for (g, b) in zip(gamma, beta) where g.isFinite && b.isFinite {
      let lo = b - alpha * abs(g)
      let hi = b + alpha * abs(g)
      guard lo.isFinite && hi.isFinite else { continue }
      lower = min(lower, lo)
      upper = max(upper, hi)
    }
    guard lower <= upper else { return 0...0 }
    return followedByReLU ? max(lower, 0)...max(upper, 0) : lower...upper
  }
}

/// The float model's softmax per row, kept for scoring candidate quantizers of the logits.
struct SoftmaxTargets {
  let classes: Int
  /// The rows whose logits are all finite, concatenated.
  let logits: [Float]
  /// `softmax(x_n)_c` for those rows.
  let probabilities: [Double]

  init(logits all: [Float], classes: Int) {
    precondition(
      classes >= 1 && all.count % classes == 0,
      "\(all.count) logits do not form rows of \(classes) classes")
    self.classes = classes
    var kept: [Float] = []
    var probabilities: [Double] = []
    kept.reserveCapacity(all.count)
    probabilities.reserveCapacity(all.count)
    for start in stride(from: 0, to: all.count, by: classes) {
      let row = all[start..<(start + classes)]
      guard row.allSatisfy(\.isFinite) else { continue }
      let lse = Self.logSumExp(row.lazy.map(Double.init))
      kept.append(contentsOf: row)
      probabilities.append(contentsOf: row.map { exp(Double($0) - lse) })
    }
    self.logits = kept
    self.probabilities = probabilities
  }

  /// `log sum_c exp(v_c)`, shifted by the maximum so that nothing overflows.
  static func logSumExp<S: Sequence>(_ v: S) -> Double where S.Element == Double {
    let m = v.reduce(-Double.infinity) { max($0, $1) }
    return m + log(v.reduce(0) { $0 + exp($1 - m) })
  }

  /// The mean over rows of `-sum_c p_c log softmax(fq(x))_c` for the quantizer `p`.
  func crossEntropy(_ p: QuantParams, _ grid: IntegerGrid) -> Double {
    let rows = logits.count / classes
    guard rows > 0 else { return 0 }
    var quantized = [Double](repeating: 0, count: classes)
    var total = 0.0
    for r in 0..<rows {
      let base = r * classes
      for c in 0..<classes {
        quantized[c] = Double(UniformQuantizer.fakeQuantize(logits[base + c], p, grid))
      }
      let lse = Self.logSumExp(quantized)
      var ce = 0.0
      for c in 0..<classes { ce -= probabilities[base + c] * (quantized[c] - lse) }
      total += ce
    }
    return total / Double(rows)
  }
}
