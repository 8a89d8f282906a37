import LowbitCore

/// A histogram of a tensor's finite values with at most `bins` bins (2048 by default) of width `w = 2^e`,
/// aligned to multiples of `w`: bin `k` (absolute index) holds the values with
/// `floor(x / w) == k`, i.e. `x` in `[k w, (k + 1) w)`.
///
/// Why powers of two and aligned edges: `x / w` is exact in floating point, every edge `k w` is an
/// exact `Double`, and widening is exact too. When a later batch needs a wider span the width
/// doubles `d` times and old bin `k` merges whole into bin `k >> d` (`floor(k / 2^d)`), which is
/// exactly where its values would have landed had they been binned at the new width:
/// `floor(floor(x / w) / 2^d) == floor(x / (2^d w))`. Counts are never split or interpolated,
/// so the merged histogram equals the one built from all values at the final width.
///
/// The width is the smallest power of two (never below the first width chosen) for which
/// `[min, max]` fits in `binCount` bins, so the data spans at least about half of the bins
/// (fewer only when the whole span is a few ulps of the values). No value lies outside
/// `[min, max]`, so the first and last bins are clipped to it when the histogram is read.
public struct RangeHistogram: Sendable, Equatable {
  /// Number of bins by default: 2048.
  public static let binCount = 2048
  /// Number of bins of this histogram.
  public let bins: Int

  /// `e` of the bin width `w = 2^e`.
  public private(set) var widthExponent: Int = 0
  /// The absolute index `k` of `counts[0]`, i.e. `floor(min / w)`.
  public private(set) var firstBin: Int = 0
  /// Count of values per bin, `bins` entries (empty before any finite value is seen).
  public private(set) var counts: [Int] = []

  /// An empty histogram of `bins` bins (at least 16).
  public init(bins: Int = RangeHistogram.binCount) { self.bins = max(bins, 16) }

  /// The bin width `w = 2^widthExponent`.
  public var binWidth: Double { Self.powerOfTwo(widthExponent) }

  /// The lower edge `(firstBin + i) w` of `counts[i]` (exact; the upper edge is the next one).
  public func lowerEdge(ofBin i: Int) -> Double { Double(firstBin + i) * binWidth }

  /// The number of values counted: `sum counts`.
  public var totalCount: Int { counts.reduce(0, +) }

  /// Whether no value has been counted.
  public var isEmpty: Bool { counts.isEmpty }

  // MARK: - Building

  /// Widens the bins to cover `[lower, upper]` (the finite min and max of every value so far,
  /// including the batch about to be inserted) by merging, then counts the finite values of
  /// `values`. Non-finite values are skipped (the observer counts them).
  mutating func insert(_ values: UnsafeBufferPointer<Float>, lower: Float, upper: Float) {
    cover(lower: lower, upper: upper)
    let scale = Self.powerOfTwo(-widthExponent)
    let first = firstBin, bins = counts.count
    // Counts per chunk of values (in parallel for large tensors), then summed: the same counts.
    let source = SharedBuffer(values)
    let parts = parallelIndexedMap(Self.chunks(values.count), costPerItem: 1 << 16) { c in
      var local = [Int](repeating: 0, count: bins)
      local.withUnsafeMutableBufferPointer { bins in
        // Safety: `cover` made every finite value of [lower, upper] land in 0..<binCount, and
        // the caller guarantees that lower and upper bound the finite values of `values`.
        for i in Self.chunk(c, of: source.count) where source[i].isFinite {
          let x = source[i]
          bins[Int((Double(x) * scale).rounded(.down)) - first] += 1
        }
      }
      return local
    }
    for part in parts { for i in 0..<bins where part[i] != 0 { counts[i] += part[i] } }
  }

  /// Chunks a tensor of `count` values is observed in: one per 64k values, at most two per
  /// kernel thread.
  static func chunks(_ count: Int) -> Int { max(1, min(count >> 16, 2 * kernelThreadCount)) }

  /// Chunk `c` of `chunks(count)` as an index range.
  static func chunk(_ c: Int, of count: Int) -> Range<Int> {
    let n = chunks(count)
    return (count * c / n)..<(count * (c + 1) / n)
  }

