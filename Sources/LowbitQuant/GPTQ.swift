import LowbitCore

/// GPTQ's settings (Frantar et al., "GPTQ: Accurate Post-Training Quantization for Generative
/// Pre-trained Transformers", 2022).
public struct GPTQOptions: Sendable, Equatable, Codable {
  /// λ of the dampening `H <- H + λ mean(diag H) I` (default 0.01, the paper's). When the damped
  /// `H` is still not positive definite, λ is raised tenfold, up to three times.
  public var damping = 0.01
  /// Rows quantized between two lazy updates of the rows after them (the paper's `B`, default
  /// 128). With per-group grids fitted as each group starts, it is rounded to a multiple of the
  /// group size (or the group size itself when larger), so a group never straddles two blocks.
  /// The result does not depend on it (up to rounding): lazy updates only regroup the same sums.
  public var blockSize = 128
  /// "Act order": rows in order of descending `diag H` (the inputs with the most energy first,
  /// while the most rows are left to absorb their error), each on the grid range setting fitted
  /// to its group's original weights ("static groups"), so the file's group layout stays the
  /// usual consecutive blocks. Default true: on MiniLM at W4 it beat the natural order with
  /// grids fitted as each group starts (docs/ptq-pipeline.md).
  public var actOrder = true
  /// The model input `[N, L]` whose zeros mark token positions left out of `H` (padding, which
  /// the model's outputs ignore), and also out of the activation ranges (`Calibration`) and
  /// channel-scale migration's statistics; "" for none, and nothing is left out when the model
  /// has no input of that name (default "attention_mask", the Hugging Face exports' name).
  public var maskInput = "attention_mask"

  public init() {}

  enum CodingKeys: String, CodingKey {
    case damping, blockSize = "block_size", actOrder = "act_order", maskInput = "mask_input"
  }

  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    let d = GPTQOptions()
    damping = try c.decodeIfPresent(Double.self, forKey: .damping) ?? d.damping
    blockSize = try c.decodeIfPresent(Int.self, forKey: .blockSize) ?? d.blockSize
    actOrder = try c.decodeIfPresent(Bool.self, forKey: .actOrder) ?? d.actOrder
    maskInput = try c.decodeIfPresent(String.self, forKey: .maskInput) ?? d.maskInput
  }

  /// Throws `invalidArgument` for a negative or non-finite damping or a block size below 1.
  public func validate() throws {
    guard damping >= 0, damping.isFinite else { throw LowbitError.invalidArgument("GPTQ damping must be 0 or more, got \(damping)") }
    guard blockSize >= 1 else { throw LowbitError.invalidArgument("GPTQ block size must be positive, got \(blockSize)") }
  }
}

/// One layer for GPTQ: `y = x W`, `W` the `[K, N]` matrix with a row per input feature (the
/// reduction axis: an ONNX MatMul weight as stored; the paper's columns) and a column per output,
/// each column on grids of `groupSize` consecutive rows.
public struct GPTQProblem: Sendable {
  /// `W`, `[K, N]` row-major.
  public var weights: [Float]
  /// `K`.
  public var rows: Int
  /// `N`.
  public var columns: Int
  public var grid: IntegerGrid
  /// Rows per grid: column `n` of group `g` (rows `g * groupSize ..< (g + 1) * groupSize`) has
  /// grid `params[g * N + n]`; `K` for one grid per column.
  public var groupSize: Int
  /// `[ceil(K / groupSize), N]`: the grids range setting fitted to `W` (round to nearest's).
  public var params: [QuantParams]
  /// When set, a group's grid is fitted again, by this function of the group's weights in its
  /// column, to the weights as GPTQ has updated them when the group's first row is reached;
  /// nil keeps `params`. Act order keeps `params` either way.
  public var refit: (@Sendable ([Float]) -> QuantParams)?

  public init(
    weights: [Float], rows: Int, columns: Int, grid: IntegerGrid, groupSize: Int, params: [QuantParams],
    refit: (@Sendable ([Float]) -> QuantParams)? = nil
  ) {
    precondition(weights.count == rows * columns && groupSize >= 1, "GPTQProblem: \(weights.count) weights for [\(rows), \(columns)]")
    precondition(params.count == (rows + groupSize - 1) / groupSize * columns, "GPTQProblem: \(params.count) grids")
    self.weights = weights
    self.rows = rows
    self.columns = columns
    self.grid = grid
    self.groupSize = groupSize
    self.params = params
    self.refit = refit
  }
}

/// What GPTQ made of one layer.
public struct GPTQOutcome: Sendable {
  /// `q`, `[K, N]`.
  public var integers: [Int]
  /// The grids `q` is on, `[ceil(K / groupSize), N]`.
  public var params: [QuantParams]
  /// `Q = s (q - z)`, `[K, N]`.
  public var weights: [Float]
  /// The proxy loss `tr((W - Q)^T H (W - Q))` (undamped `H`) with round to nearest on
  /// `problem.params`, and with GPTQ's `Q`: with `H = 2/n sum x^T x`, twice the mean squared
  /// output error per row.
  public var nearestLoss: Double
  public var loss: Double
  /// The λ the inverse was taken with.
  public var damping: Double
  /// Rows whose input was always zero (`H[k, k] = 0`): set to 0, as the paper does.
  public var deadInputs: Int
}

