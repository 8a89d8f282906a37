import Foundation

/// DepthToSpace, SpaceToDepth (pixel shuffle), CumSum, LRN, LpNormalization and Einsum.
extension Ops {
  static let rearrangeKernels: [String: Kernel] = [
    "DepthToSpace": depthToSpace,
    "SpaceToDepth": spaceToDepth,
    "CumSum": cumSum,
    "LRN": localResponseNormalization,
    "LpNormalization": lpNormalization,
    "Einsum": einsum,
  ]
}

/// The elements of `x` viewed with `shape` (contiguous) and read in the order of `perm`.
private func permuted(_ x: Tensor, viewedAs shape: [Int], perm: [Int]) -> (shape: [Int], storage: Tensor.Storage) {
  let strides = Tensor.strides(of: shape)
  let outShape = perm.map { shape[$0] }
  return (outShape, x.storage.strided(offset: 0, shape: outShape, strides: perm.map { strides[$0] }))
}

/// DepthToSpace, `[N, C, H, W] -> [N, C / b^2, H b, W b]`: DCR mode reads the channels as
/// `[b, b, C / b^2]`, CRD mode as `[C / b^2, b, b]`.
private func depthToSpace(_ ctx: KernelContext) throws -> [Tensor] {
  let x = try ctx.input(0)
  let b = try ctx.int("blocksize", default: 0)
  guard x.rank == 4, b >= 1, x.shape[1] % (b * b) == 0 else {
    throw ctx.error("input \(x.shape) and blocksize \(b): expected N x C x H x W with C divisible by blocksize^2")
  }
  let (n, c, h, w) = (x.shape[0], x.shape[1] / (b * b), x.shape[2], x.shape[3])
  let view: (shape: [Int], storage: Tensor.Storage)
  switch try ctx.string("mode", default: "DCR") {
  case "DCR": view = permuted(x, viewedAs: [n, b, b, c, h, w], perm: [0, 3, 4, 1, 5, 2])
  case "CRD": view = permuted(x, viewedAs: [n, c, b, b, h, w], perm: [0, 1, 4, 2, 5, 3])
  case let other: throw ctx.error("mode '\(other)' is not DCR or CRD")
  }
  return [Tensor(dtype: x.dtype, shape: [n, c, h * b, w * b], storage: view.storage)]
}

/// SpaceToDepth, `[N, C, H, W] -> [N, C b^2, H / b, W / b]`, the inverse of DCR DepthToSpace.
private func spaceToDepth(_ ctx: KernelContext) throws -> [Tensor] {
  let x = try ctx.input(0)
  let b = try ctx.int("blocksize", default: 0)
  guard x.rank == 4, b >= 1, x.shape[2] % b == 0, x.shape[3] % b == 0 else {
    throw ctx.error("input \(x.shape) and blocksize \(b): expected N x C x H x W with H and W divisible by blocksize")
  }
  let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2] / b, x.shape[3] / b)
  let view = permuted(x, viewedAs: [n, c, h, b, w, b], perm: [0, 3, 5, 1, 2, 4])
  return [Tensor(dtype: x.dtype, shape: [n, c * b * b, h, w], storage: view.storage)]
}

/// CumSum along `axis` (input 1): `y_i = sum_{j <= i} x_j`, `j < i` when exclusive, from the end
/// when reverse.
private func cumSum(_ ctx: KernelContext) throws -> [Tensor] {
  let x = try ctx.input(0)
  guard x.rank >= 1 else { throw ctx.error("input is a scalar; CumSum needs at least one dimension") }
  let axisList = try ctx.intList(1, what: "axis")
  guard axisList.count == 1 else { throw ctx.error("axis has \(axisList.count) values, expected one") }
  let axis = try ctx.axis(axisList[0], rank: x.rank)
  let exclusive = try ctx.int("exclusive", default: 0) != 0, reverse = try ctx.int("reverse", default: 0) != 0
  let dim = x.shape[axis], inner = x.shape[(axis + 1)...].reduce(1, *), outer = x.shape[..<axis].reduce(1, *)
  func scan<T: AdditiveArithmetic>(_ v: [T]) -> [T] {
    var y = [T](repeating: .zero, count: v.count)
    for o in 0..<outer {
      for i in 0..<inner {
        var total = T.zero
        for step in 0..<dim {
          let k = reverse ? dim - 1 - step : step
          let at = (o * dim + k) * inner + i
          if exclusive { y[at] = total; total += v[at] } else { total += v[at]; y[at] = total }
        }
      }
    }
    return y
  }
  switch x.storage {
  case .float(let v): return [Tensor(shape: x.shape, floats: scan(v))]
  case .int(let v): return [Tensor(dtype: x.dtype, shape: x.shape, storage: .int(scan(v)))]
  case .bool: throw ctx.error("CumSum of a bool tensor is not supported", .unsupported)
  }
}

