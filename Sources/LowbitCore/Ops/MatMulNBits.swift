/// ONNX Runtime's `com.microsoft` MatMulNBits (weight-only block quantization):
///
///     Y = A W (+ bias),   W[k, n] = (u[n, k] - z[n, k / b]) * s[n, k / b]
///
/// with `u` packed `bits` to a byte, low bits first, as `B[N, ceil(K / b), b * bits / 8]`, the
/// scales `s` as `[N * ceil(K / b)]` (or `[N, ceil(K / b)]`), the zero points `z` packed the same
/// way per row of blocks (default `2^(bits - 1)`), block size `b` a power of two of 16 or more.
extension Ops {
  static let microsoftKernels: [String: Kernel] = ["MatMulNBits": matMulNBits]

  /// Every kernel by operator domain (the default one under both of its names) and op type.
  public static let kernelsByDomain: [String: [String: Kernel]] = [
    "": kernels, "ai.onnx": kernels, "com.microsoft": microsoftKernels,
  ]

  /// The kernel for `node` in its domain, if lowbit has one.
  public static func kernel(for node: Node) -> Kernel? { kernelsByDomain[node.domain]?[node.opType] }

  /// The float weight `W [K, N]` of a MatMulNBits node from its packed inputs.
  static func matMulNBitsWeight(_ ctx: KernelContext) throws -> (weight: Tensor, k: Int, n: Int) {
    let k = try ctx.int("K", default: 0), n = try ctx.int("N", default: 0)
    let bits = try ctx.int("bits", default: 4), block = try ctx.int("block_size", default: 0)
    guard k > 0, n > 0, k <= 1 << 24, n <= 1 << 24 else { throw ctx.error("K \(k) and N \(n) must be positive (at most 2^24)") }
    guard [2, 4, 8].contains(bits) else { throw ctx.error("bits \(bits) is not 2, 4 or 8", .unsupported) }
    guard block >= 16, block & (block - 1) == 0, block <= 1 << 16 else { throw ctx.error("block_size \(block) is not a power of two of 16 or more") }
    if let g = ctx.optionalInput(4), g.count > 0 { throw ctx.error("g_idx (act-order) is not supported", .unsupported) }
    let blocks = (k + block - 1) / block, blob = block * bits / 8
    let packed = try ctx.input(1), scales = try ctx.floatInput(2)
    guard packed.dtype == .uint8, packed.count == n * blocks * blob else {
      throw ctx.error("B must be uint8 [\(n), \(blocks), \(blob)], got \(packed.dtype) \(packed.shape)")
    }
    guard scales.count == n * blocks else { throw ctx.error("scales must hold \(n * blocks) values, got \(scales.count)") }
    guard k * n <= 1 << 28 else {
      throw ctx.error("the weight of \(k) x \(n) values is too large")
    }
    let perByte = 8 / bits, mask = (1 << bits) - 1
    func unpack(_ bytes: [Int64], _ i: Int) -> Int { (Int(bytes[i / perByte]) >> ((i % perByte) * bits)) & mask }
    var zero: (Int, Int) -> Float = { _, _ in Float(1 << (bits - 1)) }
    if let z = ctx.optionalInput(3), z.count > 0 {
      if z.dtype == .uint8 {
        let rowBytes = (blocks * bits + 7) / 8
        guard z.count == n * rowBytes else { throw ctx.error("packed zero_points must hold \(n * rowBytes) bytes, got \(z.count)") }
        let zs = z.ints
        zero = { row, b in Float(unpack(zs, row * rowBytes * perByte + b)) }
      } else if z.dtype.isFloatingPoint {
        guard z.count == n * blocks else { throw ctx.error("zero_points must hold \(n * blocks) values, got \(z.count)") }
        let zs = z.floats
        zero = { row, b in zs[row * blocks + b] }
      } else {
        throw ctx.error("zero_points must be uint8 or float, got \(z.dtype)")
      }
    }
    let u = packed.ints, s = scales.floats
    var w = [Float](repeating: 0, count: k * n)
    for row in 0..<n {
      for b in 0..<blocks {
        let scale = s[row * blocks + b], z = zero(row, b)
        let base = (row * blocks + b) * blob * perByte
        for j in 0..<min(block, k - b * block) {
          w[(b * block + j) * n + row] = (Float(unpack(u, base + j)) - z) * scale
        }
      }
    }
    return (Tensor(shape: [k, n], floats: w), k, n)
  }

  static func matMulNBits(_ ctx: KernelContext) throws -> [Tensor] {
    let a = try ctx.floatInput(0)
    let (w, k, n) = try matMulNBitsWeight(ctx)
    guard a.rank >= 1, a.shape[a.rank - 1] == k else { throw ctx.error("A's last dimension must be K = \(k), got \(a.shape)") }
    let product = KernelContext(node: Node(name: ctx.node.name, opType: "MatMul", inputs: ["a", "w"], outputs: ["y"]), inputs: [a, w], opset: ctx.opset)
    var y = try matMul(product)[0]
    if let bias = ctx.optionalInput(5) {
      guard bias.dtype.isFloatingPoint, bias.count == n else { throw ctx.error("bias must hold N = \(n) floats") }
      let bs = bias.floats
      var v = y.floats
      for i in v.indices { v[i] += bs[i % n] }
      y = Tensor(shape: y.shape, floats: v)
    }
    return [y]
  }
}
