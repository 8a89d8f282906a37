/// SplitMix64 (Steele, Lea & Flood 2014): a small, fast, seedable generator whose stream is the
/// same on every platform. `Codable`, so a checkpoint can save where the stream is.
///
/// `state += 0x9E3779B97F4A7C15; z = state; z = (z ^ z >> 30) * 0xBF58476D1CE4E5B9;
/// z = (z ^ z >> 27) * 0x94D049BB133111EB; return z ^ z >> 31`.
public struct SplitMix64: RandomNumberGenerator, Codable, Sendable, Equatable {
  public private(set) var state: UInt64

  public init(seed: UInt64) { state = seed }

  public mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }

  /// A uniform integer in `0..<bound` (Lemire's multiply-shift with rejection, so unbiased and
  /// independent of the standard library's implementation).
  public mutating func uniform(below bound: Int) -> Int {
    precondition(bound > 0, "uniform(below:) needs a positive bound")
    let b = UInt64(bound)
    var product = next().multipliedFullWidth(by: b)
    if product.low < b {
      let threshold = (0 &- b) % b
      while product.low < threshold { product = next().multipliedFullWidth(by: b) }
    }
    return Int(product.high)
  }

  /// A uniform float in `[0, 1)` from the top 24 bits.
  public mutating func unitFloat() -> Float { Float(next() >> 40) * 0x1p-24 }

  /// An independent generator for `(seed, stream)`, e.g. one per epoch: seeded with the SplitMix64
  /// output for `seed` mixed with `stream`.
  public static func stream(_ stream: UInt64, of seed: UInt64) -> SplitMix64 {
    var g = SplitMix64(seed: seed ^ (stream &* 0xD1B5_4A32_D192_ED03))
    return SplitMix64(seed: g.next())
  }
}

/// The sample order of each epoch: a Fisher-Yates shuffle driven by `SplitMix64.stream(epoch,
/// of: seed)`, so epoch `e` has the same order in every run and after a resume.
public struct EpochShuffler: Codable, Sendable, Equatable {
  public var count: Int
  public var seed: UInt64

  public init(count: Int, seed: UInt64) {
    self.count = count
    self.seed = seed
  }

  /// A permutation of `0..<count` for `epoch`.
  public func order(epoch: Int) -> [Int] {
    var g = SplitMix64.stream(UInt64(epoch), of: seed)
    var order = Array(0..<count)
    for i in stride(from: count - 1, to: 0, by: -1) { order.swapAt(i, g.uniform(below: i + 1)) }
    return order
  }

  /// The index batches of `epoch`, `batchSize` each (the last one smaller unless `dropLast`).
  public func batches(epoch: Int, batchSize: Int, dropLast: Bool = false) -> [[Int]] {
    precondition(batchSize > 0, "batchSize must be positive")
    let order = order(epoch: epoch)
    return stride(from: 0, to: count, by: batchSize).compactMap { start in
      let end = min(start + batchSize, count)
      return dropLast && end - start < batchSize ? nil : Array(order[start..<end])
    }
  }
}
