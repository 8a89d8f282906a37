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

/// The tests' seeded generator: LowbitCore's SplitMix64, the same stream on every platform.
public typealias SeededGenerator = SplitMix64

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
