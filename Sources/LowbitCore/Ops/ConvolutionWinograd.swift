import Dispatch

/// Winograd's minimal filtering F(2x2, 3x3) for 3x3, stride-1, undilated convolutions.
///
/// Each 2x2 block ("tile") of an output plane is `Y = A^T [sum_c (G g_c G^T) ⊙ (B^T d_c B)] A`,
/// where `d_c` is the 4x4 input window of channel `c` under the tile (zero in the padding), `g_c`
/// the 3x3 filter and
///
///     B^T = | 1  0 -1  0 |    G = | 1    0    0  |    A^T = | 1  1  1  0 |
///           | 0  1  1  0 |        | 1/2  1/2  1/2|          | 0  1 -1 -1 |
///           | 0 -1  1  0 |        | 1/2 -1/2  1/2|
///           | 0  1  0 -1 |        | 0    0    1  |
///
/// so the sum over channels is 16 matrix products (one per tile position `p` of the 4x4
/// transformed tile), `M_p [M/G, tiles] = U_p [M/G, C/G] x V_p [C/G, tiles]`: 16 multiplications
/// per tile and channel pair instead of the 36 of the direct form. The transforms only add, subtract
/// and halve, so the result differs from the direct sum by a few float roundings (about 1e-7
/// relative to the largest output).
extension ConvJob {
  /// True when the kernel is 3x3 at stride 1 without dilation (2-D), has enough channels for the
  /// transforms to pay off, and an output of at least 2x2.
  var prefersWinograd: Bool {
    kH == 3 && kW == 3 && geo.strides == [1, 1] && geo.dilations == [1, 1]
      && channels / group >= 8 && outChannels / group >= 8 && outH >= 2 && outW >= 2
      && batch * ((outH + 1) / 2) * ((outW + 1) / 2) >= ConvJob.winogradMinimumTiles
  }

  /// Calls with fewer tiles run im2col + sgemm instead: the filters are transformed on every call
  /// (`16 * M * C/G` values), which the cheaper products of a few tiles do not pay back.
  static let winogradMinimumTiles = 64

