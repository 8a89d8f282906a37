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
    var weights: [Int32] = []

    init(input m: Int, output n: Int) {
      let scale = Double(m) / Double(n)
      let filterScale = max(scale, 1)
      let support = filterScale
      kernelSize = Int(support.rounded(.up)) * 2 + 1
      weights = [Int32](repeating: 0, count: n * kernelSize)
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
          weights[i * kernelSize + j] = Int32(v < 0 ? Int(-0.5 + v) : Int(0.5 + v))
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
    let outWidth = columns.count
    // Horizontal pass over the input rows the vertical pass reads.
    let vertical = height != image.height ? Axis(input: image.height, output: height) : nil
    var firstRow = rows.lowerBound, endRow = rows.upperBound
    if let v = vertical, !rows.isEmpty {
      firstRow = v.start[rows.lowerBound]
      endRow = rows.map { v.start[$0] + v.count[$0] }.max() ?? firstRow
    }
    var middle = [UInt8](repeating: 0, count: max(endRow - firstRow, 0) * outWidth * 3)
    if width != image.width {
      let h = Axis(input: image.width, output: width)
      for y in firstRow..<max(endRow, firstRow) {
        pass(
          from: image.pixels, at: y * image.width * 3, tapStride: 3, to: &middle, at: (y - firstRow) * outWidth * 3,
          outputs: columns, outputStride: 3, lanes: 3, axis: h)
      }
    } else {
      for y in firstRow..<max(endRow, firstRow) {
        let from = (y * image.width + columns.lowerBound) * 3
        let to = (y - firstRow) * outWidth * 3
        middle.replaceSubrange(to..<to + outWidth * 3, with: image.pixels[from..<from + outWidth * 3])
      }
    }
    guard var v = vertical else { return middle }
    // Vertical taps index rows of `middle`, which starts at `firstRow`.
    v.start = v.start.map { $0 - firstRow }
    var out = [UInt8](repeating: 0, count: rows.count * outWidth * 3)
    // Each output row reads a column of taps: lanes are the row's bytes, taps a row apart.
    for (r, y) in rows.enumerated() {
      pass(
        from: middle, at: 0, tapStride: outWidth * 3, to: &out, at: r * outWidth * 3,
        outputs: y..<y + 1, outputStride: 0, lanes: outWidth * 3, axis: v)
    }
    return out
  }

  /// One resampling pass: for each output `i` in `outputs` and lane `l < lanes`,
  /// `out[to + k outputStride + l] = clip8(2^21 + sum_j input[from + (start_i + j) tapStride + l] w_ij)`
  /// with `k` the output's position in `outputs`. Sums fit 32 bits: the weights are positive
  /// and add up to about 2^22, so a sum stays below 256 (2^22 + taps) + 2^21 < 2^31.
  static func pass(
    from input: [UInt8], at from: Int, tapStride: Int, to output: inout [UInt8], at to: Int,
    outputs: Range<Int>, outputStride: Int, lanes: Int, axis: Axis
  ) {
    guard let lastOutput = outputs.last, lanes > 0 else { return }
    let last = from + (axis.start[lastOutput] + axis.count[lastOutput] - 1) * tapStride + lanes - 1
    precondition(
      from >= 0 && axis.start[outputs.lowerBound] >= 0 && (axis.count[lastOutput] == 0 || last < input.count)
        && to + (outputs.count - 1) * outputStride + lanes <= output.count, "resampling pass out of bounds")
    let half = Int32(1 << (precisionBits - 1))
    var acc = [Int32](repeating: 0, count: lanes)
    input.withUnsafeBufferPointer { src in
      output.withUnsafeMutableBufferPointer { dst in
        acc.withUnsafeMutableBufferPointer { sum in
          axis.weights.withUnsafeBufferPointer { weights in
            // Safety: taps of every output lie inside `input` (starts and ends ascend with the
            // output index and `last` was checked), and the outputs inside `output`, as checked above.
            let src = src.baseAddress!, dst = dst.baseAddress!, sum = sum.baseAddress!, weights = weights.baseAddress!
            for (k, i) in outputs.enumerated() {
              let base = i * axis.kernelSize
              let o = to + k * outputStride
              if lanes == 3 {
                var (a, b, c) = (half, half, half)
                for j in 0..<axis.count[i] {
                  let w = weights[base + j]
                  let p = src + from + (axis.start[i] + j) * tapStride
                  a &+= Int32(p[0]) &* w
                  b &+= Int32(p[1]) &* w
                  c &+= Int32(p[2]) &* w
                }
                dst[o] = clip8(Int(a))
                dst[o + 1] = clip8(Int(b))
                dst[o + 2] = clip8(Int(c))
                continue
              }
              for l in 0..<lanes { sum[l] = half }
              for j in 0..<axis.count[i] {
                let w = weights[base + j]
                let p = src + from + (axis.start[i] + j) * tapStride
                for l in 0..<lanes { sum[l] &+= Int32(p[l]) &* w }
              }
              for l in 0..<lanes { dst[o + l] = clip8(Int(sum[l])) }
            }
          }
        }
      }
    }
  }

  /// The whole image resized to `width x height` (PIL's `resize((width, height), BILINEAR)`).
  public static func resized(_ image: RGBImage, width: Int, height: Int) -> RGBImage {
    RGBImage(
      width: width, height: height,
      pixels: resized(image, width: width, height: height, rows: 0..<height, columns: 0..<width))
  }
}
