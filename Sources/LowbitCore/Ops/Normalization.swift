extension Ops {
  static let normalizationKernels: [String: Kernel] = ["BatchNormalization": batchNorm].merging(groupNormKernels) { a, _ in a }

  /// BatchNormalization in inference mode, per channel c (axis 1):
  /// `y = (x - mean[c]) / sqrt(var[c] + epsilon) * scale[c] + B[c]`.
  static func batchNorm(_ ctx: KernelContext) throws -> [Tensor] {
    let x = try ctx.floatInput(0)
    if try ctx.int("training_mode", default: 0) != 0 {
      throw ctx.error("training_mode = 1 is not supported for inference", .unsupported)
    }
    guard x.rank >= 2 else { throw ctx.error("input needs at least 2 dims, has \(x.rank)") }
    let c = x.shape[1]
    var params: [[Float]] = []
    for (i, what) in ["scale", "B", "mean", "var"].enumerated() {
      let p = try ctx.floatInput(i + 1)
      guard p.count == c, p.rank == 1 else {
        throw ctx.error("\(what) has shape \(p.shape), expected [\(c)]")
      }
      params.append(p.floats)
    }
    let eps = try ctx.float("epsilon", default: 1e-5)
    var mul = [Float](repeating: 0, count: c), add = [Float](repeating: 0, count: c)
    for i in 0..<c {
      let inv = 1 / (params[3][i] + eps).squareRoot()
      mul[i] = params[0][i] * inv
      add[i] = params[1][i] - params[2][i] * params[0][i] * inv
    }
    let inner = x.shape[2...].reduce(1, *)
    let (scales, shifts) = (mul, add)
    var y = x.floats
    y.withUnsafeMutableBufferPointer { yp in
      let values = SharedBuffer(yp)
      parallelChunks(x.shape[0] * c, costPerItem: inner) { range in
        for p in range {
          let ch = p % c, m = scales[ch], a = shifts[ch]
          let row = values.pointer(at: p * inner, count: inner)
          for j in 0..<inner { row[j] = row[j] * m + a }
        }
      }
    }
    return [Tensor(shape: x.shape, floats: y)]
  }
}
