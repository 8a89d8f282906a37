/// Shared machinery for the elementwise, shape and reduction kernels: checked element counts,
/// ONNX multidirectional (numpy) broadcasting, and strided copies of any element type.

/// The largest element count a kernel allocates for one output (2^31).
let kernelMaxElementCount = 1 << 31

extension KernelContext {
  /// Element count of `shape`, or throws when a dim is negative or the count is absurd.
  func checkedCount(_ shape: [Int], what: String = "output") throws -> Int {
    if let bad = shape.first(where: { $0 < 0 }) {
      throw error("\(what) shape \(shape) has a negative dim \(bad)")
    }
    if shape.contains(0) { return 0 }
    var n = 1
    for d in shape {
      let (p, overflow) = n.multipliedReportingOverflow(by: d)
      guard !overflow && p <= kernelMaxElementCount else {
        throw error(
          "\(what) shape \(shape) has more than \(kernelMaxElementCount) elements", .invalidInput)
      }
      n = p
    }
    return n
  }

  /// Integer list held by input `i` (int32/int64, rank 0 or 1), e.g. a shape, axes or pads.
  func intList(_ i: Int, what: String) throws -> [Int] {
    let t = try input(i)
    guard case .int(let v) = t.storage else {
      throw error("\(what) (input \(i)) has type \(t.dtype), expected an integer type")
    }
    guard t.rank <= 1 else { throw error("\(what) (input \(i)) has rank \(t.rank), expected 1") }
    return v.map { Int($0) }
  }

  /// Integer list from input `i` when present, else nil.
  func optionalIntList(_ i: Int, what: String) throws -> [Int]? {
    optionalInput(i) == nil ? nil : try intList(i, what: what)
  }

  /// The single value of a one-element input (0-d or any shape with one element).
  func scalarInput(_ i: Int, what: String) throws -> Tensor {
    let t = try input(i)
    guard t.count == 1 else {
      throw error("\(what) (input \(i)) has shape \(t.shape), expected a single value")
    }
    return t
  }

  /// Normalized, duplicate-free axes for a tensor of `rank`.
  func normalizedAxes(_ axes: [Int], rank: Int, what: String = "axes") throws -> [Int] {
    var seen = Set<Int>()
    var result: [Int] = []
    for a in axes {
      guard a >= -rank && a < rank else {
        throw error("\(what) value \(a) is out of range for rank \(rank)")
      }
      let n = a < 0 ? a + rank : a
      guard seen.insert(n).inserted else { throw error("\(what) \(axes) repeat axis \(a)") }
      result.append(n)
    }
    return result
  }

  /// The numpy broadcast of `shapes`, or throws naming the incompatible shapes.
  func broadcastShape(_ shapes: [[Int]]) throws -> [Int] {
    let rank = shapes.map(\.count).max() ?? 0
    var out = [Int](repeating: 1, count: rank)
    for s in shapes {
      let pad = rank - s.count
      for (i, d) in s.enumerated() {
        let o = out[pad + i]
        if o == d || d == 1 { continue }
        guard o == 1 else {
          throw error(
            "cannot broadcast shapes \(shapes.map { "\($0)" }.joined(separator: " and "))")
        }
        out[pad + i] = d
      }
    }
    return out
  }
}

/// How several operands broadcast to one output, with runs of dims that broadcast alike merged.
///
/// After merging, `[N,C,H,W] op [C,1,1]` becomes dims `[N, C, H*W]` with strides `[CHW, HW, 1]`
/// and `[0, 1, 0]`: the innermost run is either contiguous (stride 1) or a repeated scalar
/// (stride 0) for each operand, which the inner loops specialize.
struct BroadcastPlan {
  /// The broadcast output shape.
  let shape: [Int]
  let count: Int
  /// Merged dims (at least one), row-major.
  let dims: [Int]
  /// Element strides per operand over `dims` (0 where the operand is broadcast).
  let strides: [[Int]]

