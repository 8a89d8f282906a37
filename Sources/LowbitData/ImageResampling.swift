/// PIL's `Image.resize(size, Image.BILINEAR)` on 8-bit RGB, reproduced to the bit: the
/// antialiased two-pass resampling of Pillow's `Resample.c` that torchvision's `Resize` calls on
/// PIL images.
///
/// Per axis, output index `i` of `n` from an input of `m` has `scale = m / n`,
/// `f = max(scale, 1)` (the filter widens when shrinking: the antialias), support `f`,
/// `center = (i + 0.5) scale`, taps `j` from `xmin = trunc(center - f + 0.5)` (at least 0) to
/// `xmax = trunc(center + f + 0.5)` (at most `m`), weights `w_j = tri((j - center + 0.5) (1 / f))`
/// with `tri(x) = max(0, 1 - |x|)`, normalized to sum 1 and stored as `round(w_j 2^22)` (half away
/// from zero). A pass computes `clip8((2^21 + sum_j p_j w_j) >> 22)`; the horizontal pass runs
/// first and its 8-bit result feeds the vertical pass. An axis whose size does not change is not
/// resampled.
public enum ImageResampling {
  static let precisionBits = 22

  /// One axis's taps: output `i` reads inputs `start[i] ..< start[i] + count[i]` with
  /// `weights[i * kernelSize + j]`.
  struct Axis {
    var start: [Int] = []
    var count: [Int] = []
    var kernelSize = 0
    var weights: [Int] = []

    init(input m: Int, output n: Int) {
      let scale = Double(m) / Double(n)
      let filterScale = max(scale, 1)
      let support = filterScale
      kernelSize = Int(support.rounded(.up)) * 2 + 1
      weights = [Int](repeating: 0, count: n * kernelSize)
      for i in 0..<n {
        let center = (Double(i) + 0.5) * scale
        let low = max(Int(center - support + 0.5), 0)
        let high = min(Int(center + support + 0.5), m)
        var w = [Double](repeating: 0, count: max(high - low, 0))
        var total = 0.0
        let reciprocal = 1 / filterScale  // multiplied, not divided: Pillow's rounding
        for j in w.indices {
          let x = abs((Double(j + low) - center + 0.5) * reciprocal)
          w[j] = x < 1 ? 1 - x : 0
          total += w[j]
        }
        for j in w.indices {
          let v = (total != 0 ? w[j] / total : w[j]) * Double(1 << Self.precision)
          weights[i * kernelSize + j] = v < 0 ? Int(-0.5 + v) : Int(0.5 + v)
        }
        start.append(low)
        count.append(w.count)
      }
    }

    static let precision = ImageResampling.precisionBits
  }

  /// `(acc + 2^21) >> 22` clipped to 0...255, as Pillow's `clip8`.
  @inline(__always)
  static func clip8(_ acc: Int) -> UInt8 {
    let v = acc >> precisionBits
    return v <= 0 ? 0 : v >= 255 ? 255 : UInt8(v)
  }

  /// The pixels of `image` resized to `width x height`, restricted to output rows `rows` and
  /// columns `columns` (each pixel computed exactly as in the full resize; a crop of the result
  /// costs only its own pixels). Returns `rows.count x columns.count x 3` bytes.
  static func resized(
    _ image: RGBImage, width: Int, height: Int, rows: Range<Int>, columns: Range<Int>
  ) -> [UInt8] {
    let half = 1 << (precisionBits - 1)
    // Horizontal pass over the input rows the vertical pass reads.
    let vertical = height != image.height ? Axis(input: image.height, output: height) : nil
    let firstRow = vertical.map { v in rows.isEmpty ? 0 : v.start[rows.lowerBound] } ?? rows.lowerBound
    let endRow = vertical.map { v in rows.map { v.start[$0] + v.count[$0] }.max() ?? firstRow } ?? rows.upperBound
    var middle: [UInt8]
    let middleWidth = columns.count
    if width != image.width {
      let h = Axis(input: image.width, output: width)
      middle = [UInt8](repeating: 0, count: max(endRow - firstRow, 0) * middleWidth * 3)
      for y in firstRow..<max(endRow, firstRow) {
        let inRow = y * image.width * 3
        let outRow = (y - firstRow) * middleWidth * 3
        for (k, x) in columns.enumerated() {
          var acc = (half, half, half)
          let base = x * h.kernelSize
          for j in 0..<h.count[x] {
            let p = inRow + (h.start[x] + j) * 3
            let w = h.weights[base + j]
            acc.0 += Int(image.pixels[p]) * w
            acc.1 += Int(image.pixels[p + 1]) * w
            acc.2 += Int(image.pixels[p + 2]) * w
          }
          middle[outRow + 3 * k] = clip8(acc.0)
          middle[outRow + 3 * k + 1] = clip8(acc.1)
          middle[outRow + 3 * k + 2] = clip8(acc.2)
        }
      }
    } else {
      middle = [UInt8](repeating: 0, count: max(endRow - firstRow, 0) * middleWidth * 3)
      for y in firstRow..<max(endRow, firstRow) {
        let from = (y * image.width + columns.lowerBound) * 3
        let to = (y - firstRow) * middleWidth * 3
        middle.replaceSubrange(to..<to + middleWidth * 3, with: image.pixels[from..<from + middleWidth * 3])
      }
    }
    guard let v = vertical else { return middle }
    var out = [UInt8](repeating: 0, count: rows.count * middleWidth * 3)
    for (r, y) in rows.enumerated() {
      let base = y * v.kernelSize
      for x in 0..<middleWidth {
        var acc = (half, half, half)
        for j in 0..<v.count[y] {
          let p = ((v.start[y] + j - firstRow) * middleWidth + x) * 3
          let w = v.weights[base + j]
          acc.0 += Int(middle[p]) * w
          acc.1 += Int(middle[p + 1]) * w
          acc.2 += Int(middle[p + 2]) * w
        }
        let o = (r * middleWidth + x) * 3
        out[o] = clip8(acc.0)
        out[o + 1] = clip8(acc.1)
        out[o + 2] = clip8(acc.2)
      }
    }
    return out
  }

  /// The whole image resized to `width x height` (PIL's `resize((width, height), BILINEAR)`).
  public static func resized(_ image: RGBImage, width: Int, height: Int) -> RGBImage {
    RGBImage(
      width: width, height: height,
      pixels: resized(image, width: width, height: height, rows: 0..<height, columns: 0..<width))
  }
}
