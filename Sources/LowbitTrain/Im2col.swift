import LowbitCore

/// The patch matrix of a 2-D convolution group for one image, and its adjoint.
///
/// For channels `c0 ..< c0 + Cg` of an NCHW input and `P = OH * OW` output positions, the
/// columns of image `n` are the `[Cg * KH * KW, P]` matrix
/// `cols[(c * KH + ki) * KW + kj, oy * OW + ox] = x[n, c0 + c, oy*sh - ph + ki*dh, ox*sw - pw + kj*dw]`
/// (0 where the index falls in the padding), so the group's output for that image is
/// `W_g [Mg, Cg*KH*KW] x cols`. The kernels write into buffers the caller provides, with a
/// leading dimension `ld >= P`, so several images can sit side by side in one matrix.
struct Im2col {
  let geometry: WindowGeometry
  /// Channels of the whole input.
  let channels: Int
  /// First channel and channel count of the group.
  let firstChannel: Int
  let groupChannels: Int

  var rows: Int { groupChannels * geometry.taps }

  /// Writes every entry of image `n`'s columns: `cols[k * ld + p]` for `k < rows`, `p < P`.
  ///
  /// Safety: `x` holds image `n`'s `channels` input planes; `cols` holds `rows` rows of `ld`.
  func gather(_ x: UnsafePointer<Float>, image n: Int, into cols: UnsafeMutablePointer<Float>, ld: Int) {
    let g = geometry
    let (c, c0, cg) = (channels, firstChannel, groupChannels)
    let (ih, iw, oh, ow, kh, kw) = (g.input[0], g.input[1], g.output[0], g.output[1], g.kernel[0], g.kernel[1])
    let (sh, sw, ph, pw, dh, dw) = (g.strides[0], g.strides[1], g.padBegin[0], g.padBegin[1], g.dilations[0], g.dilations[1])
    for ch in 0..<cg {
      let src = x + (n * c + c0 + ch) * ih * iw
      for ki in 0..<kh {
        for kj in 0..<kw {
          let dst = cols + ((ch * kh + ki) * kw + kj) * ld
          let offset = kj * dw - pw, valid = Im2col.inside(ow, stride: sw, offset: offset, limit: iw)
          for oy in 0..<oh {
            let y = oy * sh - ph + ki * dh
            let d = dst + oy * ow
            guard y >= 0 && y < ih else {
              d.update(repeating: 0, count: ow)
              continue
            }
            let base = y * iw + offset
            if valid.lowerBound > 0 { d.update(repeating: 0, count: valid.lowerBound) }
            if sw == 1 {
              (d + valid.lowerBound).update(from: src + base + valid.lowerBound, count: valid.count)
            } else {
              for ox in valid { d[ox] = src[base + ox * sw] }
            }
            if valid.upperBound < ow { (d + valid.upperBound).update(repeating: 0, count: ow - valid.upperBound) }
          }
        }
      }
    }
  }

  /// The adjoint of `gather` (col2im) for image `n`: `dx[n, c0 + c, y, x] += sum of the cols
  /// entries gathered from (y, x)`, taps summed in row order. Only the group's channels change.
  ///
  /// Safety: `dx` holds image `n`'s `channels` planes; `cols` holds `rows` rows of `ld`.
  func scatterAdd(_ cols: UnsafePointer<Float>, ld: Int, image n: Int, into dx: UnsafeMutablePointer<Float>) {
    let g = geometry
    let (c, c0, cg) = (channels, firstChannel, groupChannels)
    let (ih, iw, oh, ow, kh, kw) = (g.input[0], g.input[1], g.output[0], g.output[1], g.kernel[0], g.kernel[1])
    let (sh, sw, ph, pw, dh, dw) = (g.strides[0], g.strides[1], g.padBegin[0], g.padBegin[1], g.dilations[0], g.dilations[1])
    for ch in 0..<cg {
      let dst = dx + (n * c + c0 + ch) * ih * iw
      for ki in 0..<kh {
        for kj in 0..<kw {
          let src = cols + ((ch * kh + ki) * kw + kj) * ld
          let offset = kj * dw - pw, valid = Im2col.inside(ow, stride: sw, offset: offset, limit: iw)
          for oy in 0..<oh {
            let y = oy * sh - ph + ki * dh
            guard y >= 0 && y < ih else { continue }
            let s = src + oy * ow, base = y * iw + offset
            if sw == 1 {
              let d = dst + base
              for ox in valid { d[ox] += s[ox] }
            } else {
              for ox in valid { dst[base + ox * sw] += s[ox] }
            }
          }
        }
      }
    }
  }

  /// The output positions `o` in `0..<count` whose input index `o * stride + offset` lies in
  /// `0..<limit` (a contiguous range, as the index grows with `o`), so the copy loops need no
  /// per-element bounds test; positions outside it read or receive padding.
  @inline(__always) static func inside(_ count: Int, stride: Int, offset: Int, limit: Int) -> Range<Int> {
    let lower = offset >= 0 ? 0 : (-offset + stride - 1) / stride
    let upper = limit - 1 - offset < 0 ? 0 : min(count, (limit - 1 - offset) / stride + 1)
    return min(lower, upper)..<upper
  }
}