/// LRN across channels: `y = x / (bias + alpha / size * sum x^2)^beta`, the sum over channels
/// `c - floor((size - 1) / 2) ... c + ceil((size - 1) / 2)`.
private func localResponseNormalization(_ ctx: KernelContext) throws -> [Tensor] {
  let x = try ctx.floatInput(0)
  let size = try ctx.int("size", default: 0)
  guard x.rank >= 3, size >= 1 else { throw ctx.error("input \(x.shape) and size \(size): expected N x C x D... and size >= 1") }
  let alpha = try ctx.float("alpha", default: 1e-4), beta = try ctx.float("beta", default: 0.75)
  let bias = try ctx.float("bias", default: 1)
  let n = x.shape[0], c = x.shape[1], plane = x.shape[2...].reduce(1, *)
  let before = (size - 1) / 2, after = size - 1 - before
  let v = x.floats
  var y = [Float](repeating: 0, count: v.count)
  for s in 0..<n {
    for ch in 0..<c {
      let lo = max(0, ch - before), hi = min(c - 1, ch + after)
      for p in 0..<plane {
        var sum: Float = 0
        for k in lo...hi { let e = v[(s * c + k) * plane + p]; sum += e * e }
        let at = (s * c + ch) * plane + p
        y[at] = v[at] / powf(bias + alpha / Float(size) * sum, beta)
      }
    }
  }
  return [Tensor(shape: x.shape, floats: y)]
}

/// LpNormalization: `x / ||x||_p` along `axis` (p 1 or 2; a zero norm leaves zeros).
private func lpNormalization(_ ctx: KernelContext) throws -> [Tensor] {
  let x = try ctx.floatInput(0)
  let axis = try ctx.axis(try ctx.int("axis", default: -1), rank: x.rank)
  let p = try ctx.int("p", default: 2)
  guard p == 1 || p == 2 else { throw ctx.error("p = \(p) is not 1 or 2") }
  let dim = x.shape[axis], inner = x.shape[(axis + 1)...].reduce(1, *), outer = x.shape[..<axis].reduce(1, *)
  let v = x.floats
  var y = v
  for o in 0..<outer {
    for i in 0..<inner {
      var norm = 0.0
      for k in 0..<dim { let e = Double(v[(o * dim + k) * inner + i]); norm += p == 1 ? Swift.abs(e) : e * e }
      if p == 2 { norm = norm.squareRoot() }
      if norm == 0 { continue }
      for k in 0..<dim { y[(o * dim + k) * inner + i] = Float(Double(v[(o * dim + k) * inner + i]) / norm) }
    }
  }
  return [Tensor(shape: x.shape, floats: y)]
}

/// Einsum on float operands: `equation` names each operand's axes by letters (`...` for the
/// remaining leading axes, aligned from the right); the output keeps the letters after `->`
/// (without `->`: every letter used once, alphabetically, after `...`). Every other letter is
/// summed over: `y[out] = sum prod_i x_i[labels_i]`.
private func einsum(_ ctx: KernelContext) throws -> [Tensor] {
  let operands = try ctx.node.inputs.indices.map { try ctx.floatInput($0) }
  guard case .string(let equation)? = ctx.node.attributes["equation"] else { throw ctx.error("attribute 'equation' is required") }
  let compact = equation.filter { !$0.isWhitespace }
  let sides = compact.components(separatedBy: "->")
  let terms = sides[0].components(separatedBy: ",")
  guard terms.count == operands.count, sides.count <= 2 else {
    throw ctx.error("equation '\(equation)' names \(terms.count) operands, the node has \(operands.count)")
  }
  // Ellipsis axes become the characters "0", "1", ... (right-aligned across operands).
  var ellipsisRank = 0
  for (term, x) in zip(terms, operands) where term.contains("...") {
    ellipsisRank = max(ellipsisRank, x.rank - term.replacingOccurrences(of: "...", with: "").count)
  }
  let ellipsisLabels = (0..<ellipsisRank).map { Character(String($0)) }
  func labels(_ term: String, rank: Int) throws -> [Character] {
    guard term.contains("...") else { return Array(term) }
    let parts = term.components(separatedBy: "...")
    let own = rank - parts[0].count - parts[1].count
    guard own >= 0 else { throw ctx.error("operand of rank \(rank) does not fit '\(term)'") }
    return Array(parts[0]) + ellipsisLabels.suffix(own) + Array(parts[1])
  }
  let inputLabels = try zip(terms, operands).map { try labels($0, rank: $1.rank) }
  var size: [Character: Int] = [:]
  for (ls, x) in zip(inputLabels, operands) {
    guard ls.count == x.rank else { throw ctx.error("'\(String(ls))' names \(ls.count) axes of an operand of rank \(x.rank)") }
    for (l, d) in zip(ls, x.shape) {
      if let known = size[l], known != d {
        if known == 1 { size[l] = d } else if d != 1 { throw ctx.error("axis '\(l)' has sizes \(known) and \(d)") }
      } else if size[l] == nil {
        size[l] = d
      }
    }
  }
  let outputLabels: [Character]
  if sides.count == 2 {
    outputLabels = try labels(sides[1], rank: sides[1].replacingOccurrences(of: "...", with: "").count + ellipsisRank)
  } else {
    let counts = inputLabels.flatMap { $0 }.reduce(into: [Character: Int]()) { $0[$1, default: 0] += 1 }
    outputLabels = ellipsisLabels + counts.filter { $0.value == 1 && !ellipsisLabels.contains($0.key) }.keys.sorted()
  }
  if let unknown = outputLabels.first(where: { size[$0] == nil }) {
    throw ctx.error("output axis '\(unknown)' is not among the inputs' in '\(equation)'")
  }
  let summed = size.keys.filter { !outputLabels.contains($0) }.sorted()
  let all = outputLabels + summed
  let dims = all.map { size[$0]! }
  let outShape = outputLabels.map { size[$0]! }
  _ = try ctx.checkedCount(outShape)
  if let product = batchedProduct(operands, inputLabels, outputLabels, size) { return [product] }
  // Per operand, its stride for each label of `all` (0 where absent or broadcast).
  let strides: [[Int]] = zip(inputLabels, operands).map { ls, x in
    let own = Tensor.strides(of: x.shape)
    return all.map { l in
      guard let i = ls.firstIndex(of: l), x.shape[i] != 1 else { return 0 }
      // A label repeated in one operand (a diagonal) adds its strides.
      return ls.indices.filter { ls[$0] == l }.reduce(0) { $0 + own[$1] }
    }
  }
  let values = operands.map(\.floats)
  let outCount = outShape.reduce(1, *), sumCount = summed.map { size[$0]! }.reduce(1, *)
  var y = [Float](repeating: 0, count: outCount)
  var index = [Int](repeating: 0, count: all.count)
  var offsets = [Int](repeating: 0, count: operands.count)
  /// Advances the odometer over axes `last` down to `first` (the summed axes, or the output
  /// axes); a full cycle leaves them at 0 with the offsets restored.
  func advance(from last: Int, downTo first: Int) {
    var d = last
    while d >= first {
      index[d] += 1
      for k in offsets.indices { offsets[k] += strides[k][d] }
      if index[d] < dims[d] { return }
      for k in offsets.indices { offsets[k] -= strides[k][d] * dims[d] }
      index[d] = 0
      d -= 1
    }
  }
  if outCount > 0 && sumCount > 0 {
    for o in 0..<outCount {
      var total: Float = 0
      for _ in 0..<sumCount {
        var product: Float = 1
        for (k, v) in values.enumerated() { product *= v[offsets[k]] }
        total += product
        advance(from: all.count - 1, downTo: outputLabels.count)
      }
      y[o] = total
      advance(from: outputLabels.count - 1, downTo: 0)
    }
  }
  return [Tensor(shape: outShape, floats: y)]
}

