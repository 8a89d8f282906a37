import LowbitCore

/// Largest `|a - b|` over paired elements divided by `max |b|` (0 when both are all-zero).
public func maxRelativeError(_ a: [Float], _ b: [Float]) -> Float {
  precondition(a.count == b.count, "maxRelativeError: \(a.count) vs \(b.count) elements")
  var diff: Float = 0, scale: Float = 0
  for (x, y) in zip(a, b) {
    diff = max(diff, abs(x - y))
    scale = max(scale, abs(y))
  }
  return scale == 0 ? diff : diff / scale
}

/// A small deterministic generator (SplitMix64) so tests are reproducible on every platform.
public struct SeededGenerator: RandomNumberGenerator {
  private var state: UInt64
  public init(seed: UInt64) { state = seed }
  public mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}

/// `count` floats uniform in `range`, from `generator`.
public func randomFloats(
  _ count: Int, in range: ClosedRange<Float> = -1...1, using generator: inout SeededGenerator
) -> [Float] {
  (0..<count).map { _ in Float.random(in: range, using: &generator) }
}

/// A float32 tensor of the given shape with seeded uniform values.
public func randomTensor(_ shape: [Int], seed: UInt64, in range: ClosedRange<Float> = -1...1) -> Tensor {
  var g = SeededGenerator(seed: seed)
  return Tensor(shape: shape, floats: randomFloats(shape.reduce(1, *), in: range, using: &g))
}
