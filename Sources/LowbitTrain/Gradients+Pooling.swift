import LowbitCore

/// Gradient rules of MaxPool, AveragePool and GlobalAveragePool (NCHW, 1-D or 2-D windows).
extension GradientRules {
  static let poolingRules: [String: GradientRule] = [
    "MaxPool": GradientRule(inputs: [0]) { try pool($0, max: true) },
    "AveragePool": GradientRule(inputs: [0]) { try pool($0, max: false) },
    "GlobalAveragePool": GradientRule(inputs: [0], globalAveragePool),
  ]

  /// MaxPool: `dX[argmax of window] += dY[window]`, the argmax being the first largest in-bounds
  /// element in row-major window order (the element the forward kernel picks).
  /// AveragePool: `dX[i] += dY[window] / count` for every in-bounds `i` of the window, `count`
  /// being the in-bounds size (or, with `count_include_pad`, the window clipped to the padded
  /// input), as in the forward kernel.
  static func pool(_ ctx: BackwardContext, max isMax: Bool) throws -> [Tensor?] {
    let x = try ctx.input(0)
    guard x.rank == 3 || x.rank == 4, let kernel = try ctx.forward.ints("kernel_shape") else {
      throw ctx.error("only 1-D and 2-D pools with kernel_shape have gradients (input \(x.shape))")
    }
    let ceilMode = try ctx.forward.int("ceil_mode", default: 0) != 0
    let includePad = try ctx.forward.int("count_include_pad", default: 0) != 0
    let g = try WindowGeometry(ctx.forward, input: Array(x.shape[2...]), kernel: kernel, ceilMode: ceilMode)
    let (ih, iw, oh, ow) = (g.input[0], g.input[1], g.output[0], g.output[1])
    let planes = x.shape[0] * x.shape[1]
    let dy = ctx.outputGradient().floats, xs = x.floats
    var dx = [Float](repeating: 0, count: x.count)
    dy.withUnsafeBufferPointer { gp in
      xs.withUnsafeBufferPointer { xp in
        dx.withUnsafeMutableBufferPointer { dp in
          // Safety: plane p reads and writes only its own ih*iw inputs and oh*ow gradients; `span`
          // keeps every tap inside the input.
          let (gs, xs, ds) = (SharedBuffer(gp), SharedBuffer(xp), SharedBuffer(dp))
          parallelChunks(planes, costPerItem: oh * ow * g.taps) { range in
            let (gb, xb, db) = (UnsafePointer(gs.pointer()), UnsafePointer(xs.pointer()), ds.pointer())
            let (kH, kW) = (g.kernel[0], g.kernel[1]), (sh, sw) = (g.strides[0], g.strides[1])
            let (dh, dw) = (g.dilations[0], g.dilations[1]), (ph, pw) = (g.padBegin[0], g.padBegin[1])
            let (endH, endW) = (ih + g.padEnd[0], iw + g.padEnd[1])
            func span(_ start: Int, _ k: Int, _ d: Int, _ n: Int) -> Range<Int> {
              ConvGeometry.taps(from: start, kernel: k, dilation: d, size: n)
            }
            let columns = (0..<ow).map { span($0 * sw - pw, kW, dw, iw) }
            for plane in range {
              let src = xb + plane * ih * iw, dst = db + plane * ih * iw, grad = gb + plane * oh * ow
              for oy in 0..<oh {
                let y0 = oy * sh - ph
                let rows = span(y0, kH, dh, ih)
                for ox in 0..<ow {
                  let gv = grad[oy * ow + ox]
                  let x0 = ox * sw - pw, cols = columns[ox]
                  if isMax {
                    var best = -Float.infinity, arg = -1
                    for ki in rows {
                      let line = (y0 + ki * dh) * iw + x0
                      for kj in cols {
                        let v = src[line + kj * dw]
                        if arg < 0 || !(v <= best) { best = v; arg = line + kj * dw }
                      }
                    }
                    if arg >= 0 { dst[arg] += gv }
                  } else {
                    let count = includePad
                      ? (Swift.min(y0 + kH, endH) - y0) * (Swift.min(x0 + kW, endW) - x0)
                      : rows.count * cols.count
                    guard count > 0 else { continue }
                    let share = gv / Float(count)
                    for ki in rows {
                      let line = dst + (y0 + ki * dh) * iw + x0
                      for kj in cols { line[kj * dw] += share }
                    }
                  }
                }
              }
            }
          }
        }
      }
    }
    return [Tensor(shape: x.shape, floats: dx)]
  }

  /// `Y[n, c] = mean_i X[n, c, i]`: `dX[n, c, i] = dY[n, c] / (number of spatial elements)`.
  static func globalAveragePool(_ ctx: BackwardContext) throws -> [Tensor?] {
    let x = try ctx.input(0)
    let size = x.shape[2...].reduce(1, *)
    let dy = ctx.outputGradient().floats
    var dx = [Float](repeating: 0, count: x.count)
    for plane in 0..<dy.count {
      let share = dy[plane] / Float(size)
      for i in 0..<size { dx[plane * size + i] = share }
    }
    return [Tensor(shape: x.shape, floats: dx)]
  }
}
