import LowbitCore

/// The gradient rule of ConvTranspose. Per sample and group the forward pass scatters the
/// columns `W_g^T x_g` ([M' K, P]) into the output; so with `cols` the output gradient gathered
/// back along the same map (`ConvTransposeGeometry.targets`), `dx_g = W_g cols`,
/// `dW_g = sum_n x_g cols^T` and `db[m] = sum dY[:, m]`.
extension GradientRules {
  static let convolutionTransposeRules: [String: GradientRule] = ["ConvTranspose": GradientRule(convTranspose)]

  static func convTranspose(_ ctx: BackwardContext) throws -> [Tensor?] {
    let x = try ctx.input(0), w = try ctx.input(1)
    guard x.dtype.isFloatingPoint, w.dtype.isFloatingPoint, x.rank >= 3, w.rank == x.rank else {
      throw ctx.error("input \(x.shape) and weight \(w.shape) have no ConvTranspose gradient")
    }
    let spatial = Array(x.shape[2...]), kernel = Array(w.shape[2...])
    let geometry = try ConvTransposeGeometry(ctx.forward, input: spatial, kernel: kernel)
    let group = try ctx.forward.int("group", default: 1)
    let n = x.shape[0], channels = x.shape[1], perGroupIn = channels / group, perGroupOut = w.shape[1]
    let outChannels = perGroupOut * group
    let positions = spatial.reduce(1, *), taps = kernel.reduce(1, *), outPositions = geometry.output.reduce(1, *)
    let rows = perGroupOut * taps
    let target = geometry.targets(input: spatial)
    let xs = x.floats, ws = w.floats, dy = ctx.outputGradient().floats
    var dx = [Float](repeating: 0, count: x.count), dw = [Float](repeating: 0, count: w.count)
    var columns = [Float](repeating: 0, count: rows * positions)
    for s in 0..<n {
      for g in 0..<group {
        for i in columns.indices { columns[i] = 0 }
        ConvTransposeGeometry.pairs(target, channels: perGroupOut, taps: taps, positions: positions,
                                    outputBase: (s * outChannels + g * perGroupOut) * outPositions, outputPlane: outPositions) { c, o in
          columns[c] = dy[o]
        }
        let wOffset = g * perGroupIn * rows, xOffset = (s * channels + g * perGroupIn) * positions
        if ctx.wants(0) {
          // dx_g [C', P] = W_g [C', M'K] cols [M'K, P].
          let product = MatrixProduct.product(Array(ws[wOffset..<(wOffset + perGroupIn * rows)]), columns,
                                              m: perGroupIn, n: positions, k: rows)
          for i in product.indices { dx[xOffset + i] = product[i] }
        }
        if ctx.wants(1) {
          // dW_g [C', M'K] += x_g [C', P] cols^T [P, M'K].
          let product = MatrixProduct.product(Array(xs[xOffset..<(xOffset + perGroupIn * positions)]), columns,
                                              m: perGroupIn, n: rows, k: positions, transB: true)
          for i in product.indices { dw[wOffset + i] += product[i] }
        }
      }
    }
    let db = ctx.wants(2)
      ? ctx.forward.optionalInput(2).map { channelSums(dy, images: n, channels: outChannels, plane: outPositions, shape: $0.shape) } : nil
    return [ctx.wants(0) ? Tensor(shape: x.shape, floats: dx) : nil, ctx.wants(1) ? Tensor(shape: w.shape, floats: dw) : nil, db]
  }
}