  /// Sets or grows the width so that `[lower, upper]` fits, merging existing bins.
  private mutating func cover(lower: Float, upper: Float) {
    let lo = Double(lower)
    let hi = Double(upper)
    if counts.isEmpty {
      let e = Self.fittingExponent(lo, hi, atLeast: Self.initialExponent(lo, hi), bins: bins)
      widthExponent = e
      firstBin = Self.index(lo, exponent: e)
      counts = [Int](repeating: 0, count: bins)
      return
    }
    let e = Self.fittingExponent(lo, hi, atLeast: widthExponent, bins: bins)
    let first = Self.index(lo, exponent: e)
    if e == widthExponent && first == firstBin { return }
    let shift = e - widthExponent
    var merged = [Int](repeating: 0, count: bins)
    for (i, c) in counts.enumerated() where c != 0 {
      // `>>` on Int floors (arithmetic shift) and saturates for shifts of 64 or more.
      merged[((firstBin + i) >> shift) - first] += c
    }
    counts = merged
    widthExponent = e
    firstBin = first
  }

  /// A first width for data spanning `[lo, hi]`: a lower bound on the fitting exponent, or for
  /// a single value the exponent of its ulp (so that indices stay below 2^25).
  private static func initialExponent(_ lo: Double, _ hi: Double) -> Int {
    let span = hi - lo
    if span > 0 { return span.exponent - 12 }
    let magnitude = Float(max(abs(lo), abs(hi)))
    return magnitude > 0 ? magnitude.ulp.exponent : Float.leastNonzeroMagnitude.exponent
  }

  /// The smallest `e >= start` with `floor(hi / 2^e) - floor(lo / 2^e) + 1 <= bins`.
  /// Starts at least at `exponent(hi - lo) - 12`, below which nothing fits, so the loop is short
  /// and the indices it then produces stay far inside `Int` (below 2^40).
  private static func fittingExponent(_ lo: Double, _ hi: Double, atLeast start: Int, bins: Int) -> Int {
    var e = start
    let span = hi - lo
    if span > 0 { e = max(e, span.exponent - 12) }
    while true {
      let s = powerOfTwo(-e)
      if (hi * s).rounded(.down) - (lo * s).rounded(.down) + 1 <= Double(bins) { return e }
      e += 1
    }
  }

  private static func index(_ x: Double, exponent e: Int) -> Int {
    Int((x * powerOfTwo(-e)).rounded(.down))
  }

  static func powerOfTwo(_ e: Int) -> Double { Double(sign: .plus, exponent: e, significand: 1) }

  // MARK: - Reading

  /// A bin as an interval with its count, clipped to the data's `[min, max]`.
  struct Segment {
    var lower: Double
    var upper: Double
    var count: Double
  }

  /// The non-empty bins of x in increasing order, the outer ones clipped to `[lower, upper]`
  /// (the observed min and max).
  func segments(lower: Float, upper: Float) -> [Segment] {
    let w = binWidth
    var result: [Segment] = []
    for (i, c) in counts.enumerated() where c != 0 {
      let a = Double(firstBin + i) * w
      result.append(
        Segment(
          lower: max(a, Double(lower)), upper: min(a + w, Double(upper)), count: Double(c)))
    }
    return result
  }

  /// The non-empty bins of `abs(x)` in increasing order: bin `k >= 0` and bin `-k - 1` both
  /// cover `abs(x)` in `[k w, (k + 1) w)` (exactly, since edges are multiples of w), clipped to
  /// the range of `abs(x)` given the observed min and max.
  func absoluteSegments(lower: Float, upper: Float) -> [Segment] {
    let w = binWidth
    var folded: [Int: Int] = [:]
    for (i, c) in counts.enumerated() where c != 0 {
      let k = firstBin + i
      folded[k >= 0 ? k : -k - 1, default: 0] += c
    }
    let lo = Double(lower)
    let hi = Double(upper)
    let top = max(abs(lo), abs(hi))
    let bottom = lo <= 0 && hi >= 0 ? 0 : min(abs(lo), abs(hi))
    return folded.keys.sorted().map { j in
      let a = Double(j) * w
      return Segment(lower: max(a, bottom), upper: min(a + w, top), count: Double(folded[j]!))
    }
  }

  /// The p-th percentile (0...100) of the binned values, linear within the bin where the
  /// cumulative count reaches `p / 100 * n`; `p <= 0` gives the first segment's lower end and
  /// `p >= 100` the last one's upper end (the exact min and max for clipped segments).
  static func percentile(_ p: Double, of segments: [Segment]) -> Double {
    guard let first = segments.first, let last = segments.last else { return 0 }
    if p <= 0 { return first.lower }
    if p >= 100 { return last.upper }
    let total = segments.reduce(0) { $0 + $1.count }
    let target = p / 100 * total
    var cumulative = 0.0
    for s in segments {
      if cumulative + s.count >= target {
        let t = (target - cumulative) / s.count
        return min(max(s.lower + t * (s.upper - s.lower), s.lower), s.upper)
      }
      cumulative += s.count
    }
    return last.upper
  }
}
