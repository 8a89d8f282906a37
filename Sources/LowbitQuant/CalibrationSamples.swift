import LowbitCore
import LowbitTrain

/// Items (samples or rows) spread over calibration batches, addressed by one global index:
/// batch `b` holds items `first[b] ..< first[b + 1]`.
struct CalibrationSamples: Sendable {
  /// The global index of each batch's first item, and the total count at the end.
  let first: [Int]

  init(sizes: [Int]) {
    var first = [0]
    for n in sizes { first.append(first.last! + n) }
    self.first = first
  }

  var count: Int { first.last! }

  /// The batch holding global item `global` and the item's index in it.
  func locate(_ global: Int) -> (batch: Int, index: Int) {
    var b = 0
    while first[b + 1] <= global { b += 1 }
    return (b, global - first[b])
  }

  /// `count` items drawn uniformly with replacement.
  func draw(_ count: Int, _ generator: inout SplitMix64) -> [(batch: Int, index: Int)] {
    (0..<count).map { _ in locate(generator.uniform(below: self.count)) }
  }

  /// The drawn samples of a value given per batch (first axis: samples), stacked in draw order.
  static func gather(_ perBatch: [Tensor], _ picks: [(batch: Int, index: Int)]) -> Tensor {
    let row = perBatch[0].count / max(perBatch[0].shape[0], 1)
    var out = [Float](repeating: 0, count: picks.count * row)
    out.withUnsafeMutableBufferPointer { dst in
      for (k, pick) in picks.enumerated() {
        perBatch[pick.batch].floats.withUnsafeBufferPointer { src in
          (dst.baseAddress! + k * row).update(from: src.baseAddress! + pick.index * row, count: row)
        }
      }
    }
    return Tensor(shape: [picks.count] + perBatch[0].shape.dropFirst(), floats: out)
  }
}