  init(_ ctx: KernelContext, _ shapes: [[Int]]) throws {
    shape = try ctx.broadcastShape(shapes)
    count = try ctx.checkedCount(shape)
    let rank = shape.count
    let aligned = shapes.map { [Int](repeating: 1, count: rank - $0.count) + $0 }
    var mergedDims: [Int] = []
    var flags: [[Bool]] = []  // per merged dim, per operand: is the operand full along it
    for d in 0..<rank where shape[d] != 1 {
      let f = aligned.map { $0[d] != 1 }
      if let last = flags.last, last == f {
        mergedDims[mergedDims.count - 1] *= shape[d]
      } else {
        mergedDims.append(shape[d])
        flags.append(f)
      }
    }
    if mergedDims.isEmpty {
      mergedDims = [1]
      flags = [[Bool](repeating: false, count: shapes.count)]
    }
    var s = [[Int]](repeating: [Int](repeating: 0, count: mergedDims.count), count: shapes.count)
    for k in 0..<shapes.count {
      var acc = 1
      for d in stride(from: mergedDims.count - 1, through: 0, by: -1) where flags[d][k] {
        s[k][d] = acc
        acc *= mergedDims[d]
      }
    }
    dims = mergedDims
    strides = s
  }
}

/// Walks the rows (all merged dims but the last) of a `BroadcastPlan`, keeping each operand's
/// element offset current without divisions.
struct BroadcastRowCursor {
  private var index: [Int]
  /// Offset of the current row's first element in each operand.
  private(set) var offsets: [Int]
  private let dims: [Int]
  private let strides: [[Int]]

  init(_ plan: BroadcastPlan, row: Int) {
    dims = plan.dims
    strides = plan.strides
    index = [Int](repeating: 0, count: dims.count)
    offsets = [Int](repeating: 0, count: strides.count)
    var r = row
    for d in stride(from: dims.count - 2, through: 0, by: -1) {
      index[d] = r % dims[d]
      r /= dims[d]
      for k in 0..<strides.count { offsets[k] += index[d] * strides[k][d] }
    }
  }

  /// Moves to the next row.
  @inline(__always)
  mutating func advance() {
    var d = dims.count - 2
    while d >= 0 {
      index[d] += 1
      for k in 0..<offsets.count { offsets[k] += strides[k][d] }
      if index[d] < dims[d] { return }
      for k in 0..<offsets.count { offsets[k] -= strides[k][d] * dims[d] }
      index[d] = 0
      d -= 1
    }
  }
}

/// A function of one element. Kernels take ops as types (not closures) so that the generic
/// loops below are specialized and the op inlined, also inside the parallel chunks.
protocol UnaryElementOp: Sendable {
  associatedtype In: Sendable
  associatedtype Out: Sendable
  func callAsFunction(_ x: In) -> Out
}

/// A function of two elements (see `UnaryElementOp`).
protocol BinaryElementOp: Sendable {
  associatedtype A: Sendable
  associatedtype B: Sendable
  associatedtype Out: Sendable
  func callAsFunction(_ a: A, _ b: B) -> Out
}

/// A function of three elements (see `UnaryElementOp`).
protocol TernaryElementOp: Sendable {
  associatedtype A: Sendable
  associatedtype B: Sendable
  associatedtype C: Sendable
  associatedtype Out: Sendable
  func callAsFunction(_ a: A, _ b: B, _ c: C) -> Out
}