  /// Runs the convolution with F(2x2, 3x3). Work is split over threads by rows of tiles (each
  /// thread transforms a cache-sized chunk of tiles, multiplies, and transforms back); every
  /// output element is computed from its own tile with the same operations whatever the split, so
  /// results do not depend on the batch or the thread count (beyond the GEMM's own kernel choice).
  func winograd() {
    let cg = channels / group, mg = outChannels / group
    let tilesH = (outH + 1) / 2, tilesW = (outW + 1) / 2
    // Tile rows are stored 4-aligned: the vector loops then never store part of a vector (the
    // extra tiles of a row read real or zero inputs, are multiplied and dropped).
    let rowTiles = (tilesW + 3) & ~3
    let ph = geo.padBegin[0], pw = geo.padBegin[1]
    // The padded input covers every tile's 4x4 window: rows 0 ..< 2 * tilesH + 2.
    let paddedH = 2 * tilesH + 2, paddedW = 2 * tilesW + 2
    let plane = paddedH * paddedW
    let work = batch * outChannels * tilesH * tilesW * cg * 16
    let threads = work < 1 << 17 ? 1 : min(kernelThreadCount, batch * tilesH)
    // About 256 KiB of transformed inputs and products per chunk, but at least 64 tiles
    // (fm_resnet20 at batch 32: anything from 64 to 192 tiles per chunk runs within a few
    // percent; 16 tiles 15% slower, 256 10%).
    let maxTiles = max(64, (1 << 16) / (16 * (cg + mg)))
    let plan = ConvJob.chunks(batch: batch, outH: tilesH, rowWidth: rowTiles, threads: threads, maxColumns: maxTiles)
    let filters = UnsafeMutablePointer<Float>.allocate(capacity: 16 * outChannels * cg)
    defer { filters.deallocate() }
    ConvJob.transformFilters(w, count: outChannels * cg, into: filters)
    let operands = shared, activation = activation
    let transformed = SharedBuffer(start: filters, count: 16 * outChannels * cg)
    let (channels, outChannels, group, inH, inW, outH, outW) = (channels, outChannels, group, inH, inW, outH, outW)

    // Safety: `x`, `y`, `bias` hold the element counts the checked shapes give; `filters` holds
    // 16 * M * C/G floats; per thread, `padBuffer` holds `cg` padded planes, `v` 16 * cg and `m`
    // 16 * mg rows of the widest chunk; every window of a real tile lies inside a padded plane
    // (rows `2 * ty + 0..<4 < paddedH`, columns `2 * tx + 0..<4 < paddedW`), those of the extra
    // tiles of a row at most 6 floats past the row (the plane's slack); the output loop stores only
    // real output columns; threads write disjoint output rows.
    let runThread: @Sendable (Int) -> Void = { t in
      let chunks = plan[t]
      if chunks.isEmpty { return }
      let x = UnsafePointer(operands.x.pointer()), y = operands.y.pointer()
      let bias = operands.bias.map { UnsafePointer($0.pointer()) }
      let filters = UnsafePointer(transformed.pointer())
      let maxWidth = chunks.map { $0.reduce(0) { $0 + $1.rows.count * rowTiles } }.max() ?? 0
      let padBuffer = UnsafeMutablePointer<Float>.allocate(capacity: cg * plane + 8)
      let v = UnsafeMutablePointer<Float>.allocate(capacity: 16 * (cg * maxWidth + 32))
      let m = UnsafeMutablePointer<Float>.allocate(capacity: 16 * (mg * maxWidth + 32))
      let scratch = UnsafeMutablePointer<Float>.allocate(capacity: 4 * rowTiles)
      defer { padBuffer.deallocate(); v.deallocate(); m.deallocate(); scratch.deallocate() }
      padBuffer.initialize(repeating: 0, count: cg * plane + 8)
      var padded: (image: Int, group: Int)? = nil

      for chunk in chunks {
        let width = chunk.reduce(0) { $0 + $1.rows.count * rowTiles }
        // The 16 planes of V and M sit 128 bytes further apart than their size: at sizes that
        // are multiples of 4 KiB, the transforms' 16 streams would share cache sets (32 or 64
        // tiles per chunk ran 20-30% slower than 48).
        let vStride = cg * width + 32, mStride = mg * width + 32
        for gi in 0..<group {
          var offset = 0
          for seg in chunk {
            if padded?.image != seg.image || padded?.group != gi {
              let src = x + (seg.image * channels + gi * cg) * inH * inW
              ConvJob.copyPadded(src, into: padBuffer, planes: cg, inH: inH, inW: inW, top: ph, left: pw, paddedW: paddedW, plane: plane)
              padded = (seg.image, gi)
            }
            for c in 0..<cg {
              for ty in seg.rows {
                let dst = v + c * width + offset + (ty - seg.rows.lowerBound) * rowTiles
                ConvJob.winogradInputRow(padBuffer + c * plane + 2 * ty * paddedW, rowStride: paddedW, tiles: rowTiles, into: dst, stride: vStride)
              }
            }
            offset += seg.rows.count * rowTiles
          }
          for p in 0..<16 {
            sgemm(
              transA: false, transB: false, m: mg, n: width, k: cg, a: filters + (p * outChannels + gi * mg) * cg,
              lda: cg, b: v + p * vStride, ldb: width, c: m + p * mStride, ldc: width)
          }
          offset = 0
          for seg in chunk {
            for o in 0..<mg {
              let b = bias?[gi * mg + o] ?? 0
              let dstPlane = y + (seg.image * outChannels + gi * mg + o) * outH * outW
              for ty in seg.rows {
                let src = m + o * width + offset + (ty - seg.rows.lowerBound) * rowTiles
                ConvJob.winogradOutputRow(
                  src, stride: mStride, tiles: rowTiles, scratch: scratch, into: dstPlane + 2 * ty * outW, outW: outW,
                  rows: min(2, outH - 2 * ty), bias: b, activation)
              }
            }
            offset += seg.rows.count * rowTiles
          }
        }
      }
    }
    if threads > 1 {
      DispatchQueue.concurrentPerform(iterations: threads, execute: runThread)
    } else {
      runThread(0)
    }
  }

