/// InstanceNormalization and GroupNormalization: each sample's channels (instance) or groups of
/// channels are normalized by their own mean and variance over the remaining axes,
/// `y = (x - mean) / sqrt(var + epsilon) * scale + B`.
extension Ops {
  static let groupNormKernels: [String: Kernel] = [
    "InstanceNormalization": { ctx in try groupNormalization(ctx, instance: true) },
    "GroupNormalization": { ctx in try groupNormalization(ctx, instance: false) },
  ]
}

/// InstanceNormalization: `G = C` groups, scale and B per channel. GroupNormalization:
/// `num_groups` groups of `C / G` channels, scale and B per channel (opset 21; opset 18's
/// per-group form, deprecated by ONNX, is refused). Statistics in double precision.
private func groupNormalization(_ ctx: KernelContext, instance: Bool) throws -> [Tensor] {
  let x = try ctx.floatInput(0)
  guard x.rank >= 3 || (!instance && x.rank >= 2) else { throw ctx.error("input has rank \(x.rank), expected N x C x D1 ...") }
  let n = x.shape[0], c = x.shape[1], spatial = x.shape[2...].reduce(1, *)
  let groups = instance ? c : try ctx.int("num_groups", default: 0)
  guard groups > 0, c % groups == 0 else { throw ctx.error("num_groups \(groups) does not divide the \(c) channels") }
  let scale = try ctx.floatInput(1), bias = try ctx.floatInput(2)
  if !instance && ctx.opset < 21 {
    throw ctx.error("GroupNormalization before opset 21 (per-group scale, deprecated) is not supported", .unsupported)
  }
  for (what, t) in [("scale", scale), ("B", bias)] {
    guard t.rank == 1, t.count == c else { throw ctx.error("\(what) has shape \(t.shape), expected [\(c)]") }
  }
  let eps = Double(try ctx.float("epsilon", default: 1e-5))
  let channelsPerGroup = c / groups, block = channelsPerGroup * spatial
  let xs = x.floats, gamma = scale.floats, beta = bias.floats
  var y = [Float](repeating: 0, count: xs.count)
  for g in 0..<(n * groups) {
    let start = g * block
    var sum = 0.0, squares = 0.0
    for i in start..<(start + block) { sum += Double(xs[i]) }
    let mean = sum / Double(block)
    for i in start..<(start + block) { let d = Double(xs[i]) - mean; squares += d * d }
    let inv = 1 / (squares / Double(block) + eps).squareRoot()
    for k in 0..<channelsPerGroup {
      let channel = (g % groups) * channelsPerGroup + k
      let m = Float(inv) * gamma[channel], a = beta[channel] - Float(mean * inv) * gamma[channel]
      let row = start + k * spatial
      for j in row..<(row + spatial) { y[j] = xs[j] * m + a }
    }
  }
  return [Tensor(shape: x.shape, floats: y)]
}
