/// ConvTranspose, any number of spatial axes: each input position scatters its kernel-weighted
/// values into the output,
///
///     y[n, g M' + m, o] += sum_c x[n, g C' + c, p] W[g C' + c, m, k]   where o = p s + k d - padBegin,
///
/// computed per sample and group as the product `W_g^T x_g` ([M' K, P]) scattered into the output
/// (col2im), then the bias. Output size per axis:
/// `s (in - 1) + output_padding + d (k - 1) + 1 - padBegin - padEnd`; with `output_shape` (or
/// SAME_UPPER / SAME_LOWER, `in * s`) the total padding follows from it, its larger half at the end
/// for SAME_UPPER, at the beginning otherwise.
extension Ops {
  static let convolutionTransposeKernels: [String: Kernel] = ["ConvTranspose": convTranspose]
}

/// The resolved geometry of one ConvTranspose node.
public struct ConvTransposeGeometry: Sendable {
  public var kernel: [Int]
  public var strides: [Int]
  public var dilations: [Int]
  public var padBegin: [Int]
  public var output: [Int]

  public init(_ ctx: KernelContext, input: [Int], kernel: [Int]) throws {
    let rank = input.count
    func attribute(_ name: String, _ fallback: Int) throws -> [Int] {
      let v = try ctx.ints(name) ?? [Int](repeating: fallback, count: rank)
      guard v.count == rank, v.allSatisfy({ $0 >= 0 && $0 <= 1 << 16 }) else {
        throw ctx.error("\(name) \(v) must be \(rank) non-negative numbers")
      }
      return v
    }
    let strides = try attribute("strides", 1), dilations = try attribute("dilations", 1)
    let outputPadding = try attribute("output_padding", 0)
    guard strides.allSatisfy({ $0 >= 1 }), dilations.allSatisfy({ $0 >= 1 }) else {
      throw ctx.error("strides \(strides) and dilations \(dilations) must be positive")
    }
    var full = [Int](repeating: 0, count: rank)
    for i in 0..<rank {
      guard outputPadding[i] < max(strides[i], dilations[i]) else {
        throw ctx.error("output_padding \(outputPadding[i]) on axis \(i) is not below the stride or dilation")
      }
      let span: Int = dilations[i] * (kernel[i] - 1) + 1
      full[i] = strides[i] * (input[i] - 1) + outputPadding[i] + span
    }
    let autoPad = try ctx.string("auto_pad", default: "NOTSET")
    var begin = [Int](repeating: 0, count: rank), output = full
    var target: [Int]?
    if let shape = try ctx.ints("output_shape") {
      guard shape.count == rank || shape.count == rank + 2 else {
        throw ctx.error("output_shape \(shape) does not fit \(rank) spatial dims")
      }
      target = Array(shape.suffix(rank))
    } else if autoPad == "SAME_UPPER" || autoPad == "SAME_LOWER" {
      target = (0..<rank).map { input[$0] * strides[$0] }
    }
    if let target {
      for i in 0..<rank {
        let total = full[i] - target[i]
        guard total >= 0 else { throw ctx.error("output_shape \(target) is larger than the full output \(full)") }
        begin[i] = autoPad == "SAME_UPPER" ? total / 2 : total - total / 2
        output[i] = target[i]
      }
    } else if autoPad == "NOTSET" {
      if let pads = try ctx.ints("pads") {
        guard pads.count == 2 * rank, pads.allSatisfy({ $0 >= 0 }) else {
          throw ctx.error("pads \(pads) must be \(2 * rank) non-negative numbers")
        }
        for i in 0..<rank {
          begin[i] = pads[i]
          output[i] = full[i] - pads[i] - pads[rank + i]
          guard output[i] > 0 else { throw ctx.error("pads \(pads) leave no output on axis \(i)") }
        }
      }
    } else if autoPad != "VALID" {
      throw ctx.error("auto_pad '\(autoPad)' is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER")
    }
    self.kernel = kernel
    self.strides = strides
    self.dilations = dilations
    self.padBegin = begin
    self.output = output
  }

  /// Calls `body(column, output)` for every column entry `(m K + t) P + p` of `M'` channels
  /// and the output element it lands on (`outputBase + m * outputPlane + target`), skipping
  /// padding: the scatter of the forward pass and the gather of the gradient.
  @inline(__always)
  public static func pairs(
    _ target: [Int], channels: Int, taps: Int, positions: Int, outputBase: Int, outputPlane: Int, _ body: (Int, Int) -> Void
  ) {
    for m in 0..<channels {
      let base = outputBase + m * outputPlane
      for t in 0..<taps {
        let row = (m * taps + t) * positions
        for p in 0..<positions {
          let o = target[t * positions + p]
          if o >= 0 { body(row + p, base + o) }
        }
      }
    }
  }

