import LowbitCore

/// The candidate clipping ranges searched by the MSE and cross-entropy methods, and the search.
///
/// Candidates are fractions `f = i / 100`, `i = 1...100`, of the min-max extent:
/// - symmetric, signed grid: `[-f a, f a]` with `a = max(abs(min), abs(max))` (100 candidates);
/// - symmetric, unsigned grid: `[0, f max]` (100 candidates);
/// - asymmetric: `[f_l min', f_u max']` with `min' = min(min, 0)` and `max' = max(max, 0)`.
///   When both sides can move, a coarse pass tries every pair of `f_l, f_u` in
///   `{1, 0.95, ..., 0.05}` (400 pairs), then a fine pass tries every pair within 0.04 of the
///   best coarse pair in steps of 0.01 (at most 81 pairs, fewer where the coarse pass has been).
///   When one side is 0 only the other side moves, in 100 steps.
///
/// Candidates are visited from the widest down and a candidate replaces the best only when its
/// cost is strictly lower, so ties (and all-NaN costs) keep the wider range, and the result is
/// never worse than min-max (`f = 1`), which is always a candidate.
enum ClippingSearch {
  /// Fractions are `i / steps`.
  static let steps = 100
  /// The coarse asymmetric pass moves `i` by this much.
  static let coarseStride = 5
  /// The fine asymmetric pass looks this many steps either side of the coarse optimum.
  static let fineRadius = 4

  static func fraction(_ i: Int) -> Float { Float(i) / Float(steps) }

  /// The candidate range with the least `cost(params(range))`; `lower` and `upper` are the
  /// finite min and max of the data (or logits).
  static func search(
    lower: Float, upper: Float, grid: IntegerGrid, symmetric: Bool,
    cost: (QuantParams) -> Double
  ) -> ClosedRange<Float> {
    func evaluate(_ r: ClosedRange<Float>) -> Double {
      cost(
        UniformQuantizer.params(
          lower: r.lowerBound, upper: r.upperBound, grid: grid, symmetric: symmetric))
    }
    if symmetric {
      let top = grid.signed ? max(-lower, upper, 0) : max(upper, 0)
      guard top > 0 else { return 0...0 }
      func candidate(_ i: Int) -> ClosedRange<Float> {
        let a = top * fraction(i)
        return grid.signed ? -a...a : 0...a
      }
      var best = (cost: Double.infinity, i: steps)
      for i in stride(from: steps, through: 1, by: -1) {
        let c = evaluate(candidate(i))
        if c < best.cost { best = (c, i) }
      }
      return candidate(best.i)
    }

    let low = min(lower, 0)
    let high = max(upper, 0)
    guard low < 0 || high > 0 else { return 0...0 }
    func candidate(_ i: Int, _ j: Int) -> ClosedRange<Float> {
      (low * fraction(i))...(high * fraction(j))
    }
    var seen: [Int: Double] = [:]
    var best = (cost: Double.infinity, i: steps, j: steps)
    func visit(_ i: Int, _ j: Int) {
      let key = i * (steps + 1) + j
      if seen[key] != nil { return }
      let c = evaluate(candidate(i, j))
      seen[key] = c
      if c < best.cost { best = (c, i, j) }
    }
    let all = Array(stride(from: steps, through: 1, by: -1))
    if low == 0 {
      for j in all { visit(steps, j) }
    } else if high == 0 {
      for i in all { visit(i, steps) }
    } else {
      let coarse = Array(stride(from: steps, through: coarseStride, by: -coarseStride))
      for i in coarse { for j in coarse { visit(i, j) } }
      let (ci, cj) = (best.i, best.j)
      for i in stride(from: min(ci + fineRadius, steps), through: max(ci - fineRadius, 1), by: -1) {
        for j in stride(from: min(cj + fineRadius, steps), through: max(cj - fineRadius, 1), by: -1)
        {
          visit(i, j)
        }
      }
    }
    return candidate(best.i, best.j)
  }
}

/// The squared error of the quantizer `fq(x) = s clamp(round(x / s), qmin - z, qmax - z)` in
/// real arithmetic, integrated over intervals: the expected error of histogram bins whose values
/// are taken as spread uniformly over the bin.
enum QuantizationErrorModel {
  /// `sum_bins count * (1 / (b - a)) * integral_a^b (x - fq(x))^2 dx`, or `count * (x - fq(x))^2`
  /// for a bin clipped to a single point.
  static func expectedSquaredError(
    _ segments: [RangeHistogram.Segment], _ p: QuantParams, _ grid: IntegerGrid
  ) -> Double {
    var total = 0.0
    for seg in segments {
      let width = seg.upper - seg.lower
      if width > 0 {
        total += seg.count * integral(from: seg.lower, to: seg.upper, p, grid) / width
      } else {
        let e = pointError(seg.lower, p, grid)
        total += seg.count * e * e
      }
    }
    return total
  }

  /// `x - fq(x)` in real arithmetic.
  static func pointError(_ x: Double, _ p: QuantParams, _ grid: IntegerGrid) -> Double {
    let s = Double(p.scale)
    let z = Double(p.zeroPoint)
    let q = min(
      max((x / s).rounded(.toNearestOrEven), Double(grid.qmin) - z), Double(grid.qmax) - z)
    return x - s * q
  }

  /// `integral_a^b (x - fq(x))^2 dx` for `a <= b`, split into the part clipped to the lowest
  /// level `L = s (qmin - z)`, the part clipped to the highest `U = s (qmax - z)`, and the part in
  /// between, where the error `x - s round(x / s)` is a saw tooth of period s (each whole period
  /// contributes `s^3 / 12`).
  static func integral(from a: Double, to b: Double, _ p: QuantParams, _ grid: IntegerGrid)
    -> Double
  {
    let s = Double(p.scale)
    let z = Double(p.zeroPoint)
    let lowLevel = Double(grid.qmin) - z
    let highLevel = Double(grid.qmax) - z
    let lowEdge = (lowLevel - 0.5) * s
    let highEdge = (highLevel + 0.5) * s
    var total = 0.0
    if a < lowEdge {
      let l = lowLevel * s
      total += cubeDifference(min(b, lowEdge) - l, a - l)
    }
    if b > highEdge {
      let u = highLevel * s
      total += cubeDifference(b - u, max(a, highEdge) - u)
    }
    let from = max(a, lowEdge)
    let to = min(b, highEdge)
    if to > from { total += sawToothIntegral(to, s) - sawToothIntegral(from, s) }
    return total
  }

  /// `(u^3 - v^3) / 3`, written to keep precision when u and v are close.
  private static func cubeDifference(_ u: Double, _ v: Double) -> Double {
    (u - v) * (u * u + u * v + v * v) / 3
  }

  /// `integral_(-s/2)^x (t - s round(t / s))^2 dt` (ties do not matter inside an integral):
  /// with `x / s + 1/2 = n + f`, `n` whole and `0 <= f < 1`, it is `s^3 (n / 12 + ((f - 1/2)^3 + 1/8) / 3)`.
  private static func sawToothIntegral(_ x: Double, _ s: Double) -> Double {
    let t = x / s + 0.5
    let n = t.rounded(.down)
    let f = t - n
    let g = f - 0.5
    return s * s * s * (n / 12 + (g * g * g + 0.125) / 3)
  }
}
