/// The evenly spaced set a tensor's values lie on, when they do: a model input made of 8-bit
/// pixels, resized in 8 bits, scaled to `[0, 1]` and normalized per channel by `(x - mean) / std`,
/// takes at most 256 values per channel, `d = 1 / (255 std)` apart.
///
/// A quantizer whose step is `d` (or `d / k`) and whose grid covers those values reproduces every one of them
/// up to one constant offset per grid, below half a step (the zero point is an integer, the
/// lattice's origin need not be one step from zero). Any other step adds rounding noise to the
/// network's very input, and an ImageNet CNN can be more sensitive to that than to all its other
/// activation quantizers together (EfficientNet-Lite2: see docs/ptq-pipeline.md).
///
/// Observing keeps the distinct values seen, up to `capacity`; past that the values are no lattice
/// a grid could hold and nothing more is kept.
struct ValueLattice: Sendable {
  /// The most distinct values kept.
  static let capacity = 4096
  /// How far a value may lie from its lattice point, as a fraction of the step (float rounding of
  /// the normalization).
  static let tolerance: Float = 0.02

  private var distinct: Set<Float>? = []

  /// Adds values; non-finite ones leave the lattice undetected (the range observer reports them).
  mutating func observe<S: Sequence>(_ values: S) where S.Element == Float {
    guard var set = distinct else { return }
    distinct = nil  // keep the set uniquely referenced while inserting
    for x in values {
      guard x.isFinite else { return }
      set.insert(x)
      if set.count > Self.capacity { return }
    }
    distinct = set
  }

  /// The lattice `lower + k step`, `k = 0 ... count - 1`, that holds every observed value within
  /// `tolerance` steps, with the step estimated as `(max - min) / k_max` over the whole span; nil
  /// for fewer than two distinct values, more than `capacity`, or values off every lattice whose
  /// step is the smallest gap between neighbours.
  func lattice() -> (lower: Float, step: Float, count: Int)? {
    guard let set = distinct, set.count >= 2 else { return nil }
    let u = set.sorted()
    var gap = Float.infinity
    for i in 1..<u.count { gap = min(gap, u[i] - u[i - 1]) }
    let span = u[u.count - 1] - u[0]
    let top = (span / gap).rounded()
    guard gap > 0, top.isFinite, top >= 1, top < Float(1 << 24) else { return nil }
    let step = span / top
    for x in u {
      let k = ((x - u[0]) / step).rounded()
      if abs(x - u[0] - k * step) > Self.tolerance * step { return nil }
    }
    return (u[0], step, Int(top) + 1)
  }

  /// The clipping range that puts every lattice point on one of `grid`'s points: the grid's step
  /// is `d / k`, the lattice step `d` divided by the largest whole `k` with `k (count - 1) <=
  /// grid.steps` (k = 1 for 8-bit pixels on an 8-bit grid; k = 257 on a 16-bit grid, which then
  /// is as fine as a range fitted to the values and still holds the lattice), and the spare steps
  /// are split evenly below and above the observed values (values a calibration set missed at
  /// either end, e.g. pixels 0 and 255, stay representable). Nil when the lattice has more points
  /// than the grid, or the range would not hold zero (an affine grid always does, so it would be
  /// widened off the lattice).
  func range(grid: IntegerGrid) -> ClosedRange<Float>? {
    guard let l = lattice(), l.count - 1 <= grid.steps else { return nil }
    let k = grid.steps / (l.count - 1)
    let step = l.step / Float(k)
    let below = Float((grid.steps - k * (l.count - 1)) / 2)
    let lower = l.lower - below * step
    let upper = lower + Float(grid.steps) * step
    guard lower <= 0, upper >= 0 else { return nil }
    return lower...upper
  }
}
