import LowbitCore

/// Statistics of one activation tensor gathered over calibration batches, from which
/// `range(method:grid:symmetric:percentile:)` sets the clipping range (white paper sec. 3.1).
///
/// Each `observe` call is one batch. The observer keeps
/// - the global min and max of the finite values (exact);
/// - running min and max: exponential moving averages of the batch min and max with momentum
///   `m`: `r_1 = b_1`, `r_t = m r_(t-1) + (1 - m) b_t` (in `Double`);
/// - a `RangeHistogram` of the finite values (2048 power-of-two-wide bins by default, merged exactly when a
///   batch widens the range) for the percentile and MSE methods;
/// - counts of NaN and infinite values, which are left out of everything above and make
///   `range` throw: a quantizer cannot be fitted to data that is not finite.
///
/// A batch without finite values updates only the counts; the first batch with a finite value
/// starts the running min and max.
public struct RangeObserver: Sendable, Equatable {
  /// The tensor's name, used in error messages.
  public let name: String
  /// Momentum `m` of the running min and max (0.9 by default).
  public let momentum: Double
  /// Number of `observe` calls.
  public private(set) var batchCount = 0
  /// Number of finite values seen.
  public private(set) var count = 0
  /// Number of NaN values seen.
  public private(set) var nanCount = 0
  /// Number of infinite values seen.
  public private(set) var infinityCount = 0
  /// `min x` over every finite value seen (`+infinity` before any).
  public private(set) var minimum = Float.infinity
  /// `max x` over every finite value seen (`-infinity` before any).
  public private(set) var maximum = -Float.infinity
  /// The histogram of the finite values seen.
  public private(set) var histogram = RangeHistogram()
  private var runningLower = 0.0
  private var runningUpper = 0.0

  /// An observer for the tensor `name`; `momentum` must lie in `0..<1`; `bins` for its histogram.
  public init(name: String, momentum: Double = 0.9, bins: Int = RangeHistogram.binCount) {
    precondition(momentum >= 0 && momentum < 1, "RangeObserver momentum \(momentum) outside 0..<1")
    self.name = name
    self.momentum = momentum
    histogram = RangeHistogram(bins: bins)
  }

  /// The running minimum `r_t = m r_(t-1) + (1 - m) min(batch_t)` (`+infinity` before any value).
  public var runningMinimum: Float { count == 0 ? .infinity : Float(runningLower) }
  /// The running maximum `r_t = m r_(t-1) + (1 - m) max(batch_t)` (`-infinity` before any value).
  public var runningMaximum: Float { count == 0 ? -.infinity : Float(runningUpper) }

  /// Adds one batch of values (of any shape, flattened).
  public mutating func observe(_ values: [Float]) {
    values.withUnsafeBufferPointer { observe($0) }
  }

  /// Adds one batch of values read from `values` (which must stay valid for the call).
  public mutating func observe(_ values: UnsafeBufferPointer<Float>) {
    batchCount += 1
    // Per chunk of values (in parallel for large tensors): min, max, finite and NaN counts.
    let source = SharedBuffer(values)
    let parts = parallelIndexedMap(RangeHistogram.chunks(values.count), costPerItem: 1 << 16) { c in
      var lo = Float.infinity, hi = -Float.infinity, finite = 0, nans = 0
      // Reads `values` within its count, during the call.
      for i in RangeHistogram.chunk(c, of: source.count) {
        let x = source[i]
        if x.isFinite {
          finite += 1
          lo = min(lo, x)
          hi = max(hi, x)
        } else if x.isNaN {
          nans += 1
        }
      }
      return (lo: lo, hi: hi, finite: finite, nans: nans)
    }
    let lo = parts.map(\.lo).min() ?? .infinity, hi = parts.map(\.hi).max() ?? -.infinity
    let finite = parts.map(\.finite).reduce(0, +), nans = parts.map(\.nans).reduce(0, +)
    nanCount += nans
    infinityCount += values.count - finite - nans
    guard finite > 0 else { return }
    if count == 0 {
      runningLower = Double(lo)
      runningUpper = Double(hi)
    } else {
      runningLower = momentum * runningLower + (1 - momentum) * Double(lo)
      runningUpper = momentum * runningUpper + (1 - momentum) * Double(hi)
    }
    count += finite
    minimum = min(minimum, lo)
    maximum = max(maximum, hi)
    histogram.insert(values, lower: minimum, upper: maximum)
  }

