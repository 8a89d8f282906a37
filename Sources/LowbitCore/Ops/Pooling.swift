extension Ops {
  static let poolingKernels: [String: Kernel] = [
    "MaxPool": { try pool($0, max: true) },
    "AveragePool": { try pool($0, max: false) },
    "GlobalAveragePool": { try globalPool($0, max: false) },
    "GlobalMaxPool": { try globalPool($0, max: true) },
  ]

  /// MaxPool / AveragePool over 1-D or 2-D windows (NCHW). Max ignores padding; average divides
  /// by the window's in-bounds count unless `count_include_pad` = 1 (then by the padded window,
  /// clipped to the padded input as ONNX Runtime does).
  static func pool(_ ctx: KernelContext, max isMax: Bool) throws -> [Tensor] {
    let x = try ctx.floatInput(0)
    guard x.rank == 3 || x.rank == 4 else {
      throw ctx.error("input has \(x.rank) dims; only 1-D and 2-D pooling is supported", .unsupported)
    }
    guard let kernel = try ctx.ints("kernel_shape") else {
      throw ctx.error("attribute 'kernel_shape' is required")
    }
    if ctx.node.outputs.count > 1 && !(ctx.node.outputs[1].isEmpty) {
      throw ctx.error("the Indices output is not supported", .unsupported)
    }
    let ceilMode = try ctx.int("ceil_mode", default: 0) != 0
    let includePad = try ctx.int("count_include_pad", default: 0) != 0
    if !isMax, try ctx.ints("dilations").map({ $0.contains { $0 != 1 } }) == true, ctx.opset < 19 {
      throw ctx.error("dilations need opset 19 for AveragePool")
    }
    var geo = try ConvGeometry(ctx, input: Array(x.shape[2...]), kernel: kernel, ceilMode: ceilMode)
    let outShape = Array(x.shape[0..<2]) + geo.output
    let total = try checkedElementCount(outShape, ctx)
    if x.rank == 3 { geo = geo.lifted() }
    let g = geo
    let inH = g.input[0], inW = g.input[1], outH = g.output[0], outW = g.output[1]
    let planes = x.shape[0] * x.shape[1]
    var y = [Float](repeating: 0, count: total)
    let xs = x.floats
    // Safety: window indices are checked against the input bounds before each read.
    xs.withUnsafeBufferPointer { xp in
      y.withUnsafeMutableBufferPointer { yp in
        let (sx, sy) = (SharedBuffer(xp), SharedBuffer(yp))
        parallelChunks(planes, costPerItem: outH * outW * g.kernel[0] * g.kernel[1]) { range in
          let xb = UnsafePointer(sx.pointer()), yb = sy.pointer()
          // In-bounds kernel offsets per output column, computed once: no bounds tests inside.
          let sw = g.strides[1], pw = g.padBegin[1], dw = g.dilations[1], kW = g.kernel[1]
          let sh = g.strides[0], ph = g.padBegin[0], dh = g.dilations[0], kH = g.kernel[0]
          func span(_ start: Int, _ k: Int, _ d: Int, _ n: Int) -> Range<Int> {
            ConvGeometry.taps(from: start, kernel: k, dilation: d, size: n)
          }
          let columns = (0..<outW).map { span($0 * sw - pw, kW, dw, inW) }
          let (endH, endW) = (inH + g.padEnd[0], inW + g.padEnd[1])
          guard sh < kH || sw < kW else {
            // Windows that do not overlap: reduce each window directly.
            for p in range {
              let src = xb + p * inH * inW, dst = yb + p * outH * outW
              for oh in 0..<outH {
                let h0 = oh * sh - ph
                let rows = span(h0, kH, dh, inH)
                for ow in 0..<outW {
                  let w0 = ow * sw - pw
                  let cols = columns[ow]
                  var acc: Float = isMax ? -.infinity : 0
                  for ki in rows {
                    let line = src + (h0 + ki * dh) * inW + w0
                    if isMax {
                      for kj in cols { let v = line[kj * dw]; if !(v <= acc) { acc = v } }
                    } else {
                      for kj in cols { acc += line[kj * dw] }
                    }
                  }
                  if !isMax {
                    var count = rows.count * cols.count
                    if includePad {
                      count = (Swift.min(h0 + kH, endH) - h0) * (Swift.min(w0 + kW, endW) - w0)
                    }
                    acc = count > 0 ? acc / Float(count) : 0
                  }
                  dst[oh * outW + ow] = acc
                }
              }
            }
            return
          }
          // Overlapping windows, separably: reduce each input row over every output column's
          // taps, then those rows over each output row's taps (kH + kW steps, not kH * kW).
          var rowReduced = [Float](repeating: 0, count: inH * outW)
          let full = columns.indices.filter { columns[$0] == 0..<kW }
          let interior = (full.first ?? 0)..<(full.last.map { $0 + 1 } ?? 0)
          for p in range {
            let src = xb + p * inH * inW, dst = yb + p * outH * outW
            rowReduced.withUnsafeMutableBufferPointer { rp in
              let r = rp.baseAddress!
              for ih in 0..<inH {
                let line = src + ih * inW, out = r + ih * outW
                for ow in 0..<outW where !interior.contains(ow) {
                  let w0 = ow * sw - pw
                  var acc: Float = isMax ? -.infinity : 0
                  if isMax {
                    for kj in columns[ow] { let v = line[w0 + kj * dw]; if !(v <= acc) { acc = v } }
                  } else {
                    for kj in columns[ow] { acc += line[w0 + kj * dw] }
                  }
                  out[ow] = acc
                }
                // Columns whose window lies inside the row: tap by tap over all of them (vectorizes).
                for ow in interior { out[ow] = line[ow * sw - pw] }
                for kj in 1..<kW {
                  let shifted = line + kj * dw
                  if isMax {
                    for ow in interior { let v = shifted[ow * sw - pw]; if !(v <= out[ow]) { out[ow] = v } }
                  } else {
                    for ow in interior { out[ow] += shifted[ow * sw - pw] }
                  }
                }
              }
              for oh in 0..<outH {
                let h0 = oh * sh - ph
                let rows = span(h0, kH, dh, inH)
                let out = dst + oh * outW
                if rows.isEmpty {
                  for ow in 0..<outW { out[ow] = isMax ? -.infinity : 0 }
                  continue
                }
                let first = r + (h0 + rows.lowerBound * dh) * outW
                for ow in 0..<outW { out[ow] = first[ow] }
                for ki in rows.dropFirst() {
                  let line = r + (h0 + ki * dh) * outW
                  if isMax {
                    for ow in 0..<outW { let v = line[ow]; if !(v <= out[ow]) { out[ow] = v } }
                  } else {
                    for ow in 0..<outW { out[ow] += line[ow] }
                  }
                }
                guard !isMax else { continue }
                for ow in 0..<outW {
                  let w0 = ow * sw - pw
                  let count = includePad
                    ? (Swift.min(h0 + kH, endH) - h0) * (Swift.min(w0 + kW, endW) - w0)
                    : rows.count * columns[ow].count
                  out[ow] = count > 0 ? out[ow] / Float(count) : 0
                }
              }
            }
          }
        }
      }
    }
    return [Tensor(shape: outShape, floats: y)]
  }

  /// GlobalAveragePool / GlobalMaxPool: reduce every spatial dim to 1.
  static func globalPool(_ ctx: KernelContext, max isMax: Bool) throws -> [Tensor] {
    let x = try ctx.floatInput(0)
    guard x.rank >= 2 else { throw ctx.error("input needs at least 2 dims, has \(x.rank)") }
    let planes = x.shape[0] * x.shape[1]
    let size = x.shape[2...].reduce(1, *)
    let xs = x.floats
    var y = [Float](repeating: 0, count: planes)
    for p in 0..<planes {
      if isMax {
        var m = -Float.infinity
        for i in 0..<size { m = Swift.max(m, xs[p * size + i]) }
        y[p] = m
      } else {
        var s: Float = 0
        for i in 0..<size { s += xs[p * size + i] }
        y[p] = size > 0 ? s / Float(size) : 0
      }
    }
    return [Tensor(shape: Array(x.shape[0..<2]) + [Int](repeating: 1, count: x.rank - 2), floats: y)]
  }
}
