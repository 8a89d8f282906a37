import LowbitCore

/// The patch matrix of a 2-D convolution group and its adjoint.
///
/// For images `0..<N`, channels `c0 ..< c0 + Cg` of an NCHW input and `P = OH * OW` output
/// positions, `cols` is the `[Cg * KH * KW, N * P]` row-major matrix
/// `cols[(c * KH + ki) * KW + kj, n * P + oy * OW + ox] = x[n, c0 + c, oy*sh - ph + ki*dh, ox*sw - pw + kj*dw]`
/// (0 where the index falls in the padding), so a group's output is `W_g [Mg, Cg*KH*KW] x cols`.
struct Im2col {
  let geometry: WindowGeometry
  let images: Int
  /// Channels of the whole input.
  let channels: Int
  /// First channel and channel count of the group.
  let firstChannel: Int
  let groupChannels: Int

  var rows: Int { groupChannels * geometry.taps }
  var columns: Int { images * geometry.outputPlane }

  /// `cols` from `x` (all channels, all images).
  func gather(_ x: [Float]) -> [Float] {
    var cols = [Float](repeating: 0, count: rows * columns)
    let g = geometry, ld = columns, plane = g.outputPlane
    let (c, c0, cg) = (channels, firstChannel, groupChannels)
    let (ih, iw, oh, ow, kh, kw) = (g.input[0], g.input[1], g.output[0], g.output[1], g.kernel[0], g.kernel[1])
    let (sh, sw, ph, pw, dh, dw) = (g.strides[0], g.strides[1], g.padBegin[0], g.padBegin[1], g.dilations[0], g.dilations[1])
    x.withUnsafeBufferPointer { xp in
      cols.withUnsafeMutableBufferPointer { cp in
        // Safety: image n reads only its own input planes (bounds-checked taps) and writes only its
        // column block n*P ..< (n+1)*P of each row, so parallel images never touch the same slot.
        let xBits = UInt(bitPattern: xp.baseAddress), cBits = UInt(bitPattern: cp.baseAddress)
        parallelChunks(images, costPerItem: cg * kh * kw * plane) { range in
          guard let xb = UnsafePointer<Float>(bitPattern: xBits),
                let cb = UnsafeMutablePointer<Float>(bitPattern: cBits) else { return }
          for n in range {
            for ch in 0..<cg {
              let src = xb + (n * c + c0 + ch) * ih * iw
              for ki in 0..<kh {
                for kj in 0..<kw {
                  let dst = cb + ((ch * kh + ki) * kw + kj) * ld + n * plane
                  let offset = kj * dw - pw, valid = Im2col.inside(ow, stride: sw, offset: offset, limit: iw)
                  for oy in 0..<oh {
                    let y = oy * sh - ph + ki * dh
                    guard y >= 0 && y < ih else { continue }
                    let d = dst + oy * ow, base = y * iw + offset
                    if sw == 1 {
                      for ox in valid { d[ox] = src[base + ox] }
                    } else {
                      for ox in valid { d[ox] = src[base + ox * sw] }
                    }
                  }
                }
              }
            }
          }
        }
      }
    }
    return cols
  }

  /// The adjoint of `gather` (col2im): `dx[n, c0 + c, y, x] += sum of the cols entries gathered
  /// from (y, x)`, taps summed in row order. Only the group's channels of `dx` change.
  func scatterAdd(_ cols: [Float], into dx: inout [Float]) {
    let g = geometry, ld = columns, plane = g.outputPlane
    let (c, c0, cg) = (channels, firstChannel, groupChannels)
    let (ih, iw, oh, ow, kh, kw) = (g.input[0], g.input[1], g.output[0], g.output[1], g.kernel[0], g.kernel[1])
    let (sh, sw, ph, pw, dh, dw) = (g.strides[0], g.strides[1], g.padBegin[0], g.padBegin[1], g.dilations[0], g.dilations[1])
    cols.withUnsafeBufferPointer { cp in
      dx.withUnsafeMutableBufferPointer { dp in
        // Safety: image n writes only its own planes of dx and reads only its own column block.
        let cBits = UInt(bitPattern: cp.baseAddress), dBits = UInt(bitPattern: dp.baseAddress)
        parallelChunks(images, costPerItem: cg * kh * kw * plane) { range in
          guard let cb = UnsafePointer<Float>(bitPattern: cBits),
                let db = UnsafeMutablePointer<Float>(bitPattern: dBits) else { return }
          for n in range {
            for ch in 0..<cg {
              let dst = db + (n * c + c0 + ch) * ih * iw
              for ki in 0..<kh {
                for kj in 0..<kw {
                  let src = cb + ((ch * kh + ki) * kw + kj) * ld + n * plane
                  let offset = kj * dw - pw, valid = Im2col.inside(ow, stride: sw, offset: offset, limit: iw)
                  for oy in 0..<oh {
                    let y = oy * sh - ph + ki * dh
                    guard y >= 0 && y < ih else { continue }
                    let s = src + oy * ow, base = y * iw + offset
                    if sw == 1 {
                      for ox in valid { dst[base + ox] += s[ox] }
                    } else {
                      for ox in valid { dst[base + ox * sw] += s[ox] }
                    }
                  }
                }
              }
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
