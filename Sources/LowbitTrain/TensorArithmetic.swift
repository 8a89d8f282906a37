import LowbitCore

/// Small elementwise helpers for gradient rules. Every reduction runs in one fixed order, so
/// results are bitwise reproducible whatever the thread count.
enum TensorArithmetic {
  /// `a + b` for two float tensors of the same shape (gradient accumulation).
  static func sum(_ a: Tensor, _ b: Tensor) -> Tensor {
    precondition(a.shape == b.shape, "sum: shapes \(a.shape) and \(b.shape) differ")
    let x = a.floats, y = b.floats
    let out = SharedBuffer<Float>.array(count: x.count) { out in
      x.withUnsafeBufferPointer { xp in
        y.withUnsafeBufferPointer { yp in
          // Three buffers of `x.count` floats; chunks write disjoint ranges.
          let (xb, yb) = (SharedBuffer(xp), SharedBuffer(yp))
          parallelChunks(x.count) { range in
            for i in range { out.initialize(i, to: xb[i] + yb[i]) }
          }
        }
      }
    }
    return Tensor(shape: a.shape, floats: out)
  }

  /// `g[i]` where `lower < x[i] < upper` (no upper test when `upper` is nil), else 0: the
  /// gradient mask of ReLU and Clip.
  static func passing(_ g: [Float], where x: [Float], above lower: Float, below upper: Float?) -> [Float] {
    precondition(g.count == x.count, "passing: \(g.count) gradients for \(x.count) values")
    let hi = upper ?? .infinity, bounded = upper != nil
    return SharedBuffer<Float>.array(count: x.count) { out in
      x.withUnsafeBufferPointer { xp in
        g.withUnsafeBufferPointer { gp in
          // Safety: three buffers of `x.count` floats; chunks write disjoint ranges.
          let (xs, gs) = (SharedBuffer(xp), SharedBuffer(gp))
          parallelChunks(x.count) { range in
            let (xb, gb, ob) = (UnsafePointer(xs.pointer()), UnsafePointer(gs.pointer()), out.pointer())
            // Both values are loaded unconditionally so that the loops compile to vector selects.
            if bounded {
              for i in range { let v = xb[i], d = gb[i]; ob[i] = v > lower && v < hi ? d : 0 }
            } else {
              for i in range { let v = xb[i], d = gb[i]; ob[i] = v > lower ? d : 0 }
            }
          }
        }
      }
    }
  }

  /// `scale * a`.
  static func scaled(_ a: Tensor, by scale: Float) -> Tensor {
    if scale == 1 { return a }
    return Tensor(shape: a.shape, floats: a.floats.map { $0 * scale })
  }

  /// The float elements of a tensor broadcast (numpy rules, already checked) to `shape`.
  static func broadcast(_ a: Tensor, to shape: [Int]) -> [Float] {
    let values = a.asFloats()
    if a.shape == shape { return values }
    let strides = broadcastStrides(of: a.shape, to: shape)
    let count = shape.reduce(1, *)
    var out = [Float](repeating: 0, count: count)
    var index = [Int](repeating: 0, count: shape.count)
    var offset = 0
    for i in 0..<count {
      out[i] = values[offset]
      advance(&index, &offset, shape: shape, strides: strides)
    }
    return out
  }

  /// Sums `gradient` (shaped like the broadcast output) over the axes along which an operand of
  /// `shape` was broadcast: `dA[j] = sum_{i : i maps to j} dY[i]`, the rule for every
  /// broadcasting op. Sums run over the output in row-major order, accumulated in Double.
  static func unbroadcast(_ gradient: Tensor, to shape: [Int]) -> Tensor {
    if gradient.shape == shape { return gradient }
    let g = gradient.floats
    let strides = broadcastStrides(of: shape, to: gradient.shape)
    var acc = [Double](repeating: 0, count: shape.reduce(1, *))
    var index = [Int](repeating: 0, count: gradient.rank)
    var offset = 0
    for i in 0..<g.count {
      acc[offset] += Double(g[i])
      advance(&index, &offset, shape: gradient.shape, strides: strides)
    }
    return Tensor(shape: shape, floats: acc.map { Float($0) })
  }

  /// Element strides of an operand of `shape` seen through the broadcast `target` shape (0 on
  /// broadcast axes and on the leading axes the operand lacks).
  static func broadcastStrides(of shape: [Int], to target: [Int]) -> [Int] {
    let own = Tensor.strides(of: shape)
    let pad = target.count - shape.count
    var strides = [Int](repeating: 0, count: target.count)
    for i in 0..<shape.count where shape[i] != 1 { strides[pad + i] = own[i] }
    return strides
  }

  /// Moves a row-major multi-index one step, keeping `offset = sum(index * strides)`.
  @inline(__always)
  static func advance(_ index: inout [Int], _ offset: inout Int, shape: [Int], strides: [Int]) {
    var d = shape.count - 1
    while d >= 0 {
      index[d] += 1
      offset += strides[d]
      if index[d] < shape[d] { return }
      offset -= strides[d] * shape[d]
      index[d] = 0
      d -= 1
    }
  }

  /// Runs the forward kernel of `opType` on `inputs` (used by rules that are themselves a
  /// forward op of the gradient, such as Transpose or a broadcast Mul).
  static func run(
    _ opType: String, _ inputs: [Tensor], attributes: [String: Attribute] = [:], opset: Int, at node: Node
  ) throws -> Tensor {
    let helper = Node(name: node.name, opType: opType, inputs: inputs.indices.map { "in\($0)" },
                      outputs: ["out"], attributes: attributes)
    guard let kernel = Ops.kernels[opType] else { throw node.error(.unsupported, "no \(opType) kernel") }
    return try kernel(KernelContext(node: helper, inputs: inputs, opset: opset))[0]
  }
}