/// `op` applied to two broadcast operands; parallel over rows of the merged shape.
func broadcastMap<Op: BinaryElementOp>(
  _ plan: BroadcastPlan, _ a: [Op.A], _ b: [Op.B], cost: Int = 1, _ op: Op
) -> [Op.Out] {
  let n = plan.count
  if n == 0 { return [] }
  let inner = plan.dims[plan.dims.count - 1]
  let rows = n / inner
  let ia = plan.strides[0][plan.dims.count - 1]
  let ib = plan.strides[1][plan.dims.count - 1]
  return a.withUnsafeBufferPointer { pa in
    b.withUnsafeBufferPointer { pb in
      SharedBuffer<Op.Out>.array(count: n) { out in
        // Safety: n > 0 means every operand is non-empty; the plan's strides address only
        // elements inside each operand (its dims match the operand's shape), and each row
        // writes its own `inner` slots of `out`, which holds `n = rows * inner` elements.
        let (sa, sb) = (SharedBuffer(pa), SharedBuffer(pb))
        parallelChunks(rows, costPerItem: inner * cost) { range in
          let (ba, bb, bo) = (sa.pointer(), sb.pointer(), out.pointer())
          var cursor = BroadcastRowCursor(plan, row: range.lowerBound)
          for row in range {
            defer { cursor.advance() }
            let xa = ba + cursor.offsets[0]
            let xb = bb + cursor.offsets[1]
            let y = bo + row * inner
            switch (ia, ib) {
            case (1, 1): for j in 0..<inner { (y + j).initialize(to: op(xa[j], xb[j])) }
            case (1, 0):
              let vb = xb[0]
              for j in 0..<inner { (y + j).initialize(to: op(xa[j], vb)) }
            case (0, 1):
              let va = xa[0]
              for j in 0..<inner { (y + j).initialize(to: op(va, xb[j])) }
            default:
              for j in 0..<inner { (y + j).initialize(to: op(xa[j * ia], xb[j * ib])) }
            }
          }
        }
      }
    }
  }
}

/// `op` applied to three broadcast operands (Where).
func broadcastMap3<Op: TernaryElementOp>(
  _ plan: BroadcastPlan, _ a: [Op.A], _ b: [Op.B], _ c: [Op.C], _ op: Op
) -> [Op.Out] {
  let n = plan.count
  if n == 0 { return [] }
  let inner = plan.dims[plan.dims.count - 1]
  let rows = n / inner
  let last = plan.dims.count - 1
  let (ia, ib, ic) = (plan.strides[0][last], plan.strides[1][last], plan.strides[2][last])
  return a.withUnsafeBufferPointer { pa in
    b.withUnsafeBufferPointer { pb in
      c.withUnsafeBufferPointer { pc in
        SharedBuffer<Op.Out>.array(count: n) { out in
          // Safety: as in `broadcastMap`: non-empty operands, in-bounds strides, disjoint rows.
          let (sa, sb, sc) = (SharedBuffer(pa), SharedBuffer(pb), SharedBuffer(pc))
          parallelChunks(rows, costPerItem: inner) { range in
            let (ba, bb, bc, bo) = (sa.pointer(), sb.pointer(), sc.pointer(), out.pointer())
            var cursor = BroadcastRowCursor(plan, row: range.lowerBound)
            for row in range {
              defer { cursor.advance() }
              let off = cursor.offsets
              let (xa, xb, xc) = (ba + off[0], bb + off[1], bc + off[2])
              let y = bo + row * inner
              for j in 0..<inner {
                (y + j).initialize(to: op(xa[j * ia], xb[j * ib], xc[j * ic]))
              }
            }
          }
        }
      }
    }
  }
}

/// `op` applied to every element, in parallel for large arrays.
func parallelMap<Op: UnaryElementOp>(_ x: [Op.In], cost: Int = 1, _ op: Op) -> [Op.Out] {
  let n = x.count
  if n == 0 { return [] }
  return x.withUnsafeBufferPointer { px in
    SharedBuffer<Op.Out>.array(count: n) { out in
      // Chunks are disjoint ranges of 0..<n.
      let x = SharedBuffer(px)
      parallelChunks(n, costPerItem: cost) { range in
        for i in range { out.initialize(i, to: op(x[i])) }
      }
    }
  }
}

