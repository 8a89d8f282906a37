import LowbitCore

/// BatchNormalization with batch statistics (training mode) and its gradient rule.
///
/// Per channel `c` over the `m = N * H * W` elements of that channel:
/// `mu = mean(x)`, `sigma^2 = mean((x - mu)^2)` (biased), `x^ = (x - mu) / sqrt(sigma^2 + eps)`,
/// `y = gamma * x^ + beta`. The running statistics move as in ONNX and PyTorch, with the ONNX
/// attribute `momentum` (default 0.9, PyTorch's `1 - momentum`) weighting the old value:
/// `running_mean = momentum * running_mean + (1 - momentum) * mu` and
/// `running_var = momentum * running_var + (1 - momentum) * sigma^2 * m / (m - 1)` (PyTorch's
/// unbiased batch variance; ONNX's reference uses the biased one: see `unbiasedRunningVariance`).
public enum BatchNormTraining {
  /// The result of one training-mode forward pass.
  public struct Forward: Sendable {
    public var output: Tensor
    /// Batch mean and `1 / sqrt(sigma^2 + eps)` per channel.
    public var mean: [Float]
    public var inverseStd: [Float]
    public var runningMean: Tensor
    public var runningVariance: Tensor
  }

  /// Normalizes `x` ([N, C, ...]) with its batch statistics and returns the moved running ones.
  public static func forward(
    x: Tensor, scale: Tensor, bias: Tensor, runningMean: Tensor, runningVariance: Tensor,
    epsilon: Float, momentum: Float, unbiasedRunningVariance: Bool = true
  ) -> Forward {
    let n = x.shape[0], c = x.shape[1], inner = x.shape[2...].reduce(1, *)
    let m = n * inner
    let xs = x.floats, gamma = scale.floats, beta = bias.floats
    var mean = [Float](repeating: 0, count: c), inverseStd = mean, variance = [Double](repeating: 0, count: c)
    // Every element of y is written below (each channel's planes by that channel).
    let y = xs.withUnsafeBufferPointer { xp in
      SharedBuffer<Float>.array(count: x.count) { ys in
        mean.withUnsafeMutableBufferPointer { mp in
          inverseStd.withUnsafeMutableBufferPointer { sp in
            variance.withUnsafeMutableBufferPointer { vp in
              // Safety: channel ch reads and writes only its own planes (image * c + ch) and its
              // own slot of mean, inverseStd and variance; sums run in image, position order.
              let (xs, ms, ss, vs) = (SharedBuffer(xp), SharedBuffer(mp), SharedBuffer(sp), SharedBuffer(vp))
              parallelChunks(c, costPerItem: 4 * m) { range in
                let (xb, yb) = (UnsafePointer(xs.pointer()), ys.pointer())
                let (mb, sb, vb) = (ms, ss, vs)
                for ch in range {
                  var sum = 0.0
                  for image in 0..<n { sum += planeSum(xb + (image * c + ch) * inner, inner) { Double($0) } }
                  let mu = m > 0 ? sum / Double(m) : 0
                  var squares = 0.0
                  for image in 0..<n {
                    squares += planeSum(xb + (image * c + ch) * inner, inner) { let d = Double($0) - mu; return d * d }
                  }
                  let v = m > 0 ? squares / Double(m) : 0
                  let inv = 1 / (v + Double(epsilon)).squareRoot()
                  mb[ch] = Float(mu)
                  sb[ch] = Float(inv)
                  vb[ch] = v
                  let mul = Float(inv) * gamma[ch], add = beta[ch] - Float(mu) * Float(inv) * gamma[ch]
                  for image in 0..<n {
                    let p = xb + (image * c + ch) * inner, q = yb + (image * c + ch) * inner
                    for i in 0..<inner { q[i] = p[i] * mul + add }
                  }
                }
              }
            }
          }
        }
      }
    }
    let oldMean = runningMean.floats, oldVariance = runningVariance.floats
    let correction = unbiasedRunningVariance && m > 1 ? Double(m) / Double(m - 1) : 1
    let newMean = (0..<c).map { momentum * oldMean[$0] + (1 - momentum) * mean[$0] }
    let newVariance = (0..<c).map { momentum * oldVariance[$0] + (1 - momentum) * Float(variance[$0] * correction) }
    return Forward(
      output: Tensor(shape: x.shape, floats: y), mean: mean, inverseStd: inverseStd,
      runningMean: Tensor(shape: runningMean.shape, floats: newMean),
      runningVariance: Tensor(shape: runningVariance.shape, floats: newVariance))
  }

