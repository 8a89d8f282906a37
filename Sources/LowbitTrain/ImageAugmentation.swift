import LowbitCore

/// Seeded augmentation of NCHW image batches: a random crop of the zero-padded image (pad `p`
/// on each side, crop back to H x W at offset `(dy, dx)` uniform in `0...2p`) and a horizontal
/// flip with probability 1/2:
/// `out[n, c, y, x] = padded[n, c, y + dy, (flip ? W - 1 - x : x) + dx]` (0 outside the image).
/// Each image draws `dy`, `dx`, then the flip, in batch order, from the caller's generator.
public struct ImageAugmentation: Codable, Sendable, Equatable {
  /// Zero padding per side before the random crop (0: no crop), e.g. 4 for 32x32, 2 for 28x28.
  public var padding: Int
  public var horizontalFlip: Bool

  public init(padding: Int = 4, horizontalFlip: Bool = true) {
    self.padding = padding
    self.horizontalFlip = horizontalFlip
  }

  /// The augmented batch; `images` must be a float tensor of rank 4.
  public func apply(to images: Tensor, using generator: inout SplitMix64) throws -> Tensor {
    guard images.rank == 4, images.dtype.isFloatingPoint else {
      throw LowbitError.invalidInput("augmentation needs a float NCHW batch, got \(images.description)")
    }
    let (n, c, h, w) = (images.shape[0], images.shape[1], images.shape[2], images.shape[3])
    let src = images.floats
    var out = [Float](repeating: 0, count: src.count)
    for image in 0..<n {
      let dy = padding > 0 ? generator.uniform(below: 2 * padding + 1) - padding : 0
      let dx = padding > 0 ? generator.uniform(below: 2 * padding + 1) - padding : 0
      let flip = horizontalFlip && generator.next() >> 63 == 1
      for ch in 0..<c {
        let plane = (image * c + ch) * h * w
        for y in 0..<h {
          let sy = y + dy
          guard sy >= 0 && sy < h else { continue }
          for x in 0..<w {
            let sx = (flip ? w - 1 - x : x) + dx
            if sx >= 0 && sx < w { out[plane + y * w + x] = src[plane + sy * w + sx] }
          }
        }
      }
    }
    return Tensor(shape: images.shape, floats: out)
  }
}

/// Gathers the samples at `indices` (along axis 0) of `data` into one batch.
public func gatherBatch(_ data: Tensor, indices: [Int]) -> Tensor {
  let sample = data.shape.dropFirst().reduce(1, *)
  let values = data.floats
  var out = [Float]()
  out.reserveCapacity(indices.count * sample)
  for i in indices { out.append(contentsOf: values[(i * sample)..<((i + 1) * sample)]) }
  return Tensor(shape: [indices.count] + Array(data.shape.dropFirst()), floats: out)
}