  /// The clipping range `[lower, upper]` of the tensor by `method` (white paper sec. 3.1):
  ///
  /// | method          | range                                                                     |
  /// |-----------------|---------------------------------------------------------------------------|
  /// | `minMax`        | `[minimum, maximum]` (exact)                                              |
  /// | `runningMinMax` | `[runningMinimum, runningMaximum]`                                        |
  /// | `percentile`    | signed symmetric: `+-P_p(abs(x))`; unsigned symmetric: `[0, P_p(x)]`;     |
  /// |                 | asymmetric: `[P_(100-p)(x), P_p(x)]` (swapped for p < 50), from the       |
  /// |                 | histogram, linear within a bin                                            |
  /// | `mse`           | the candidate with the least expected `sum (x - fq(x))^2` over the bins   |
  ///
  /// For `mse` each bin's values are taken as spread evenly over the bin (the outer bins clipped
  /// to `[minimum, maximum]`) and `(x - fq(x))^2` is integrated exactly over it; the candidates
  /// are fractions of the min-max range, searched as `ClippingSearch` describes (100 candidates
  /// for symmetric grids, a 20 x 20 coarse then 0.01-step fine pass for asymmetric ones).
  /// Percentile 100 gives the exact `[minimum, maximum]` (symmetrized for symmetric grids).
  ///
  /// Throws `LowbitError.invalidInput` naming the tensor when NaN or infinite values were
  /// observed or no finite value was, and `.invalidArgument` for a percentile outside `(0, 100]`
  /// or for `crossEntropy` and `bnBased`, which need `RangeSearch.crossEntropyRange` and
  /// `RangeSearch.batchNormRange`.
  public func range(
    method: RangeMethod, grid: IntegerGrid, symmetric: Bool, percentile: Double = 99.99
  ) throws -> ClosedRange<Float> {
    switch method {
    case .crossEntropy:
      throw LowbitError.invalidArgument(
        "activation '\(name)': cross-entropy range setting needs the logits with their class axis; "
          + "use RangeSearch.crossEntropyRange(logits:classes:grid:symmetric:)")
    case .bnBased:
      throw LowbitError.invalidArgument(
        "activation '\(name)': BN-based range setting needs the preceding BatchNormalization's "
          + "statistics, not observed values; use RangeSearch.batchNormRange(_:alpha:followedByReLU:)"
      )
    case .minMax:
      try checkFinite()
      return minimum...maximum
    case .runningMinMax:
      try checkFinite()
      return runningMinimum...runningMaximum
    case .percentile:
      try checkFinite()
      try RangeSearch.checkPercentile(percentile, name: "activation '\(name)'")
      return percentileRange(percentile, grid: grid, symmetric: symmetric)
    case .mse:
      try checkFinite()
      let segments = histogram.segments(lower: minimum, upper: maximum)
      return ClippingSearch.search(lower: minimum, upper: maximum, grid: grid, symmetric: symmetric)
      {
        QuantizationErrorModel.expectedSquaredError(segments, $0, grid)
      }
    }
  }

  /// Throws `LowbitError.invalidInput` naming the tensor unless finite values, and only those,
  /// were observed.
  public func checkFinite() throws {
    if nanCount + infinityCount > 0 {
      throw LowbitError.invalidInput(
        "activation '\(name)': \(nanCount) NaN and \(infinityCount) infinite values among "
          + "\(count + nanCount + infinityCount) observed in \(batchCount) batches")
    }
    guard count > 0 else {
      throw LowbitError.invalidInput("activation '\(name)': no values observed")
    }
  }

  /// The percentile range from the histogram (`p` in `(0, 100]`).
  private func percentileRange(_ p: Double, grid: IntegerGrid, symmetric: Bool) -> ClosedRange<
    Float
  > {
    if symmetric && grid.signed {
      let a = RangeHistogram.percentile(
        p, of: histogram.absoluteSegments(lower: minimum, upper: maximum))
      let top = p >= 100 ? max(-minimum, maximum) : Float(a)
      return -top...top
    }
    let segments = histogram.segments(lower: minimum, upper: maximum)
    let upper = p >= 100 ? maximum : Float(RangeHistogram.percentile(p, of: segments))
    if symmetric { return 0...max(upper, 0) }
    let lower = p >= 100 ? minimum : Float(RangeHistogram.percentile(100 - p, of: segments))
    return min(lower, upper)...max(lower, upper)
  }
}