  /// The gradients of `y = gamma * x^ + beta`, per channel with `s = 1 / sqrt(sigma^2 + eps)`:
  /// `dbeta = sum dy`, `dgamma = sum dy * x^`, and in training mode (batch statistics, which
  /// depend on x) `dx = gamma * s / m * (m * dy - dbeta - x^ * dgamma)` (evaluated as
  /// `k * dy + b * x + a` with per-channel constants `k = gamma * s`, `b = -k * s * dgamma / m`,
  /// `a = -k * dbeta / m - b * mu`); in evaluation mode
  /// (running statistics, constants) `dx = gamma * s * dy`.
  public static func backward(
    x: Tensor, scale: Tensor, outputGradient: Tensor, mean: [Float], inverseStd: [Float], training: Bool
  ) -> (input: Tensor, scale: Tensor, bias: Tensor) {
    let n = x.shape[0], c = x.shape[1], inner = x.shape[2...].reduce(1, *)
    let m = Float(n * inner)
    let xs = x.floats, dy = outputGradient.floats, gamma = scale.floats
    var dgamma = [Float](repeating: 0, count: c), dbeta = dgamma
    // Every element of dx is written below (each channel's planes by that channel).
    let dx = xs.withUnsafeBufferPointer { xp in
      dy.withUnsafeBufferPointer { gp in
        SharedBuffer<Float>.array(count: x.count) { ds in
          dgamma.withUnsafeMutableBufferPointer { gammaP in
            dbeta.withUnsafeMutableBufferPointer { betaP in
              // Safety: as in `forward`: each channel owns its planes and its slots.
              let (xs, gs, dgs, dbs) = (SharedBuffer(xp), SharedBuffer(gp), SharedBuffer(gammaP), SharedBuffer(betaP))
              parallelChunks(c, costPerItem: 4 * n * inner) { range in
                let (xb, gb, db) = (UnsafePointer(xs.pointer()), UnsafePointer(gs.pointer()), ds.pointer())
                let (dgb, dbb) = (dgs, dbs)
                for ch in range {
                  let mu = mean[ch], s = inverseStd[ch]
                  var sumG = 0.0, sumGX = 0.0
                  for image in 0..<n {
                    let off = (image * c + ch) * inner
                    sumG += planeSum(gb + off, inner) { Double($0) }
                    sumGX += planeSum(gb + off, xb + off, inner) { g, x in Double(g) * Double((x - mu) * s) }
                  }
                  dbb[ch] = Float(sumG)
                  dgb[ch] = Float(sumGX)
                  // dx = k / m * (m * dy - dbeta - (x - mu) * s * dgamma) = k * dy + b * x + a.
                  let k = gamma[ch] * s
                  let bx = training ? -k / m * s * Float(sumGX) : 0
                  let a = training ? -k / m * Float(sumG) - bx * mu : 0
                  for image in 0..<n {
                    let off = (image * c + ch) * inner
                    let dst = db + off, g = gb + off, xv = xb + off
                    for i in 0..<inner { dst[i] = k * g[i] + bx * xv[i] + a }
                  }
                }
              }
            }
          }
        }
      }
    }
    return (Tensor(shape: x.shape, floats: dx), Tensor(shape: scale.shape, floats: dgamma),
            Tensor(shape: scale.shape, floats: dbeta))
  }
}

/// `sum_i f(p[i])` over `count` values in Double, as four interleaved partial sums (lanes
/// `i % 4`) added as `(s0 + s1) + (s2 + s3)`: a fixed order, and four independent additions in
/// flight instead of one chain.
@inline(__always)
func planeSum(_ p: UnsafePointer<Float>, _ count: Int, _ f: (Float) -> Double) -> Double {
  var s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0, i = 0
  while i + 4 <= count {
    s0 += f(p[i]); s1 += f(p[i + 1]); s2 += f(p[i + 2]); s3 += f(p[i + 3])
    i += 4
  }
  if i < count { s0 += f(p[i]) }
  if i + 1 < count { s1 += f(p[i + 1]) }
  if i + 2 < count { s2 += f(p[i + 2]) }
  return (s0 + s1) + (s2 + s3)
}

/// `sum_i f(p[i], q[i])`, summed as in `planeSum(_:_:_:)`.
@inline(__always)
func planeSum(_ p: UnsafePointer<Float>, _ q: UnsafePointer<Float>, _ count: Int, _ f: (Float, Float) -> Double) -> Double {
  var s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0, i = 0
  while i + 4 <= count {
    s0 += f(p[i], q[i]); s1 += f(p[i + 1], q[i + 1]); s2 += f(p[i + 2], q[i + 2]); s3 += f(p[i + 3], q[i + 3])
    i += 4
  }
  if i < count { s0 += f(p[i], q[i]) }
  if i + 1 < count { s1 += f(p[i + 1], q[i + 1]) }
  if i + 2 < count { s2 += f(p[i + 2], q[i + 2]) }
  return (s0 + s1) + (s2 + s3)
}

extension GradientRules {
  static let normalizationRules: [String: GradientRule] = [
    "BatchNormalization": GradientRule(inputs: [0, 1, 2], batchNorm),
  ]

  /// BatchNormalization: see `BatchNormTraining.backward`; the running statistics (inputs 3
  /// and 4) are buffers, not parameters.
  static func batchNorm(_ ctx: BackwardContext) throws -> [Tensor?] {
    guard case .batchNorm(let mean, let inverseStd, let training)? = ctx.saved else {
      throw ctx.error("the forward pass kept no statistics for this node")
    }
    let x = try ctx.input(0), scale = try ctx.input(1)
    let g = BatchNormTraining.backward(
      x: x, scale: scale, outputGradient: ctx.outputGradient(), mean: mean, inverseStd: inverseStd, training: training)
    return [g.input, g.scale, g.bias, nil, nil]
  }
}