  /// For every kernel tap `t` and input position `p` (of `input`, the spatial shape), at
  /// `t * |input| + p`: the output position (row-major offset in `output`) the pair writes to,
  /// or -1 when it falls in the padding.
  public func targets(input: [Int]) -> [Int] {
    let taps = kernel.reduce(1, *), positions = input.reduce(1, *)
    var target = [Int](repeating: -1, count: taps * positions)
    let tapIndex = multiIndices(kernel), positionIndex = multiIndices(input), outStrides = Tensor.strides(of: output)
    for t in 0..<taps {
      for p in 0..<positions {
        var offset = 0, inside = true
        for d in 0..<input.count {
          let o = positionIndex[p][d] * strides[d] + tapIndex[t][d] * dilations[d] - padBegin[d]
          if o < 0 || o >= output[d] { inside = false; break }
          offset += o * outStrides[d]
        }
        if inside { target[t * positions + p] = offset }
      }
    }
    return target
  }
}

private func convTranspose(_ ctx: KernelContext) throws -> [Tensor] {
  let x = try ctx.floatInput(0), w = try ctx.floatInput(1)
  guard x.rank >= 3, w.rank == x.rank else {
    throw ctx.error("input has shape \(x.shape) and weight \(w.shape); expected N x C x D... and C x M/group x k...")
  }
  let group = try ctx.int("group", default: 1)
  let n = x.shape[0], channels = x.shape[1]
  guard group >= 1, channels % group == 0, w.shape[0] == channels else {
    throw ctx.error("weight \(w.shape) does not fit \(channels) input channels in \(group) groups")
  }
  let spatial = Array(x.shape[2...])
  let kernel = try ctx.ints("kernel_shape") ?? Array(w.shape[2...])
  guard kernel == Array(w.shape[2...]) else { throw ctx.error("kernel_shape \(kernel) differs from the weight's \(Array(w.shape[2...]))") }
  let geo = try ConvTransposeGeometry(ctx, input: spatial, kernel: kernel)
  let perGroupIn = channels / group, perGroupOut = w.shape[1], outChannels = perGroupOut * group
  var bias: [Float]?
  if let b = ctx.optionalInput(2) {
    guard b.count == outChannels, b.dtype.isFloatingPoint else { throw ctx.error("bias has shape \(b.shape), expected [\(outChannels)]") }
    bias = b.floats
  }
  let outShape = [n, outChannels] + geo.output
  _ = try ctx.checkedCount(outShape)
  let positions = spatial.reduce(1, *), taps = kernel.reduce(1, *), outPositions = geo.output.reduce(1, *)
  let rows = perGroupOut * taps
  // The scatter map (taps x positions) and the column buffer (rows x positions) follow the
  // checked-count rule of every output: a small input and a large kernel can ask for more.
  _ = try ctx.checkedCount([taps, positions], what: "scatter map (kernel taps x input positions)")
  _ = try ctx.checkedCount([rows, positions], what: "column buffer (output channels x taps x input positions)")
  let target = geo.targets(input: spatial)
  let xs = x.floats, ws = w.floats
  var y = [Float](repeating: 0, count: outShape.reduce(1, *))
  var columns = [Float](repeating: 0, count: rows * positions)
  for s in 0..<n {
    for g in 0..<group {
      // columns [M' K, P] = W_g^T [M' K, C'] x_g [C', P].
      ws.withUnsafeBufferPointer { pw in
        xs.withUnsafeBufferPointer { px in
          columns.withUnsafeMutableBufferPointer { pc in
            MatrixProduct.gemm(
              transA: true, m: rows, n: positions, k: perGroupIn,
              a: pw.baseAddress! + g * perGroupIn * rows, lda: rows,
              b: px.baseAddress! + (s * channels + g * perGroupIn) * positions, ldb: positions,
              c: pc.baseAddress!, ldc: positions)
          }
        }
      }
      ConvTransposeGeometry.pairs(target, channels: perGroupOut, taps: taps, positions: positions,
                                  outputBase: (s * outChannels + g * perGroupOut) * outPositions, outputPlane: outPositions) { c, o in
        y[o] += columns[c]
      }
    }
  }
  if let bias {
    for s in 0..<n {
      for c in 0..<outChannels {
        let base = (s * outChannels + c) * outPositions
        for i in base..<(base + outPositions) { y[i] += bias[c] }
      }
    }
  }
  return [Tensor(shape: outShape, floats: y)]
}

/// Every multi-index of `shape` in row-major order.
private func multiIndices(_ shape: [Int]) -> [[Int]] {
  var result: [[Int]] = [], index = [Int](repeating: 0, count: shape.count)
  let count = shape.reduce(1, *)
  for _ in 0..<count {
    result.append(index)
    var d = shape.count - 1
    while d >= 0 {
      index[d] += 1
      if index[d] < shape[d] { break }
      index[d] = 0
      d -= 1
    }
  }
  return result
}