/// GPTQ (Frantar et al. 2022, Algorithm 1): the rows of `W` are quantized one at a time, and the
/// rows not yet quantized absorb each row's error so that the layer's output on the calibration
/// inputs changes least (the Optimal Brain Quantization update, eq. 2-3, one row for all columns):
///
///     e_k = (w_k - quant(w_k)) / U[k, k],   w_j <- w_j - U[k, j] e_k   for j > k,
///
/// with `U` the upper Cholesky factor of `H^-1 = U^T U`, `H = 2/n sum x^T x + λ mean(diag H) I`
/// (row `k` of `U`, divided by its diagonal, is the row `k` of the inverse Hessian of the rows
/// still to quantize). Updates go to the current block of `blockSize` rows at once and to the
/// rows after it once per block (one GEMM). Columns are independent given `U`, so they are split
/// over the kernel threads.
public enum GPTQ {
  /// Rounds `problem` with the Hessian `hessian` (`K x K`, `2/n sum x^T x` undamped); nil when
  /// `H` is still not positive definite with λ raised tenfold three times (from 0.01 when 0).
  public static func quantize(_ problem: GPTQProblem, hessian: SymmetricMatrix, options: GPTQOptions) -> GPTQOutcome? {
    let (k, n, g) = (problem.rows, problem.columns, problem.groupSize)
    precondition(hessian.n == k, "GPTQ: Hessian of \(hessian.n) rows for \(k) weight rows")
    var h = hessian
    var w = problem.weights
    var dead = 0
    for r in 0..<k where h[r, r] == 0 {
      h.setDiagonal(r, to: 1)
      for c in 0..<n { w[r * n + c] = 0 }
      dead += 1
    }
    let order = options.actOrder ? (0..<k).sorted { h[$0, $0] > h[$1, $1] || (h[$0, $0] == h[$1, $1] && $0 < $1) } : Array(0..<k)
    if options.actOrder { h = h.permuted(order) }
    let mean = k == 0 ? 0 : h.diagonal.reduce(0, +) / Double(k)
    var lambda = options.damping
    var factor: [Double]?
    for attempt in 0..<4 {
      if attempt > 0 { lambda = lambda == 0 ? 0.01 : lambda * 10 }
      var damped = h
      damped.addToDiagonal(lambda * mean)
      if let inverse = damped.inverse(), let u = inverse.choleskyUpper() {
        factor = u
        break
      }
    }
    guard let u = factor else { return nil }
    let refit = options.actOrder ? nil : problem.refit
    let block = refit == nil ? options.blockSize : (g >= options.blockSize ? g : options.blockSize / g * g)
    // Column chunks, each run on its own copy of its columns.
    let chunks = max(1, min(kernelThreadCount * 2, n / 16))
    let bounds = (0...chunks).map { n * $0 / chunks }
    let permuted = order.map { r in Array(w[(r * n)..<(r * n + n)]) }
    let results = parallelIndexedMap(chunks, costPerItem: 1 << 20) { chunk -> ColumnResult in
      let (c0, c1) = (bounds[chunk], bounds[chunk + 1])
      var columns = ColumnBlock(rows: k, width: c1 - c0)
      for r in 0..<k { for c in c0..<c1 { columns.w[r * columns.width + c - c0] = Double(permuted[r][c]) } }
      let groups = (k + g - 1) / g
      var params = [QuantParams](repeating: QuantParams(scale: 1, zeroPoint: 0), count: groups * (c1 - c0))
      for gi in 0..<groups { for c in c0..<c1 { params[gi * (c1 - c0) + c - c0] = problem.params[gi * n + c] } }
      return columns.quantize(u: u, order: order, groupSize: g, params: params, grid: problem.grid, refit: refit, block: block)
    }
    var integers = [Int](repeating: 0, count: k * n), weights = [Float](repeating: 0, count: k * n)
    var params = problem.params
    for (chunk, result) in results.enumerated() {
      let (c0, width) = (bounds[chunk], bounds[chunk + 1] - bounds[chunk])
      for (position, r) in order.enumerated() {
        for c in 0..<width {
          integers[r * n + c0 + c] = result.integers[position * width + c]
          weights[r * n + c0 + c] = result.weights[position * width + c]
        }
      }
      for gi in 0..<((k + g - 1) / g) { for c in 0..<width { params[gi * n + c0 + c] = result.params[gi * width + c] } }
    }
    var nearest = [Float](repeating: 0, count: k * n)
    for r in 0..<k {
      for c in 0..<n {
        nearest[r * n + c] = UniformQuantizer.fakeQuantize(problem.weights[r * n + c], problem.params[(r / g) * n + c], problem.grid)
      }
    }
    let losses = proxyLosses(hessian, weights: problem.weights, [nearest, weights], columns: n)
    return GPTQOutcome(
      integers: integers, params: params, weights: weights, nearestLoss: losses[0], loss: losses[1], damping: lambda, deadInputs: dead)
  }

