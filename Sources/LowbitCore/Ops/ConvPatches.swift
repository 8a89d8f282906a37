/// The receptive fields of a 2-D convolution, for code that works on one output position at a
/// time (AdaRound's reconstruction, bias absorption): output `(n, o, y, x)` of a Conv with
/// `group` groups is `b_o + sum_k W[o, k] * patch(n, y, x, g)[k]` for `g = o / (C_out / group)`,
/// where the patch holds, for each input channel `c` of group `g` and kernel tap `(i, j)`,
/// `X[n, g * C_g + c, y * s_h - p_top + i * d_h, x * s_w - p_left + j * d_w]` (0 in the padding),
/// in the weight's `[c, i, j]` order.
public struct ConvPatches: Sendable {
  public let channels: Int, height: Int, width: Int
  public let group: Int
  public let kernelHeight: Int, kernelWidth: Int
  public let outputHeight: Int, outputWidth: Int
  let strides: [Int], dilations: [Int], padBegin: [Int], padEnd: [Int]

  /// Geometry of `node` (a Conv whose weight has shape `[C_out, C/group, kh, kw]`) on inputs of
  /// shape `[N, C, H, W]`.
  /// A 1-D convolution (`[N, C, L]`, weight `[C_out, C/group, k]`) is the 2-D one of height 1.
  public init(node: Node, opset: Int, inputShape: [Int], weightShape: [Int]) throws {
    if inputShape.count == 3, weightShape.count == 3 {
      self = try Self(planar: Self.asTwoDimensional(node), opset: opset, inputShape: [inputShape[0], inputShape[1], 1, inputShape[2]],
                      weightShape: [weightShape[0], weightShape[1], 1, weightShape[2]])
    } else {
      self = try Self(planar: node, opset: opset, inputShape: inputShape, weightShape: weightShape)
    }
  }

  private init(planar node: Node, opset: Int, inputShape: [Int], weightShape: [Int]) throws {
    guard inputShape.count == 4, weightShape.count == 4 else {
      throw node.error(.unsupported, "only 1-D and 2-D convolutions are supported here (input \(inputShape), weight \(weightShape))")
    }
    let ctx = KernelContext(node: node, inputs: [], opset: opset)
    let group = try ctx.int("group", default: 1)
    guard group >= 1, inputShape[1] % group == 0, weightShape[1] * group == inputShape[1],
          weightShape[0] % group == 0 else {
      throw ctx.error("group \(group) does not fit input \(inputShape) and weight \(weightShape)")
    }
    let geometry = try ConvGeometry(ctx, input: Array(inputShape[2...]), kernel: Array(weightShape[2...]))
    channels = inputShape[1]
    height = inputShape[2]
    width = inputShape[3]
    self.group = group
    kernelHeight = weightShape[2]
    kernelWidth = weightShape[3]
    outputHeight = geometry.output[0]
    outputWidth = geometry.output[1]
    strides = geometry.strides
    dilations = geometry.dilations
    padBegin = geometry.padBegin
    padEnd = geometry.padEnd
  }

  /// A 1-D Conv node's attributes for the same convolution on a height-1 image: a leading 1 in
  /// kernel_shape, strides and dilations, no padding on the new axis.
  static func asTwoDimensional(_ node: Node) -> Node {
    var lifted = node
    for name in ["kernel_shape", "strides", "dilations"] {
      if case .ints(let v)? = node.attributes[name], v.count == 1 { lifted.attributes[name] = .ints([1] + v) }
    }
    if case .ints(let p)? = node.attributes["pads"], p.count == 2 { lifted.attributes["pads"] = .ints([0, p[0], 0, p[1]]) }
    return lifted
  }

  /// True when no output reads the zero padding (then constant shifts of the input pass
  /// through the convolution exactly).
  public var hasPadding: Bool { (padBegin + padEnd).contains { $0 != 0 } }

  /// Output positions per image.
  public var positions: Int { outputHeight * outputWidth }
  /// Values in one group's patch: `C/group * kh * kw`.
  public var patchSize: Int { channels / group * kernelHeight * kernelWidth }

  /// Copies the patches of every group at output position `p` of image `n` of `input` (NCHW):
  /// group `g`'s patch goes to `out + g * groupStride`.
  public func gatherAllGroups(
    _ input: UnsafePointer<Float>, image n: Int, position p: Int, into out: UnsafeMutablePointer<Float>, groupStride: Int
  ) {
    let cg = channels / group, taps = kernelHeight * kernelWidth
    let y = p / outputWidth, x = p % outputWidth
    let y0 = y * strides[0] - padBegin[0], x0 = x * strides[1] - padBegin[1]
    let dh = dilations[0], dw = dilations[1]
    for c in 0..<channels {
      let plane = input + (n * channels + c) * height * width
      let dst = out + (c / cg) * groupStride + (c % cg) * taps
      var k = 0
      for i in 0..<kernelHeight {
        let iy = y0 + i * dh
        let rowInside = iy >= 0 && iy < height
        for j in 0..<kernelWidth {
          let ix = x0 + j * dw
          dst[k] = rowInside && ix >= 0 && ix < width ? plane[iy * width + ix] : 0
          k += 1
        }
      }
    }
  }
}