/// Two-operand Einsum that is a batched matrix product (attention's `bhid,bhjd->bhij`, a
/// projection `...ij,jk`): every label appears once per operand with one size, and each is a
/// batch label (both operands and the output), a contracted one (both operands only) or kept
/// from one operand. Then `A` is read as `[batch, m, k]` and `B` as `[batch, k, n]` (strided
/// views, no arithmetic), multiplied by sgemm per batch, and the `[batch, m, n]` result is
/// permuted to the output's order. Nil when the equation is not of that form.
private func batchedProduct(
  _ operands: [Tensor], _ labels: [[Character]], _ output: [Character], _ size: [Character: Int]
) -> Tensor? {
  guard operands.count == 2, labels.allSatisfy({ Set($0).count == $0.count }), Set(output).count == output.count else { return nil }
  let (la, lb) = (labels[0], labels[1])
  guard zip(labels, operands).allSatisfy({ ls, x in zip(ls, x.shape).allSatisfy { size[$0] == $1 } }) else { return nil }
  let batch = output.filter { la.contains($0) && lb.contains($0) }
  let contracted = la.filter { lb.contains($0) && !output.contains($0) }
  let m = la.filter { !lb.contains($0) }, n = lb.filter { !la.contains($0) }
  guard m.allSatisfy(output.contains), n.allSatisfy(output.contains), output.count == batch.count + m.count + n.count else { return nil }
  func view(_ x: Tensor, _ ls: [Character], _ order: [Character]) -> [Float] {
    let (shape, storage) = permuted(x, viewedAs: x.shape, perm: order.map { ls.firstIndex(of: $0)! })
    return Tensor(dtype: x.dtype, shape: shape, storage: storage).floats
  }
  let count = { (ls: [Character]) in ls.map { size[$0]! }.reduce(1, *) }
  let (bt, mm, nn, kk) = (count(batch), count(m), count(n), count(contracted))
  let a = view(operands[0], la, batch + m + contracted), b = view(operands[1], lb, batch + contracted + n)
  var y = [Float](repeating: 0, count: bt * mm * nn)
  for i in 0..<bt {
    let c = MatrixProduct.product(Array(a[(i * mm * kk)..<((i + 1) * mm * kk)]), Array(b[(i * kk * nn)..<((i + 1) * kk * nn)]),
                                  m: mm, n: nn, k: kk)
    y.replaceSubrange((i * mm * nn)..<((i + 1) * mm * nn), with: c)
  }
  let produced = batch + m + n
  let result = Tensor(shape: produced.map { size[$0]! }, floats: y)
  return Tensor(shape: output.map { size[$0]! }, floats: view(result, produced, output))
}
