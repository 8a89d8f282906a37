import LowbitCore

/// The gradient rule of Conv (1-D and 2-D, NCHW, any group count, stride, padding, dilation).
extension GradientRules {
  static let convolutionRules: [String: GradientRule] = ["Conv": GradientRule(conv)]

  /// With `cols_g` the im2col matrix of group `g` (`Im2col`), the forward pass is
  /// `Y_g = W_g cols_g + b` with `W_g` [M/G, C/G * KH * KW] and `Y_g` [M/G, N * OH * OW]. So
  /// `dW_g = dY_g cols_g^T`, `d cols_g = W_g^T dY_g` (scattered back to `dX` by col2im) and
  /// `db[m] = sum_{n, p} dY[n, m, p]`; `ConvolutionGradient` computes the first two over
  /// cache-sized chunks of images, in a fixed order for a given thread count.
  static func conv(_ ctx: BackwardContext) throws -> [Tensor?] {
    let x = try ctx.input(0), w = try ctx.input(1)
    guard x.rank == 3 || x.rank == 4, w.rank == x.rank else {
      throw ctx.error("only 1-D and 2-D convolutions have gradients (input \(x.shape))")
    }
    let geometry = try WindowGeometry(ctx.forward, input: Array(x.shape[2...]), kernel: Array(w.shape[2...]))
    let group = try ctx.forward.int("group", default: 1)
    let n = x.shape[0], c = x.shape[1], m = w.shape[0]
    guard group >= 1, c % group == 0, m % group == 0 else { throw ctx.error("group \(group) does not fit \(w.shape)") }
    let p = geometry.outputPlane
    let dyTensor = ctx.outputGradient()
    let dy = dyTensor.floats
    var dx: [Float]?, dw: [Float]?
    // At stride 1 without dilation, dX is itself a convolution (of dY with the flipped,
    // transposed filters), which the forward kernels run faster than sgemm + col2im.
    let viaForward = ctx.wants(0) && geometry.strides == [1, 1] && geometry.dilations == [1, 1]
      && zip(geometry.padBegin + geometry.padEnd, geometry.kernel + geometry.kernel).allSatisfy { $0 <= $1 - 1 }
    if viaForward {
      dx = try inputGradientByConvolution(dyTensor, w, geometry: geometry, group: group, at: ctx.node).floats
    }
    if (ctx.wants(0) && !viaForward) || ctx.wants(1) {
      let gradient = ConvolutionGradient(geometry: geometry, images: n, channels: c, outChannels: m, group: group)
      let result = gradient.run(x: x.floats, w: w.floats, dy: dy, input: ctx.wants(0) && !viaForward, weight: ctx.wants(1))
      dw = result.dw
      if !viaForward { dx = result.dx }
    }
    let db = ctx.wants(2) ? ctx.forward.optionalInput(2).map { channelSums(dy, images: n, channels: m, plane: p, shape: $0.shape) } : nil
    return [dx.map { Tensor(shape: x.shape, floats: $0) }, dw.map { Tensor(shape: w.shape, floats: $0) }, db]
  }

  /// A bias gradient: per channel, the sum of `dy` ([N, C, plane]) over images and positions.
  static func channelSums(_ dy: [Float], images: Int, channels: Int, plane: Int, shape: [Int]) -> Tensor {
    var sums = [Double](repeating: 0, count: channels)
    for image in 0..<images {
      for c in 0..<channels {
        let base = (image * channels + c) * plane
        var s = 0.0
        for i in base..<(base + plane) { s += Double(dy[i]) }
        sums[c] += s
      }
    }
    return Tensor(shape: shape, floats: sums.map { Float($0) })
  }

  /// `dX` of a stride-1, undilated convolution as the forward convolution
  /// `dX[n, g*Cg + c] = sum_o dY[n, g*Mg + o] (*) W'[g*Cg + c, o]` with
  /// `W'[g*Cg + c, o, i, j] = W[g*Mg + o, c, KH-1-i, KW-1-j]` and padding `K-1-p` on each side
  /// (every pad at most `K-1`): each input position collects `W[o, c, i, j] * dY[.., y - i + p, ..]`
  /// over the taps that read it, as col2im would. `dy` is [N, M, OH, OW] (or rank 3 for 1-D).
  static func inputGradientByConvolution(
    _ dy: Tensor, _ w: Tensor, geometry: WindowGeometry, group: Int, at node: Node
  ) throws -> Tensor {
    let m = w.shape[0], cg = w.shape[1], mg = m / group
    let (kh, kw) = (geometry.kernel[0], geometry.kernel[1])
    let taps = kh * kw
    let ws = w.floats
    var flipped = [Float](repeating: 0, count: ws.count)
    for g in 0..<group {
      for c in 0..<cg {
        for o in 0..<mg {
          let src = ((g * mg + o) * cg + c) * taps, dst = ((g * cg + c) * mg + o) * taps
          for t in 0..<taps { flipped[dst + t] = ws[src + taps - 1 - t] }
        }
      }
    }
    let pads = [kh - 1 - geometry.padBegin[0], kw - 1 - geometry.padBegin[1], kh - 1 - geometry.padEnd[0], kw - 1 - geometry.padEnd[1]]
    let lifted = dy.rank == 3
    let dy4 = lifted ? dy.reshaped([dy.shape[0], dy.shape[1], 1, dy.shape[2]]) : dy
    let weight = Tensor(shape: [group * cg, mg, kh, kw], floats: flipped)
    let dx = try TensorArithmetic.run(
      "Conv", [dy4, weight], attributes: ["pads": .ints(pads), "group": .int(group)], opset: 17, at: node)
    return lifted ? dx.reshaped([dx.shape[0], dx.shape[1], dx.shape[3]]) : dx
  }
}
