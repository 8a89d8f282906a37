import Dispatch

extension Ops {
  static let convolutionKernels: [String: Kernel] = ["Conv": conv]

  /// ONNX Conv (1-D and 2-D, NCHW): `y[n, m] = b[m] + sum_{c, k} w[m, c, k] * x[n, g*C/G + c, s*o + d*k - p]`
  /// over group `g` of `m`. Regular groups run as im2col + sgemm; depthwise ones as direct loops.
  static func conv(_ ctx: KernelContext) throws -> [Tensor] {
    _ = configureBLAS
    let x = try ctx.floatInput(0)
    let w = try ctx.floatInput(1)
    let bias = ctx.optionalInput(2)
    guard x.rank == 3 || x.rank == 4 else {
      throw ctx.error("input has \(x.rank) dims; only 1-D and 2-D convolution (rank 3 or 4) is supported", .unsupported)
    }
    guard w.rank == x.rank else {
      throw ctx.error("weight has \(w.rank) dims, expected \(x.rank)")
    }
    let group = try ctx.int("group", default: 1)
    let n = x.shape[0], c = x.shape[1], m = w.shape[0]
    guard group >= 1, c % group == 0, m % group == 0, w.shape[1] * group == c else {
      throw ctx.error("weight \(w.shape) does not fit input channels \(c) with group \(group)")
    }
    if let ks = try ctx.ints("kernel_shape"), ks != Array(w.shape[2...]) {
      throw ctx.error("kernel_shape \(ks) disagrees with weight shape \(w.shape)")
    }
    if let b = bias {
      guard b.dtype.isFloatingPoint, b.count == m else {
        throw ctx.error("bias has shape \(b.shape), expected [\(m)]")
      }
    }
    var geo = try ConvGeometry(ctx, input: Array(x.shape[2...]), kernel: Array(w.shape[2...]))
    let outShape = [n, m] + geo.output
    let outCount = try checkedElementCount(outShape, ctx)
    if x.rank == 3 { geo = geo.lifted() }
    var y = [Float](repeating: 0, count: outCount)
    let xs = x.floats, ws = w.floats
    let bs = bias?.floats
    // Safety: every index below is bounded by the shapes checked above.
    xs.withUnsafeBufferPointer { xp in
      ws.withUnsafeBufferPointer { wp in
        y.withUnsafeMutableBufferPointer { yp in
          let job = ConvJob(
            x: xp.baseAddress!, w: wp.baseAddress!, y: yp.baseAddress!, batch: n, channels: c,
            outChannels: m, group: group, geo: geo)
          if c == group && m == group {
            job.depthwise()
          } else {
            job.im2colGemm()
          }
        }
      }
    }
    if bs != nil || ctx.fusedActivation != nil, outCount > 0 {
      let plane = geo.output[0] * geo.output[1]
      let activation = ctx.fusedActivation
      y.withUnsafeMutableBufferPointer { yp in
        let bits = UInt(bitPattern: yp.baseAddress)
        parallelChunks(n * m, costPerItem: plane) { range in
          guard let base = UnsafeMutablePointer<Float>(bitPattern: bits) else { return }
          for i in range {
            let row = base + i * plane
            if let bs = bs {
              let v = bs[i % m]
              for j in 0..<plane { row[j] += v }
            }
            activation?.apply(row, count: plane)
          }
        }
      }
    }
    return [Tensor(shape: outShape, floats: y)]
  }
}

/// One 2-D convolution over raw buffers (NCHW input, OIHW weight, NCHW output).
struct ConvJob {
  let x: UnsafePointer<Float>
  let w: UnsafePointer<Float>
  let y: UnsafeMutablePointer<Float>
  let batch: Int, channels: Int, outChannels: Int, group: Int
  let geo: ConvGeometry

  var inH: Int { geo.input[0] }
  var inW: Int { geo.input[1] }
  var outH: Int { geo.output[0] }
  var outW: Int { geo.output[1] }
  var kH: Int { geo.kernel[0] }
  var kW: Int { geo.kernel[1] }

  var isPointwise: Bool {
    kH == 1 && kW == 1 && geo.strides == [1, 1] && geo.padBegin == [0, 0] && geo.padEnd == [0, 0]
  }

  /// Unfolds the patches of `cg` input planes into `col` rows of `ldc` floats: row
  /// `(c * kH + ki) * kW + kj`, columns `0..<outH*outW` (the caller offsets `col` per image).
  func im2col(_ src: UnsafePointer<Float>, channelsPerGroup cg: Int, _ col: UnsafeMutablePointer<Float>, ldc: Int) {
    let sh = geo.strides[0], sw = geo.strides[1], dh = geo.dilations[0], dw = geo.dilations[1]
    let ph = geo.padBegin[0], pw = geo.padBegin[1]
    let (inH, inW, outH, outW, kH, kW) = (inH, inW, outH, outW, kH, kW)
    var row = 0
    for ci in 0..<cg {
      let plane = src + ci * inH * inW
      for ki in 0..<kH {
        for kj in 0..<kW {
          let dst = col + row * ldc
          let offset = kj * dw - pw
          // Output columns whose input column ow * sw + offset lies inside [0, inW).
          let lo = offset >= 0 ? 0 : min(outW, (-offset + sw - 1) / sw)
          let hi = max(lo, min(outW, inW - offset <= 0 ? 0 : (inW - offset - 1) / sw + 1))
          for oh in 0..<outH {
            let ih = oh * sh + ki * dh - ph
            let line = dst + oh * outW
            if ih < 0 || ih >= inH {
              for ow in 0..<outW { line[ow] = 0 }
              continue
            }
            let srcRow = plane + ih * inW + offset
            for ow in 0..<lo { line[ow] = 0 }
            if sw == 1 {
              for ow in lo..<hi { line[ow] = srcRow[ow] }
            } else {
              for ow in lo..<hi { line[ow] = srcRow[ow * sw] }
            }
            for ow in hi..<outW { line[ow] = 0 }
          }
          row += 1
        }
      }
    }
  }

