import Dispatch

/// One 2-D convolution over raw buffers (NCHW input, OIHW weight, NCHW output), with the bias
/// and the fused activation applied in the kernels' last pass over each output row.
///
/// Every output element is written exactly once, so `y` may be uninitialized.
struct ConvJob {
  let x: UnsafePointer<Float>
  let w: UnsafePointer<Float>
  let y: UnsafeMutablePointer<Float>
  /// `outChannels` floats, or nil.
  let bias: UnsafePointer<Float>?
  let activation: FusedActivation?
  let batch: Int, channels: Int, outChannels: Int, group: Int
  let geo: ConvGeometry

  var inH: Int { geo.input[0] }
  var inW: Int { geo.input[1] }
  var outH: Int { geo.output[0] }
  var outW: Int { geo.output[1] }
  var kH: Int { geo.kernel[0] }
  var kW: Int { geo.kernel[1] }
  var isPadded: Bool { geo.padBegin.contains { $0 > 0 } || geo.padEnd.contains { $0 > 0 } }

  /// The operands as buffers for worker threads: `x` [N, C, H, W], `w` [M, C/G, kH, kW], `y`
  /// [N, M, outH, outW], `bias` [M].
  var shared: (x: SharedBuffer<Float>, w: SharedBuffer<Float>, y: SharedBuffer<Float>, bias: SharedBuffer<Float>?) {
    (SharedBuffer(start: x, count: batch * channels * inH * inW),
     SharedBuffer(start: w, count: outChannels * (channels / group) * kH * kW),
     SharedBuffer(start: y, count: batch * outChannels * outH * outW),
     bias.map { SharedBuffer(start: $0, count: outChannels) })
  }

  /// 1x1, stride 1, no padding: the input planes are already the GEMM's right-hand matrix.
  var isPointwise: Bool { kH == 1 && kW == 1 && geo.strides == [1, 1] && !isPadded }

  /// Writes `dst[j] = act(src[j] + b)` for `j < count` (`src` may equal `dst`).
  @inline(__always)
  static func finish(
    _ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, count: Int, bias b: Float,
    _ activation: FusedActivation?
  ) {
    if let act = activation {
      let lo = act.lower, hi = act.upper
      for j in 0..<count {
        let v = src[j] + b
        dst[j] = v < lo ? lo : (v > hi ? hi : v)
      }
    } else {
      for j in 0..<count { dst[j] = src[j] + b }
    }
  }
}

/// The rows `rows` of output image `image`: a unit of GEMM work (its columns are contiguous in
/// the unfolded matrix).
struct ConvSegment {
  var image: Int
  var rows: Range<Int>
}

extension ConvJob {
  /// Splits `batch * outH` output rows into `threads` contiguous runs of equal size (so a
  /// batch of 1 still keeps every thread busy), each cut into chunks of at most about
  /// `maxColumns` GEMM columns (never less than one output row).
  static func chunks(
    batch: Int, outH: Int, rowWidth: Int, threads: Int, maxColumns: Int
  ) -> [[[ConvSegment]]] {
    let units = batch * outH
    let rowsPerChunk = max(1, maxColumns / max(rowWidth, 1))
    return (0..<threads).map { t in
      var chunks: [[ConvSegment]] = []
      var unit = units * t / threads
      let end = units * (t + 1) / threads
      while unit < end {
        var chunk: [ConvSegment] = []
        var budget = rowsPerChunk
        while unit < end && budget > 0 {
          let image = unit / outH, row = unit % outH
          let take = min(budget, outH - row, end - unit)
          chunk.append(ConvSegment(image: image, rows: row..<(row + take)))
          unit += take
          budget -= take
        }
        chunks.append(chunk)
      }
      return chunks
    }
  }