  /// `tr((W - Q)^T H (W - Q))` for each `Q` of `candidates` (`[K, N]` each), in one GEMM.
  public static func proxyLosses(_ h: SymmetricMatrix, weights: [Float], _ candidates: [[Float]], columns n: Int) -> [Double] {
    let k = h.n, width = n * candidates.count
    guard k > 0, width > 0 else { return candidates.map { _ in 0 } }
    var d = [Double](repeating: 0, count: k * width)
    for (i, q) in candidates.enumerated() {
      for r in 0..<k { for c in 0..<n { d[r * width + i * n + c] = Double(weights[r * n + c]) - Double(q[r * n + c]) } }
    }
    var hd = [Double](repeating: 0, count: k * width)
    gemm64(transA: false, m: k, n: width, k: k, a: h.values, lda: k, b: d, ldb: width, c: &hd, ldc: width)
    return candidates.indices.map { i in
      var s = 0.0
      for r in 0..<k { for c in 0..<n { s += d[r * width + i * n + c] * hd[r * width + i * n + c] } }
      return s
    }
  }
}

/// One chunk's integers, values and grids, rows in GPTQ's order.
struct ColumnResult: Sendable {
  var integers: [Int]
  var weights: [Float]
  var params: [QuantParams]
}

/// A chunk of `W`'s columns (`[K, width]`, rows in GPTQ's order) as GPTQ updates them.
struct ColumnBlock {
  var rows: Int
  var width: Int
  var w: [Double]

  init(rows: Int, width: Int) {
    self.rows = rows
    self.width = width
    w = [Double](repeating: 0, count: rows * width)
  }

  /// Algorithm 1 on these columns: `u` the upper Cholesky factor of the damped `H^-1` in the
  /// rows' order, `order[p]` the original row at position `p`, `params` `[groups, width]` by
  /// original row.
  mutating func quantize(
    u: [Double], order: [Int], groupSize g: Int, params initial: [QuantParams], grid: IntegerGrid,
    refit: (@Sendable ([Float]) -> QuantParams)?, block: Int
  ) -> ColumnResult {
    let (k, width) = (rows, self.width)
    var params = initial
    var integers = [Int](repeating: 0, count: k * width), values = [Float](repeating: 0, count: k * width)
    var error = [Double](repeating: 0, count: block * width)
    for i1 in stride(from: 0, to: k, by: block) {
      let i2 = min(i1 + block, k)
      for p in i1..<i2 {
        let group = order[p] / g
        if let refit, p % g == 0 {
          // The group's rows (all in this block) as updated so far, one column at a time.
          let end = min(p + g, k)
          for c in 0..<width {
            params[group * width + c] = refit((p..<end).map { Float(w[$0 * width + c]) })
          }
        }
        let d = u[p * k + p]
        w.withUnsafeMutableBufferPointer { ws in
          error.withUnsafeMutableBufferPointer { es in
            // Safety: rows p..<i2 of the [k, width] chunk and row p - i1 of the [block, width]
            // errors, all inside the buffers (i2 <= k, p - i1 < block).
            let row = p * width, e = (p - i1) * width
            for c in 0..<width {
              let x = ws[row + c]
              let q = UniformQuantizer.quantize(Float(x), params[group * width + c], grid)
              let value = UniformQuantizer.dequantize(q, params[group * width + c])
              integers[row + c] = q
              values[row + c] = value
              es[e + c] = (x - Double(value)) / d
            }
            for j in (p + 1)..<max(i2, p + 1) {
              let f = u[p * k + j]
              if f == 0 { continue }
              let target = j * width
              for c in 0..<width { ws[target + c] -= f * es[e + c] }
            }
          }
        }
      }
      if i2 < k {
        // W[i2..<k] -= U[i1..<i2, i2..<k]^T E: the block's errors reach the later rows at once.
        gemm64(transA: true, m: k - i2, n: width, k: i2 - i1, alpha: -1, a: u, aOffset: i1 * k + i2, lda: k,
               b: error, ldb: width, beta: 1, c: &w, cOffset: i2 * width, ldc: width)
      }
    }
    return ColumnResult(integers: integers, weights: values, params: params)
  }
}

extension SymmetricMatrix {
  /// `P A P^T` for the permutation taking row `order[p]` to row `p`.
  func permuted(_ order: [Int]) -> SymmetricMatrix {
    var v = [Double](repeating: 0, count: n * n)
    for (p, r) in order.enumerated() { for (q, c) in order.enumerated() { v[p * n + q] = self[r, c] } }
    return SymmetricMatrix(n: n, values: v)
  }
}