  /// Grouped convolution as GEMMs of W_g [M/G, C/G*kH*kW] with the unfolded patches of several
  /// images side by side (so small feature maps still make wide GEMMs); the result columns are
  /// then scattered to NCHW.
  func im2colGemm() {
    let cg = channels / group, mg = outChannels / group
    let kDim = cg * kH * kW
    let outPlane = outH * outW
    let inPlane = inH * inW
    let threads = kernelThreadCount
    // Images per GEMM: enough for about 2048 columns, but leave work for every thread.
    let perChunk = max(1, min((2048 + outPlane - 1) / max(outPlane, 1), batch / max(threads, 1)))
    let chunks = (batch + perChunk - 1) / perChunk
    let items = chunks * group
    let pointwise = isPointwise && perChunk == 1
    let (x, w, y, channels, outChannels, group) = (x, w, y, channels, outChannels, group)
    let runItem = { (item: Int, col: UnsafeMutablePointer<Float>?, tmp: UnsafeMutablePointer<Float>?, parallelInside: Bool) in
      let chunk = item / group, gi = item % group
      let n0 = chunk * perChunk, n1 = min(batch, n0 + perChunk)
      let width = (n1 - n0) * outPlane
      let a = w + gi * mg * kDim
      if pointwise {
        let src = x + (n0 * channels + gi * cg) * inPlane
        let c = y + (n0 * outChannels + gi * mg) * outPlane
        (parallelInside ? parallelSgemm : sgemm)(false, false, mg, outPlane, kDim, 1, a, kDim, src, outPlane, 0, c, outPlane)
        return
      }
      for ni in n0..<n1 {
        self.im2col(x + (ni * channels + gi * cg) * inPlane, channelsPerGroup: cg, col! + (ni - n0) * outPlane, ldc: width)
      }
      if n1 - n0 == 1 {
        let c = y + (n0 * outChannels + gi * mg) * outPlane
        (parallelInside ? parallelSgemm : sgemm)(false, false, mg, outPlane, kDim, 1, a, kDim, col!, width, 0, c, outPlane)
        return
      }
      (parallelInside ? parallelSgemm : sgemm)(false, false, mg, width, kDim, 1, a, kDim, col!, width, 0, tmp!, width)
      for ni in n0..<n1 {
        for m in 0..<mg {
          let dst = y + (ni * outChannels + gi * mg + m) * outPlane
          let srcRow = tmp! + m * width + (ni - n0) * outPlane
          dst.update(from: srcRow, count: outPlane)
        }
      }
    }
    let colCount = pointwise ? 0 : kDim * perChunk * outPlane
    let tmpCount = perChunk > 1 ? mg * perChunk * outPlane : 0
    func buffers() -> (UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Float>?) {
      (colCount > 0 ? .allocate(capacity: colCount) : nil, tmpCount > 0 ? .allocate(capacity: tmpCount) : nil)
    }
    if items >= threads && threads > 1 {
      DispatchQueue.concurrentPerform(iterations: threads) { t in
        let (col, tmp) = buffers()
        defer { col?.deallocate(); tmp?.deallocate() }
        for item in stride(from: t, to: items, by: threads) { runItem(item, col, tmp, false) }
      }
    } else {
      let (col, tmp) = buffers()
      defer { col?.deallocate(); tmp?.deallocate() }
      for item in 0..<items { runItem(item, col, tmp, true) }
    }
  }

  /// Depthwise convolution (one input and one output channel per group) as direct loops.
  func depthwise() {
    let sh = geo.strides[0], sw = geo.strides[1], dh = geo.dilations[0], dw = geo.dilations[1]
    let ph = geo.padBegin[0], pw = geo.padBegin[1]
    let inPlane = inH * inW, outPlane = outH * outW
    let planes = batch * channels
    let xBits = UInt(bitPattern: x), wBits = UInt(bitPattern: w), yBits = UInt(bitPattern: y)
    let (kH, kW, inH, inW, outH, outW, channels) = (kH, kW, inH, inW, outH, outW, channels)
    parallelChunks(planes, costPerItem: outPlane * kH * kW) { range in
      let x = UnsafePointer<Float>(bitPattern: xBits)!
      let w = UnsafePointer<Float>(bitPattern: wBits)!
      let y = UnsafeMutablePointer<Float>(bitPattern: yBits)!
      for p in range {
        let ci = p % channels
        let src = x + p * inPlane
        let dst = y + p * outPlane
        let kernel = w + ci * kH * kW
        for oh in 0..<outH {
          for ow in 0..<outW {
            var acc: Float = 0
            for ki in 0..<kH {
              let ih = oh * sh + ki * dh - ph
              if ih < 0 || ih >= inH { continue }
              for kj in 0..<kW {
                let iw = ow * sw + kj * dw - pw
                if iw < 0 || iw >= inW { continue }
                acc += src[ih * inW + iw] * kernel[ki * kW + kj]
              }
            }
            dst[oh * outW + ow] = acc
          }
        }
      }
    }
  }
}
