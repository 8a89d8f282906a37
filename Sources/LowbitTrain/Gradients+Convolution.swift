import LowbitCore

/// The gradient rule of Conv (1-D and 2-D, NCHW, any group count, stride, padding, dilation).
extension GradientRules {
  static let convolutionRules: [String: GradientRule] = ["Conv": GradientRule(conv)]

  /// With `cols_g` the im2col matrix of group `g` (`Im2col`), the forward pass is
  /// `Y_g = W_g cols_g + b` with `W_g` [M/G, C/G * KH * KW] and `Y_g` [M/G, N * OH * OW]. So
  /// `dW_g = dY_g cols_g^T`, `d cols_g = W_g^T dY_g` (scattered back to `dX` by col2im) and
  /// `db[m] = sum_{n, p} dY[n, m, p]`. Each product is one sgemm over the whole batch, so the
  /// sums over images and positions run in a fixed order.
  static func conv(_ ctx: BackwardContext) throws -> [Tensor?] {
    let x = try ctx.input(0), w = try ctx.input(1)
    guard x.rank == 3 || x.rank == 4, w.rank == x.rank else {
      throw ctx.error("only 1-D and 2-D convolutions have gradients (input \(x.shape))")
    }
    let geometry = try WindowGeometry(ctx.forward, input: Array(x.shape[2...]), kernel: Array(w.shape[2...]))
    let group = try ctx.forward.int("group", default: 1)
    let n = x.shape[0], c = x.shape[1], m = w.shape[0]
    guard group >= 1, c % group == 0, m % group == 0 else { throw ctx.error("group \(group) does not fit \(w.shape)") }
    let cg = c / group, mg = m / group, p = geometry.outputPlane, kg = cg * geometry.taps
    let dy = ctx.outputGradient().floats
    let xs = x.floats, ws = w.floats
    var dx: [Float]? = ctx.wants(0) ? [Float](repeating: 0, count: x.count) : nil
    var dw: [Float]? = ctx.wants(1) ? [Float](repeating: 0, count: w.count) : nil
    for g in 0..<group where dx != nil || dw != nil {
      let im = Im2col(geometry: geometry, images: n, channels: c, firstChannel: g * cg, groupChannels: cg)
      // dY_g [Mg, N * P]: output channel rows of group g, images side by side.
      var dyg = [Float](repeating: 0, count: mg * n * p)
      for o in 0..<mg {
        for image in 0..<n {
          let src = (image * m + g * mg + o) * p
          dyg.replaceSubrange((o * n * p + image * p)..<(o * n * p + (image + 1) * p), with: dy[src..<(src + p)])
        }
      }
      if dw != nil {
        let cols = im.gather(xs)
        let dwg = MatrixProduct.product(dyg, cols, m: mg, n: kg, k: n * p, transB: true)
        dw!.replaceSubrange((g * mg * kg)..<((g + 1) * mg * kg), with: dwg)
      }
      if dx != nil {
        let wg = Array(ws[(g * mg * kg)..<((g + 1) * mg * kg)])
        let dcols = MatrixProduct.product(wg, dyg, m: kg, n: n * p, k: mg, transA: true)
        im.scatterAdd(dcols, into: &dx!)
      }
    }
    var db: Tensor?
    if ctx.wants(2), let bias = ctx.forward.optionalInput(2) {
      var sums = [Double](repeating: 0, count: m)
      for image in 0..<n {
        for o in 0..<m {
          let base = (image * m + o) * p
          var s = 0.0
          for i in 0..<p { s += Double(dy[base + i]) }
          sums[o] += s
        }
      }
      db = Tensor(shape: bias.shape, floats: sums.map { Float($0) })
    }
    return [dx.map { Tensor(shape: x.shape, floats: $0) }, dw.map { Tensor(shape: w.shape, floats: $0) }, db]
  }
}
