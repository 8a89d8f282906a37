import Glibc

/// LayerNormalization (opset 17).
///
/// Over the dims from `axis` (default -1) to the end, per leading index:
/// `Y = (X - mean) / sqrt(var + epsilon) * Scale + B`, with the population variance. Scale and B
/// broadcast to the normalized shape. The optional outputs Mean and InvStdDev have the input's
/// shape with the normalized dims set to 1; they are float32 (the default `stash_type`).
extension Ops {
  static let layerNormKernels: [String: Kernel] = [
    "LayerNormalization": layerNormalization
  ]
}

private func layerNormalization(_ ctx: KernelContext) throws -> [Tensor] {
  let x = try ctx.floatInput(0)
  guard x.rank > 0 else { throw ctx.error("input must have rank >= 1") }
  let axis = try ctx.axis(try ctx.int("axis", default: -1), rank: x.rank)
  let epsilon = try ctx.float("epsilon", default: 1e-5)
  let stash = try ctx.int("stash_type", default: 1)
  guard stash == 1 else { throw ctx.error("stash_type \(stash) is not supported", .unsupported) }
  let normShape = Array(x.shape[axis...])
  let rows = x.shape[..<axis].reduce(1, *)
  let n = normShape.reduce(1, *)

  /// Input `i` expanded to the normalized shape (`fallback` when omitted).
  func parameter(_ i: Int, _ name: String, _ fallback: Float) throws -> [Float] {
    guard let t = ctx.optionalInput(i) else { return [Float](repeating: fallback, count: n) }
    guard t.dtype.isFloatingPoint else {
      throw ctx.error("\(name) has type \(t.dtype), expected a floating-point type")
    }
    let b = try? ctx.broadcastShape([t.shape, normShape])
    guard b == normShape else {
      throw ctx.error("\(name) shape \(t.shape) does not broadcast to the normalized shape \(normShape)")
    }
    return t.broadcast(to: normShape).floats
  }
  let scale = try parameter(1, "Scale", 1)
  let bias = try parameter(2, "B", 0)

  var means = [Float](repeating: .nan, count: rows)
  var invStd = [Float](repeating: .nan, count: rows)
  var y = x.floats
  if n > 0 && rows > 0 {
    x.floats.withUnsafeBufferPointer { px in
      y.withUnsafeMutableBufferPointer { py in
        means.withUnsafeMutableBufferPointer { pm in
          invStd.withUnsafeMutableBufferPointer { pi in
            scale.withUnsafeBufferPointer { ps in
              bias.withUnsafeBufferPointer { pb in
                // Safety: x and y hold rows * n elements, scale and bias n, means and invStd
                // rows; row r touches only y[r*n ..< (r+1)*n] and slot r of the statistics.
                let (sx, sy, sm, si) = (SharedBuffer(px), SharedBuffer(py), SharedBuffer(pm), SharedBuffer(pi))
                let (ps, pb) = (SharedBuffer(ps), SharedBuffer(pb))
                parallelChunks(rows, costPerItem: n * 4) { range in
                  for r in range {
                    let row = UnsafePointer(sx.pointer(at: r * n, count: n))
                    var sum: Double = 0
                    for j in 0..<n { sum += Double(row[j]) }
                    let mean = sum / Double(n)
                    var sq: Double = 0
                    for j in 0..<n {
                      let d = Double(row[j]) - mean
                      sq += d * d
                    }
                    let inv = Float(1 / (sq / Double(n) + Double(epsilon)).squareRoot())
                    let m = Float(mean)
                    let out = sy.pointer(at: r * n, count: n)
                    for j in 0..<n { out[j] = (row[j] - m) * inv * ps[j] + pb[j] }
                    sm[r] = m
                    si[r] = inv
                  }
                }
              }
            }
          }
        }
      }
    }
  }
  let statShape = Array(x.shape[..<axis]) + [Int](repeating: 1, count: x.rank - axis)
  var outputs = [Tensor(dtype: x.dtype, shape: x.shape, storage: .float(y))]
  if ctx.node.outputs.count > 1 { outputs.append(Tensor(shape: statShape, floats: means)) }
  if ctx.node.outputs.count > 2 { outputs.append(Tensor(shape: statShape, floats: invStd)) }
  return outputs
}