  /// `U_p[f] = (G g_f G^T)_p` for `count` 3x3 filters `g_f` (the weight's `[M][C/G]` filters in
  /// order), laid out `[16][count]`: for group `gi`, `U_p`'s rows `gi * M/G ..< (gi + 1) * M/G`
  /// are the `[M/G, C/G]` left factor of that group's products.
  ///
  /// Safety: `w` holds `9 * count` floats, `u` `16 * count`.
  static func transformFilters(_ w: UnsafePointer<Float>, count: Int, into u: UnsafeMutablePointer<Float>) {
    /// The 16 values of `G g G^T` for filters in vector lanes, from their nine taps `t[3i + j]`:
    /// column j of `G g` is (g_0j, (g_0j + g_1j + g_2j) / 2, (g_0j - g_1j + g_2j) / 2, g_2j), and
    /// row i of `(G g) G^T` combines that row's three values the same way.
    @inline(__always) func transform<V: SIMD>(_ t: (Int) -> V, _ store: (Int, V) -> Void) where V.Scalar == Float {
      @inline(__always) func column(_ j: Int) -> (V, V, V, V) {
        let (g0, g1, g2) = (t(j), t(3 + j), t(6 + j))
        return (g0, 0.5 * (g0 + g1 + g2), 0.5 * (g0 - g1 + g2), g2)
      }
      let c0 = column(0), c1 = column(1), c2 = column(2)
      @inline(__always) func row(_ i: Int, _ a0: V, _ a1: V, _ a2: V) {
        store(4 * i, a0)
        store(4 * i + 1, 0.5 * (a0 + a1 + a2))
        store(4 * i + 2, 0.5 * (a0 - a1 + a2))
        store(4 * i + 3, a2)
      }
      row(0, c0.0, c1.0, c2.0)
      row(1, c0.1, c1.1, c2.1)
      row(2, c0.2, c1.2, c2.2)
      row(3, c0.3, c1.3, c2.3)
    }
    var f = 0
    while f + 4 <= count {
      let g = w + 9 * f
      transform({ k in SIMD4(g[k], g[9 + k], g[18 + k], g[27 + k]) }) { p, v in
        UnsafeMutableRawPointer(u + (p * count + f)).storeBytes(of: v, as: SIMD4<Float>.self)
      }
      f += 4
    }
    while f < count {
      let g = w + 9 * f
      transform({ k in SIMD2(repeating: g[k]) }) { p, v in u[p * count + f] = v[0] }
      f += 1
    }
  }

  /// Copies `planes` input planes into zero-padded planes (the border was zeroed once and only
  /// the interior is rewritten): input `(h, w)` goes to `(top + h, left + w)`.
  @inline(__always)
  static func copyPadded(
    _ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>, planes: Int, inH: Int, inW: Int,
    top: Int, left: Int, paddedW: Int, plane: Int
  ) {
    for c in 0..<planes {
      let s = src + c * inH * inW, d = dst + c * plane + top * paddedW + left
      for h in 0..<inH { (d + h * paddedW).update(from: s + h * inW, count: inW) }
    }
  }