/// The elements of the strided view (`offset`, `shape`, `strides`) of `src`, row-major.
///
/// Strides may be 0 (broadcast) or negative (reversed slices); callers guarantee that every
/// addressed element lies in `src`.
func stridedCopy<T: Sendable>(_ src: [T], offset: Int, shape: [Int], strides: [Int]) -> [T] {
  // Merge dims that are contiguous with each other, drop size-1 dims.
  var dims: [Int] = []
  var st: [Int] = []
  for (d, s) in zip(shape, strides) where d != 1 {
    if let ld = dims.last, let ls = st.last, ls == s * d {
      dims[dims.count - 1] = ld * d
      st[st.count - 1] = s
    } else {
      dims.append(d)
      st.append(s)
    }
  }
  let n = dims.reduce(1, *)
  if n == 0 { return [] }
  if dims.isEmpty {
    dims = [1]
    st = [0]
  }
  let inner = dims[dims.count - 1]
  let innerStride = st[st.count - 1]
  let rows = n / inner
  let (dimensions, steps) = (dims, st)
  return src.withUnsafeBufferPointer { ps in
    SharedBuffer<T>.array(count: n) { out in
      // Safety: n > 0 so src is non-empty; the caller checked that every offset
      // `offset + sum(i_d * strides_d)` lies in src; each row fills its own `inner` slots.
      let source = SharedBuffer(ps)
      parallelChunks(rows, costPerItem: inner) { range in
        let (dims, st) = (dimensions, steps)
        let (bs, bo) = (UnsafePointer(source.pointer()), out.pointer())
        for row in range {
          var r = row
          var o = offset
          for d in stride(from: dims.count - 2, through: 0, by: -1) {
            o += (r % dims[d]) * st[d]
            r /= dims[d]
          }
          let y = bo + row * inner
          if innerStride == 1 {
            (y).initialize(from: bs + o, count: inner)
          } else {
            for j in 0..<inner { (y + j).initialize(to: bs[o + j * innerStride]) }
          }
        }
      }
    }
  }
}

/// Elements of `src` at the flat `indices`; a negative index takes `fill` instead.
func pickElements<T: Sendable>(_ src: [T], _ indices: [Int], fill: T?) -> [T] {
  let n = indices.count
  if n == 0 { return [] }
  return src.withUnsafeBufferPointer { ps in
    indices.withUnsafeBufferPointer { pi in
      SharedBuffer<T>.array(count: n) { out in
        // Callers build `indices` in 0..<src.count, or negative only with a fill value.
        let (source, index) = (SharedBuffer(ps), SharedBuffer(pi))
        parallelChunks(n) { range in
          for i in range {
            let k = index[i]
            out.initialize(i, to: k >= 0 ? source[k] : fill!)
          }
        }
      }
    }
  }
}

extension Tensor.Storage {
  /// The strided view (see `stridedCopy`) of these elements.
  func strided(offset: Int, shape: [Int], strides: [Int]) -> Tensor.Storage {
    switch self {
    case .float(let v): return .float(stridedCopy(v, offset: offset, shape: shape, strides: strides))
    case .int(let v): return .int(stridedCopy(v, offset: offset, shape: shape, strides: strides))
    case .bool(let v): return .bool(stridedCopy(v, offset: offset, shape: shape, strides: strides))
    }
  }

  /// The elements at flat `indices` (negative: the single element of `fill`).
  func picking(_ indices: [Int], fill: Tensor.Storage? = nil) -> Tensor.Storage {
    switch (self, fill) {
    case (.float(let v), .float(let f)?): return .float(pickElements(v, indices, fill: f.first))
    case (.int(let v), .int(let f)?): return .int(pickElements(v, indices, fill: f.first))
    case (.bool(let v), .bool(let f)?): return .bool(pickElements(v, indices, fill: f.first))
    case (.float(let v), _): return .float(pickElements(v, indices, fill: 0))
    case (.int(let v), _): return .int(pickElements(v, indices, fill: 0))
    case (.bool(let v), _): return .bool(pickElements(v, indices, fill: false))
    }
  }

  /// `count` copies of the first element.
  func repeatingFirst(_ count: Int) -> Tensor.Storage {
    switch self {
    case .float(let v): return .float([Float](repeating: v[0], count: count))
    case .int(let v): return .int([Int64](repeating: v[0], count: count))
    case .bool(let v): return .bool([Bool](repeating: v[0], count: count))
    }
  }
}

extension Tensor {
  /// This tensor broadcast (numpy rules, already checked by the caller) to `target`.
  func broadcast(to target: [Int]) -> Tensor {
    if shape == target { return self }
    let pad = target.count - rank
    let own = Tensor.strides(of: shape)
    var st = [Int](repeating: 0, count: target.count)
    for i in 0..<rank where shape[i] != 1 { st[pad + i] = own[i] }
    return Tensor(dtype: dtype, shape: target, storage: storage.strided(offset: 0, shape: target, strides: st))
  }
}