  /// Grouped convolution as GEMMs `W_g [M/G, C/G*kH*kW] x col [C/G*kH*kW, columns]`, where
  /// `col` unfolds the patches of a chunk of output rows (possibly from several images, so small
  /// feature maps still make wide GEMMs). The input group is first copied into a zero-padded
  /// buffer, so unfolding has no bounds checks; at stride 1 the unfolded rows are *wide*: one
  /// contiguous copy of `rows * paddedW` floats per (channel, tap), whose extra `paddedW - outW`
  /// columns per output row are computed and dropped. 1x1 stride-1 unpadded convolutions skip
  /// the unfolding and multiply the input planes in place.
  ///
  /// Work is split over threads by output rows; each output element is one dot product over
  /// the same `C/G*kH*kW` terms whatever the split, so results do not depend on the batch or
  /// the thread count.
  func im2colGemm() {
    let cg = channels / group, mg = outChannels / group
    let kDim = cg * kH * kW
    let (outH, outW, inH, inW) = (outH, outW, inH, inW)
    let sh = geo.strides[0], sw = geo.strides[1], dh = geo.dilations[0], dw = geo.dilations[1]
    let ph = geo.padBegin[0], pw = geo.padBegin[1]
    let paddedH = inH + ph + geo.padEnd[0], paddedW = inW + pw + geo.padEnd[1]
    let pointwise = isPointwise
    // Wide rows at stride 1 unless the dropped columns would cost more than a third extra.
    let wide = !pointwise && sh == 1 && sw == 1 && 3 * (paddedW - outW) <= outW
    let rowWidth = wide ? paddedW : outW
    // Tail a wide copy reads past the last padded plane (only into dropped columns).
    let slack = wide ? (kW - 1) * dw : 0
    let copyInput = !pointwise && (isPadded || slack > 0)
    let plane = copyInput ? paddedH * paddedW : inH * inW
    let work = batch * outChannels * outH * outW * kDim
    let threads = work < 1 << 17 ? 1 : min(kernelThreadCount, batch * outH)
    // About 256 KiB of unfolded patches per GEMM, but at least 256 columns: deep layers (large
    // kDim) run much slower as many narrow GEMMs (resnet18: +40% with one output row each).
    let maxColumns = pointwise ? outH * outW : max(rowWidth, 256, (1 << 16) / max(kDim, 1))
    let plan = ConvJob.chunks(batch: batch, outH: outH, rowWidth: rowWidth, threads: threads, maxColumns: maxColumns)
    let operands = shared, activation = activation
    let (channels, outChannels, group, kH, kW) = (channels, outChannels, group, kH, kW)

    // Safety: `x`, `w`, `y`, `bias` hold the element counts the checked shapes give; the padded
    // buffer holds `cg` padded planes plus `slack` zeroed floats, `col` and `tmp` the widest
    // chunk; every unfolded read stays inside its (padded) input group, threads write disjoint
    // output rows.
    let runThread: @Sendable (Int) -> Void = { t in
      let chunks = plan[t]
      if chunks.isEmpty { return }
      let x = UnsafePointer(operands.x.pointer()), w = UnsafePointer(operands.w.pointer()), y = operands.y.pointer()
      let bias = operands.bias.map { UnsafePointer($0.pointer()) }
      let maxWidth = chunks.map { $0.reduce(0) { $0 + $1.rows.count * rowWidth } }.max() ?? 0
      let padBuffer: UnsafeMutablePointer<Float>? = copyInput ? .allocate(capacity: cg * plane + slack) : nil
      let col: UnsafeMutablePointer<Float>? = pointwise ? nil : .allocate(capacity: kDim * maxWidth)
      let tmp: UnsafeMutablePointer<Float>? = pointwise ? nil : .allocate(capacity: mg * maxWidth)
      defer { padBuffer?.deallocate(); col?.deallocate(); tmp?.deallocate() }
      padBuffer?.advanced(by: cg * plane).initialize(repeating: 0, count: slack)
      var padded: (image: Int, group: Int)? = nil

      /// The input planes of `group gi` of `image`, zero-padded when needed.
      func source(_ image: Int, _ gi: Int) -> UnsafePointer<Float> {
        let src = x + (image * channels + gi * cg) * inH * inW
        guard let buf = padBuffer else { return src }
        if padded?.image != image || padded?.group != gi {
          for c in 0..<cg {
            let s = src + c * inH * inW
            let d = buf + c * plane
            d.initialize(repeating: 0, count: ph * paddedW)
            for h in 0..<inH {
              let line = d + (ph + h) * paddedW
              line.initialize(repeating: 0, count: pw)
              (line + pw).update(from: s + h * inW, count: inW)
              (line + pw + inW).initialize(repeating: 0, count: paddedW - pw - inW)
            }
            (d + (ph + inH) * paddedW).initialize(repeating: 0, count: (paddedH - ph - inH) * paddedW)
          }
          padded = (image, gi)
        }
        return UnsafePointer(buf)
      }

      for chunk in chunks {
        for gi in 0..<group {
          let a = w + gi * mg * kDim
          if pointwise {
            for seg in chunk {
              let hw = inH * inW
              let b = x + (seg.image * channels + gi * cg) * hw + seg.rows.lowerBound * outW
              let c = y + (seg.image * outChannels + gi * mg) * hw + seg.rows.lowerBound * outW
              let n = seg.rows.count * outW
              sgemm(transA: false, transB: false, m: mg, n: n, k: kDim, a: a, lda: kDim, b: b, ldb: hw, c: c, ldc: hw)
              if bias != nil || activation != nil {
                for m in 0..<mg {
                  let row = c + m * hw
                  ConvJob.finish(row, row, count: n, bias: bias?[gi * mg + m] ?? 0, activation)
                }
              }
            }
            continue
          }
          let width = chunk.reduce(0) { $0 + $1.rows.count * rowWidth }
          var offset = 0
          for seg in chunk {
            let src = source(seg.image, gi)
            var k = 0
            for ci in 0..<cg {
              let p = src + ci * plane
              for ki in 0..<kH {
                for kj in 0..<kW {
                  let dst = col! + k * width + offset
                  if wide {
                    dst.update(from: p + (seg.rows.lowerBound + ki * dh) * paddedW + kj * dw, count: seg.rows.count * paddedW)
                  } else {
                    for (i, oh) in seg.rows.enumerated() {
                      let line = dst + i * outW
                      let s = p + (oh * sh + ki * dh) * paddedW + kj * dw
                      if sw == 1 {
                        line.update(from: s, count: outW)
                      } else {
                        for ow in 0..<outW { line[ow] = s[ow * sw] }
                      }
                    }
                  }
                  k += 1
                }
              }
            }
            offset += seg.rows.count * rowWidth
          }
          sgemm(transA: false, transB: false, m: mg, n: width, k: kDim, a: a, lda: kDim, b: col!, ldb: width, c: tmp!, ldc: width)
          offset = 0
          for seg in chunk {
            for m in 0..<mg {
              let b = bias?[gi * mg + m] ?? 0
              let dstPlane = y + (seg.image * outChannels + gi * mg + m) * outH * outW
              let srcRow = tmp! + m * width + offset
              if wide {
                for (i, oh) in seg.rows.enumerated() {
                  ConvJob.finish(dstPlane + oh * outW, srcRow + i * rowWidth, count: outW, bias: b, activation)
                }
              } else {
                ConvJob.finish(dstPlane + seg.rows.lowerBound * outW, srcRow, count: seg.rows.count * outW, bias: b, activation)
              }
            }
            offset += seg.rows.count * rowWidth
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
}