  /// `V_p[t] = (B^T d_t B)_p` for the `tiles` tiles (a multiple of 4) of one tile row of one
  /// channel: tile `t`'s window is rows `0..<4`, columns `2t ..< 2t + 4` of `top` (row stride
  /// `rowStride`), and `V_p` starts at `dst + p * stride`. With `d_ij` the window, `B^T d`
  /// combines rows (`d_0j - d_2j`, `d_1j + d_2j`, `d_2j - d_1j`, `d_1j - d_3j`) and `(B^T d) B`
  /// the columns of that the same way; four tiles at a time in vector lanes.
  @inline(__always)
  static func winogradInputRow(
    _ top: UnsafePointer<Float>, rowStride: Int, tiles: Int, into dst: UnsafeMutablePointer<Float>, stride: Int
  ) {
    let r0 = top, r1 = top + rowStride, r2 = top + 2 * rowStride, r3 = top + 3 * rowStride
    var t = 0
    while t < tiles {
      // Row i of the four windows: lanes are tiles, `.0 ... .3` the window's columns.
      @inline(__always) func row(_ r: UnsafePointer<Float>) -> (SIMD4<Float>, SIMD4<Float>, SIMD4<Float>, SIMD4<Float>) {
        let lo = UnsafeRawPointer(r + 2 &* t).loadUnaligned(as: SIMD8<Float>.self)
        let hi = UnsafeRawPointer(r + (2 &* t &+ 2)).loadUnaligned(as: SIMD8<Float>.self)
        return (lo.evenHalf, lo.oddHalf, hi.evenHalf, hi.oddHalf)
      }
      @inline(__always) func store(_ p: Int, _ v: SIMD4<Float>) {
        UnsafeMutableRawPointer(dst + (p &* stride &+ t)).storeBytes(of: v, as: SIMD4<Float>.self)
      }
      let x0 = row(r0), x1 = row(r1), x2 = row(r2), x3 = row(r3)
      let a = (x0.0 - x2.0, x0.1 - x2.1, x0.2 - x2.2, x0.3 - x2.3)
      store(0, a.0 - a.2); store(1, a.1 + a.2); store(2, a.2 - a.1); store(3, a.1 - a.3)
      let b = (x1.0 + x2.0, x1.1 + x2.1, x1.2 + x2.2, x1.3 + x2.3)
      store(4, b.0 - b.2); store(5, b.1 + b.2); store(6, b.2 - b.1); store(7, b.1 - b.3)
      let c = (x2.0 - x1.0, x2.1 - x1.1, x2.2 - x1.2, x2.3 - x1.3)
      store(8, c.0 - c.2); store(9, c.1 + c.2); store(10, c.2 - c.1); store(11, c.1 - c.3)
      let e = (x1.0 - x3.0, x1.1 - x3.1, x1.2 - x3.2, x1.3 - x3.3)
      store(12, e.0 - e.2); store(13, e.1 + e.2); store(14, e.2 - e.1); store(15, e.1 - e.3)
      t &+= 4
    }
  }

  /// One tile row of an output plane: with `m_p[t] = src[p * stride + t]` (p = 4i + j), tile `t`
  /// is `A^T m A` (`A^T` combines rows into `m_0j + m_1j + m_2j` and `m_1j - m_2j - m_3j`, then
  /// columns the same way) plus `bias`, clamped by `activation` (NaN passes through), written to
  /// rows `0..<rows` and columns `2t ..< min(2t + 2, outW)` of `dst` (row stride `outW`).
  /// `tiles` is a multiple of 4: the transform runs four tiles at a time in vector lanes into
  /// `scratch` (`4 * tiles` floats: the even and odd columns of both rows), then a scalar loop
  /// interleaves them into the output.
  @inline(__always)
  static func winogradOutputRow(
    _ src: UnsafePointer<Float>, stride: Int, tiles: Int, scratch: UnsafeMutablePointer<Float>,
    into dst: UnsafeMutablePointer<Float>, outW: Int, rows: Int, bias: Float, _ activation: FusedActivation?
  ) {
    var t = 0
    while t < tiles {
      @inline(__always) func m(_ p: Int) -> SIMD4<Float> {
        UnsafeRawPointer(src + (p &* stride &+ t)).loadUnaligned(as: SIMD4<Float>.self)
      }
      @inline(__always) func store(_ k: Int, _ v: SIMD4<Float>) {
        UnsafeMutableRawPointer(scratch + (k &* tiles &+ t)).storeBytes(of: v, as: SIMD4<Float>.self)
      }
      let a0 = m(0) + m(4) + m(8), a1 = m(1) + m(5) + m(9), a2 = m(2) + m(6) + m(10), a3 = m(3) + m(7) + m(11)
      store(0, a0 + a1 + a2)
      store(1, a1 - a2 - a3)
      let b0 = m(4) - m(8) - m(12), b1 = m(5) - m(9) - m(13), b2 = m(6) - m(10) - m(14), b3 = m(7) - m(11) - m(15)
      store(2, b0 + b1 + b2)
      store(3, b1 - b2 - b3)
      t &+= 4
    }
    let lo = activation?.lower ?? -.infinity, hi = activation?.upper ?? .infinity
    let pairs = outW / 2
    for r in 0..<rows {
      let even = scratch + 2 * r * tiles, odd = even + tiles, line = dst + r * outW
      for j in 0..<pairs {
        let u = even[j] + bias, v = odd[j] + bias
        line[2 * j] = u < lo ? lo : (u > hi ? hi : u)
        line[2 * j + 1] = v < lo ? lo : (v > hi ? hi : v)
      }
      if outW % 2 == 1 {
        let u = even[pairs] + bias
        line[outW - 1] = u < lo ? lo : (u > hi ? hi : u)
      }
    }
  }
}


