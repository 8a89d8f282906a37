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
          // Safety: plane p reads and writes only its own ih*iw inputs and oh*ow gradients; every
          // tap is bounds-checked before use.
          let gBits = UInt(bitPattern: gp.baseAddress), xBits = UInt(bitPattern: xp.baseAddress)
          let dBits = UInt(bitPattern: dp.baseAddress)
          parallelChunks(planes, costPerItem: oh * ow * g.taps) { range in
            guard let gb = UnsafePointer<Float>(bitPattern: gBits), let xb = UnsafePointer<Float>(bitPattern: xBits),
                  let db = UnsafeMutablePointer<Float>(bitPattern: dBits) else { return }
            for plane in range {
              let src = xb + plane * ih * iw, dst = db + plane * ih * iw, grad = gb + plane * oh * ow
              for oy in 0..<oh {
                for ox in 0..<ow {
                  let gv = grad[oy * ow + ox]
                  if isMax {
                    var best = -Float.infinity, arg = -1
                    for ki in 0..<g.kernel[0] {
                      let y = g.row(oy, ki)
                      guard y >= 0 && y < ih else { continue }
                      for kj in 0..<g.kernel[1] {
                        let xx = g.column(ox, kj)
                        guard xx >= 0 && xx < iw else { continue }
                        let v = src[y * iw + xx]
                        if arg < 0 || !(v <= best) { best = v; arg = y * iw + xx }
                      }
                    }
                    if arg >= 0 { dst[arg] += gv }
                  } else {
                    var taps: [Int] = []
                    for ki in 0..<g.kernel[0] {
                      let y = g.row(oy, ki)
                      guard y >= 0 && y < ih else { continue }
                      for kj in 0..<g.kernel[1] {
                        let xx = g.column(ox, kj)
                        if xx >= 0 && xx < iw { taps.append(y * iw + xx) }
                      }
                    }
                    var count = taps.count
                    if includePad {
                      let y0 = oy * g.strides[0] - g.padBegin[0], x0 = ox * g.strides[1] - g.padBegin[1]
                      let yEnd = Swift.min(y0 + g.kernel[0], ih + g.padEnd[0])
                      let xEnd = Swift.min(x0 + g.kernel[1], iw + g.padEnd[1])
                      count = (yEnd - y0) * (xEnd - x0)
                    }
                    guard count > 0 else { continue }
                    let share = gv / Float(count)
                    for t in taps { dst[t] += share }
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
