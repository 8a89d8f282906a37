import LowbitCore

/// Direct-loop references for the BLAS-backed kernels: slow, obviously right, used only by tests.
public enum Reference {
  /// 2-D convolution, NCHW/OIHW, explicit pads [top, left, bottom, right].
  public static func conv2d(
    x: Tensor, w: Tensor, bias: [Float]?, strides: [Int], pads: [Int], dilations: [Int], group: Int
  ) -> Tensor {
    let (n, c, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let (m, cg, kh, kw) = (w.shape[0], w.shape[1], w.shape[2], w.shape[3])
    let oh = (h + pads[0] + pads[2] - dilations[0] * (kh - 1) - 1) / strides[0] + 1
    let ow = (wd + pads[1] + pads[3] - dilations[1] * (kw - 1) - 1) / strides[1] + 1
    let xs = x.floats, ws = w.floats
    var y = [Float](repeating: 0, count: n * m * oh * ow)
    let mg = m / group
    for b in 0..<n { for o in 0..<m { for i in 0..<oh { for j in 0..<ow {
      var acc = Double(bias?[o] ?? 0)
      let g = o / mg
      for ci in 0..<cg { for ki in 0..<kh { for kj in 0..<kw {
        let ih = i * strides[0] + ki * dilations[0] - pads[0]
        let iw = j * strides[1] + kj * dilations[1] - pads[1]
        guard ih >= 0, ih < h, iw >= 0, iw < wd else { continue }
        let xv = xs[((b * c + g * cg + ci) * h + ih) * wd + iw]
        acc += Double(xv) * Double(ws[((o * cg + ci) * kh + ki) * kw + kj])
      } } }
      y[((b * m + o) * oh + i) * ow + j] = Float(acc)
    } } } }
    return Tensor(shape: [n, m, oh, ow], floats: y)
  }

  /// Max or average pooling, 2-D, explicit pads; average excludes padding.
  public static func pool2d(x: Tensor, kernel: [Int], strides: [Int], pads: [Int], max isMax: Bool) -> Tensor {
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let oh = (h + pads[0] + pads[2] - kernel[0]) / strides[0] + 1
    let ow = (w + pads[1] + pads[3] - kernel[1]) / strides[1] + 1
    let xs = x.floats
    var y = [Float](repeating: 0, count: n * c * oh * ow)
    for p in 0..<(n * c) { for i in 0..<oh { for j in 0..<ow {
      var acc: Float = isMax ? -.infinity : 0
      var count = 0
      for ki in 0..<kernel[0] { for kj in 0..<kernel[1] {
        let ih = i * strides[0] + ki - pads[0], iw = j * strides[1] + kj - pads[1]
        guard ih >= 0, ih < h, iw >= 0, iw < w else { continue }
        let v = xs[(p * h + ih) * w + iw]
        acc = isMax ? Swift.max(acc, v) : acc + v
        count += 1
      } }
      y[(p * oh + i) * ow + j] = isMax ? acc : acc / Float(count)
    } } }
    return Tensor(shape: [n, c, oh, ow], floats: y)
  }

  /// Batched matrix product with numpy broadcasting of leading dims (both operands rank >= 2).
  public static func matMul(_ a: Tensor, _ b: Tensor) -> Tensor {
    let m = a.shape[a.rank - 2], k = a.shape[a.rank - 1], n = b.shape[b.rank - 1]
    let aBatch = Array(a.shape.dropLast(2)), bBatch = Array(b.shape.dropLast(2))
    let r = max(aBatch.count, bBatch.count)
    let ap = Array(repeating: 1, count: r - aBatch.count) + aBatch
    let bp = Array(repeating: 1, count: r - bBatch.count) + bBatch
    let batch = zip(ap, bp).map { max($0, $1) }
    let total = batch.reduce(1, *)
    var y = [Float](repeating: 0, count: total * m * n)
    let av = a.floats, bv = b.floats
    for t in 0..<total {
      var rem = t, aIndex = 0, bIndex = 0, aMul = 1, bMul = 1
      for d in stride(from: r - 1, through: 0, by: -1) {
        let i = rem % batch[d]
        rem /= batch[d]
        aIndex += (ap[d] == 1 ? 0 : i) * aMul
        bIndex += (bp[d] == 1 ? 0 : i) * bMul
        aMul *= ap[d]
        bMul *= bp[d]
      }
      for i in 0..<m { for j in 0..<n {
        var acc: Double = 0
        for p in 0..<k { acc += Double(av[aIndex * m * k + i * k + p]) * Double(bv[bIndex * k * n + p * n + j]) }
        y[t * m * n + i * n + j] = Float(acc)
      } }
    }
    return Tensor(shape: batch + [m, n], floats: y)
  }
}

/// The mean square between output `output` of `graph` (a quantized one) and of `float`, over
/// every element of every batch.
public func outputMeanSquare(_ graph: Graph, _ float: Graph, batches: [[String: Tensor]], output: String = "y") throws -> Double {
  let q = try Interpreter(graph), f = try Interpreter(float)
  var total = 0.0, count = 0
  for feeds in batches {
    let a = try q.run(feeds)[output]!.floats, b = try f.run(feeds)[output]!.floats
    for (u, v) in zip(a, b) { total += Double(u - v) * Double(u - v) }
    count += a.count
  }
  return total / Double(count)
}
