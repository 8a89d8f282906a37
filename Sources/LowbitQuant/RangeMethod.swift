/// How the clipping range `[lower, upper]` of a quantizer is chosen (white paper sec. 3.1,
/// "Quantization range setting"). The scale and zero point then follow from the range by
/// `UniformQuantizer.params(lower:upper:grid:symmetric:powerOfTwo:)`.
///
/// | method          | range `[lower, upper]`                                                | needs          |
/// |-----------------|-----------------------------------------------------------------------|----------------|
/// | `minMax`        | `[min x, max x]` over every value seen                                | values         |
/// | `runningMinMax` | moving averages of the batch minima and maxima, `r = m r + (1 - m) b` | values by batch|
/// | `percentile`    | symmetric: `+-P_p(abs(x))`; asymmetric: `[P_(100-p)(x), P_p(x)]`      | values         |
/// | `mse`           | the candidate range with the least `sum (x - fq(x))^2`                | values         |
/// | `crossEntropy`  | the candidate range with the least `mean CE(softmax(x), softmax(fq(x)))` | logits      |
/// | `bnBased`       | `[min_c (beta_c - alpha abs(gamma_c)), max_c (beta_c + alpha abs(gamma_c))]` | BN gamma, beta |
///
/// The first four need only the tensor's values (`RangeObserver.range`, `RangeSearch.weightRange`);
/// `crossEntropy` needs logits with a class axis (`RangeSearch.crossEntropyRange`) and `bnBased`
/// the statistics of the preceding batch normalization (`RangeSearch.batchNormRange`).
///
/// Ranges are returned as found; `UniformQuantizer.params` widens them to contain 0 and makes
/// them symmetric when asked, so `minMax` returns the true `[min, max]` even for a symmetric grid.
public enum RangeMethod: String, Codable, CaseIterable, Sendable {
  /// `[min x, max x]`: nothing is clipped, outliers stretch the grid (sec. 3.1, "Min-max").
  case minMax = "min-max"
  /// Exponential moving average over batches of each batch's min and max, momentum `m`
  /// (0.9 by default): `r_1 = b_1`, `r_t = m r_(t-1) + (1 - m) b_t`.
  case runningMinMax = "running-min-max"
  /// Percentiles of the values (99.99 by default), clipping the rare extremes.
  case percentile
  /// The range minimizing the squared quantization error `sum (x - fq(x))^2` (sec. 3.1,
  /// "Mean squared error").
  case mse
  /// The range minimizing the cross-entropy between the float and quantized softmax (sec. 3.1,
  /// "Cross entropy"), for the logits of a classifier.
  case crossEntropy = "cross-entropy"
  /// Data-free: `beta +- alpha |gamma|` of the batch normalization before the tensor
  /// (sec. 3.1, "BN based"; the paper takes alpha = 6).
  case bnBased = "bn-based"

  /// Whether the method needs nothing but the tensor's values (`minMax`, `runningMinMax`,
  /// `percentile`, `mse`): what `RangeObserver.range` and `RangeSearch.weightRange` accept.
  /// `crossEntropy` needs logits with their class axis; `bnBased` needs BN statistics.
  public var isComputableFromValues: Bool {
    switch self {
    case .minMax, .runningMinMax, .percentile, .mse: return true
    case .crossEntropy, .bnBased: return false
    }
  }
}
