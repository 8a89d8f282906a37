import Dispatch

extension Ops {
  static let convolutionKernels: [String: Kernel] = ["Conv": conv]

  /// ONNX Conv (1-D and 2-D, NCHW): `y[n, m] = b[m] + sum_{c, k} w[m, c, k] * x[n, g*C/G + c, s*o + d*k - p]`
  /// over group `g` of `m`, then the fused activation. 3x3 stride-1 convolutions run as Winograd
  /// F(2x2, 3x3) (`ConvolutionWinograd.swift`), other regular groups as (implicit) im2col + sgemm
  /// (`ConvolutionGemm.swift`), depthwise ones as direct loops (`ConvolutionDepthwise.swift`).
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
    let xs = x.floats, ws = w.floats
    let bs = bias?.floats
    let activation = ctx.fusedActivation
    // Safety: every index below is bounded by the shapes checked above; the kernels write each
    // of the `outCount` elements exactly once, so the buffer starts uninitialized.
    let y = [Float](unsafeUninitializedCapacity: outCount) { yp, initialized in
      xs.withUnsafeBufferPointer { xp in
        ws.withUnsafeBufferPointer { wp in
          (bs ?? []).withUnsafeBufferPointer { bp in
            guard outCount > 0 else { return }
            let job = ConvJob(
              x: xp.baseAddress!, w: wp.baseAddress!, y: yp.baseAddress!,
              bias: bs == nil ? nil : bp.baseAddress, activation: activation, batch: n, channels: c,
              outChannels: m, group: group, geo: geo)
            if c == group && m == group {
              job.depthwise()
            } else if job.prefersWinograd {
              job.winograd()
            } else {
              job.im2colGemm()
            }
          }
        }
      }
      initialized = outCount
    }
    return [Tensor(shape: outShape, floats: y)]
  }
}
