/// Per-op shape rules for `Graph.inferShapes()`.
enum ShapeRules {
  static let sameShape: Set<String> = [
    "Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "Erf", "Sqrt", "Exp", "Log", "Neg", "Abs",
    "Reciprocal", "Softmax", "LogSoftmax", "LayerNormalization", "BatchNormalization", "Gelu",
    "HardSigmoid", "HardSwish", "Floor", "Ceil", "Round", "Sign", "Dropout", "Identity", "InstanceNormalization",
    "GroupNormalization",
  ]
  static let broadcasting: Set<String> = [
    "Add", "Sub", "Mul", "Div", "Pow", "Min", "Max", "Equal", "Less", "LessOrEqual", "Greater",
    "GreaterOrEqual", "And", "Or", "Xor", "Where",
  ]
  static let comparison: Set<String> = [
    "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "And", "Or", "Xor", "Not", "IsNaN", "IsInf",
  ]

  static func infer(_ node: Node, _ ins: [ShapeFact?], opset: Int) -> [ShapeFact] {
    let x = ins.first ?? nil
    let op = node.opType
    func ints(_ name: String) -> [Int]? {
      if case .ints(let v)? = node.attributes[name] { return v }
      return nil
    }
    func int(_ name: String, _ d: Int) -> Int {
      if case .int(let v)? = node.attributes[name] { return v }
      return d
    }
    if sameShape.contains(op) {
      return [ShapeFact(dtype: x?.dtype, shape: x?.shape, value: op == "Identity" ? x?.value : nil)]
    }
    if comparison.contains(op) && op != "And" && !broadcasting.contains(op) {
      return [ShapeFact(dtype: .bool, shape: x?.shape)]
    }
    if broadcasting.contains(op) {
      let operands = op == "Where" ? Array(ins.dropFirst()) : ins
      let shape = broadcast(ins.map { $0?.shape })
      let dtype: DType? = comparison.contains(op) ? .bool : operands.compactMap { $0?.dtype }.first
      var value: [Dim]?
      if ["Add", "Sub", "Mul", "Div"].contains(op), ins.count == 2,
         let a = ins[0]?.fixedValue, let b = ins[1]?.fixedValue, a.count == b.count || a.count == 1 || b.count == 1 {
        let n = max(a.count, b.count)
        value = (0..<n).compactMap { i -> Dim? in
          let (p, q) = (a[a.count == 1 ? 0 : i], b[b.count == 1 ? 0 : i])
          switch op {
          case "Add": return .fixed(p + q)
          case "Sub": return .fixed(p - q)
          case "Mul": return .fixed(p * q)
          default: return q == 0 ? nil : .fixed(p / q)
          }
        }
        if value?.count != n { value = nil }
      }
      return [ShapeFact(dtype: dtype, shape: shape, value: value)]
    }
    switch op {
    case "Cast":
      let to = DType(rawValue: int("to", 0))
      return [ShapeFact(dtype: to, shape: x?.shape, value: to?.storageClass == .int ? x?.value : nil)]
    case "Shape":
      guard let s = x?.shape else { return [ShapeFact(dtype: .int64)] }
      let r = s.count
      var start = int("start", 0), end = int("end", r)
      start = min(max(start < 0 ? start + r : start, 0), r)
      end = min(max(end < 0 ? end + r : end, 0), r)
      let v = start < end ? Array(s[start..<end]) : []
      return [ShapeFact(dtype: .int64, shape: [.fixed(v.count)], value: v)]
    case "Gather":
      guard let data = x, let idx = ins.count > 1 ? ins[1] : nil, let r = data.shape?.count else { return [ShapeFact(dtype: x?.dtype)] }
      let axis = int("axis", 0) < 0 ? int("axis", 0) + r : int("axis", 0)
      guard axis >= 0 && axis < r, let idxShape = idx.shape, let s = data.shape else { return [ShapeFact(dtype: data.dtype)] }
      let shape = Array(s[..<axis]) + idxShape + Array(s[(axis + 1)...])
      var value: [Dim]?
      if r == 1, let v = data.value, let i = idx.fixedValue {
        let picked = i.compactMap { k -> Dim? in
          let j = k < 0 ? k + v.count : k
          return j >= 0 && j < v.count ? v[j] : nil
        }
        value = picked.count == i.count ? picked : nil
      }
      return [ShapeFact(dtype: data.dtype, shape: shape, value: value)]
    case "Unsqueeze", "Squeeze":
      let axes = opset >= 13 ? (ins.count > 1 ? ins[1]?.fixedValue : nil) : ints("axes")
      guard let s = x?.shape else { return [ShapeFact(dtype: x?.dtype)] }
      var shape: [Dim]?
      if op == "Unsqueeze", let axes = axes {
        let r = s.count + axes.count
        let norm = Set(axes.map { $0 < 0 ? $0 + r : $0 })
        var it = s.makeIterator()
        shape = (0..<r).map { norm.contains($0) ? .fixed(1) : (it.next() ?? .fixed(1)) }
      } else if op == "Squeeze" {
        if let axes = axes {
          let norm = Set(axes.map { $0 < 0 ? $0 + s.count : $0 })
          shape = s.enumerated().filter { !norm.contains($0.offset) }.map(\.element)
        } else if s.allSatisfy({ $0.value != nil }) {
          shape = s.filter { $0 != .fixed(1) }
        }
      }
      let value = (x?.value?.count ?? 0) <= 1 ? x?.value : nil
      return [ShapeFact(dtype: x?.dtype, shape: shape, value: value)]
    case "Concat":
      guard let r = ins.first??.shape?.count else { return [ShapeFact(dtype: x?.dtype)] }
      let axis = int("axis", 0) < 0 ? int("axis", 0) + r : int("axis", 0)
      let shapes = ins.compactMap { $0?.shape }
      var shape: [Dim]?
      if shapes.count == ins.count, axis >= 0, axis < r, shapes.allSatisfy({ $0.count == r }) {
        var s = shapes[0]
        let sizes = shapes.map { $0[axis].value }
        s[axis] = sizes.contains(where: { $0 == nil }) ? .symbol("\(node.name)_concat") : .fixed(sizes.map { $0! }.reduce(0, +))
        shape = s
      }
      let values = ins.compactMap { $0?.value }
      return [ShapeFact(dtype: x?.dtype, shape: shape, value: values.count == ins.count && r == 1 ? values.flatMap { $0 } : nil)]
    case "Reshape":
      guard let target = ins.count > 1 ? ins[1]?.value : nil else { return [ShapeFact(dtype: x?.dtype)] }
      var shape = target
      for (i, d) in target.enumerated() where d == .fixed(0) && int("allowzero", 0) == 0 {
        if let s = x?.shape, i < s.count { shape[i] = s[i] }
      }
      if let k = shape.firstIndex(of: .fixed(-1)) {
        let known = shape.enumerated().filter { $0.offset != k }.compactMap(\.element.value)
        if let total = x?.shape?.compactMap(\.value), total.count == x?.shape?.count,
           known.count == shape.count - 1, known.reduce(1, *) > 0 {
          shape[k] = .fixed(total.reduce(1, *) / known.reduce(1, *))
        } else {
          shape[k] = .symbol("\(node.name)_reshape")
        }
      }
      return [ShapeFact(dtype: x?.dtype, shape: shape, value: x?.value)]
    case "Flatten":
      guard let s = x?.shape else { return [ShapeFact(dtype: x?.dtype)] }
      let a = int("axis", 1) < 0 ? int("axis", 1) + s.count : int("axis", 1)
      guard a >= 0 && a <= s.count else { return [ShapeFact(dtype: x?.dtype)] }
      return [ShapeFact(dtype: x?.dtype, shape: [product(s[..<a]), product(s[a...])])]
    case "Transpose":
      guard let s = x?.shape else { return [ShapeFact(dtype: x?.dtype)] }
      let perm = ints("perm") ?? Array((0..<s.count).reversed())
      guard perm.count == s.count, perm.allSatisfy({ $0 >= 0 && $0 < s.count }) else { return [ShapeFact(dtype: x?.dtype)] }
      return [ShapeFact(dtype: x?.dtype, shape: perm.map { s[$0] })]
    case "MatMul":
      guard let a = x?.shape, let b = ins.count > 1 ? ins[1]?.shape : nil, a.count >= 2, b.count >= 2 else { return [ShapeFact(dtype: x?.dtype)] }
      let batch = broadcast([Array(a.dropLast(2)), Array(b.dropLast(2))]) ?? []
      return [ShapeFact(dtype: x?.dtype, shape: batch + [a[a.count - 2], b[b.count - 1]])]
    case "Gemm":
      guard let a = x?.shape, let b = ins.count > 1 ? ins[1]?.shape : nil, a.count == 2, b.count == 2 else { return [ShapeFact(dtype: x?.dtype)] }
      return [ShapeFact(dtype: x?.dtype, shape: [int("transA", 0) != 0 ? a[1] : a[0], int("transB", 0) != 0 ? b[0] : b[1]])]
    case "Conv", "MaxPool", "AveragePool":
      guard let s = x?.shape, s.count >= 3 else { return [ShapeFact(dtype: x?.dtype)] }
      let w = ins.count > 1 ? ins[1]?.shape : nil
      let kernel = op == "Conv" ? (w.map { $0.dropFirst(2).compactMap(\.value) } ?? []) : (ints("kernel_shape") ?? [])
      let channels: Dim = op == "Conv" ? (w?.first ?? .symbol("\(node.name)_c")) : s[1]
      let spatial = Array(s.dropFirst(2))
      guard kernel.count == spatial.count, int("ceil_mode", 0) == 0,
            ["NOTSET", nil].contains(stringAttribute(node, "auto_pad")) else {
        return [ShapeFact(dtype: x?.dtype, shape: [s[0], channels] + spatial.indices.map { .symbol("\(node.name)_d\($0)") })]
      }
      let strides = ints("strides") ?? Array(repeating: 1, count: kernel.count)
      let dil = ints("dilations") ?? Array(repeating: 1, count: kernel.count)
      let pads = ints("pads") ?? Array(repeating: 0, count: 2 * kernel.count)
      let out: [Dim] = spatial.indices.map { i in
        guard let n = spatial[i].value, strides.count == kernel.count, pads.count == 2 * kernel.count,
              dil.count == kernel.count, strides[i] > 0 else { return .symbol("\(node.name)_d\(i)") }
        return .fixed((n + pads[i] + pads[i + kernel.count] - dil[i] * (kernel[i] - 1) - 1) / strides[i] + 1)
      }
      return [ShapeFact(dtype: x?.dtype, shape: [s[0], channels] + out)]
    case "GlobalAveragePool", "GlobalMaxPool":
      guard let s = x?.shape, s.count >= 2 else { return [ShapeFact(dtype: x?.dtype)] }
      return [ShapeFact(dtype: x?.dtype, shape: Array(s[0..<2]) + Array(repeating: .fixed(1), count: s.count - 2))]
    case "ConstantOfShape":
      var dtype: DType = .float32
      if case .tensor(let t)? = node.attributes["value"] { dtype = t.dtype }
      return [ShapeFact(dtype: dtype, shape: x?.value)]
    case "Expand":
      var target = ins.count > 1 ? ins[1]?.value : nil
      if target == nil, let k = ins.count > 1 ? ins[1]?.shape?.first?.value : nil {
        target = (0..<k).map { .symbol("\(node.name)_d\($0)") }  // the rank is known, the sizes are not
      }
      return [ShapeFact(dtype: x?.dtype, shape: target.flatMap { broadcast([x?.shape, $0]) })]
    case "ScatterND", "ScatterElements":
      return [ShapeFact(dtype: x?.dtype, shape: x?.shape)]
    case "GatherElements":
      return [ShapeFact(dtype: x?.dtype, shape: ins.count > 1 ? ins[1]?.shape : nil)]
    case "Constant":
      if case .tensor(let t)? = node.attributes["value"] {
        return [ShapeFact(dtype: t.dtype, shape: t.shape.map { .fixed($0) },
                          value: t.dtype.storageClass == .int && t.rank <= 1 && t.count <= 16 ? t.ints.map { .fixed(Int($0)) } : nil)]
      }
      return [ShapeFact()]
    case "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceL2", "ReduceL1", "ReduceProd", "ReduceSumSquare":
      guard let s = x?.shape else { return [ShapeFact(dtype: x?.dtype)] }
      let axesFromInput = (op == "ReduceSum" && opset >= 13) || opset >= 18
      let axes = axesFromInput ? (ins.count > 1 ? ins[1]?.fixedValue : nil) : ints("axes")
      let all = axes == nil && !(axesFromInput && ins.count > 1 && ins[1] != nil)
      guard all || axes != nil else { return [ShapeFact(dtype: x?.dtype)] }
      let norm = Set((axes ?? Array(0..<s.count)).map { $0 < 0 ? $0 + s.count : $0 })
      let keep = int("keepdims", 1) != 0
      let shape = s.enumerated().compactMap { i, d -> Dim? in norm.contains(i) ? (keep ? .fixed(1) : nil) : d }
      return [ShapeFact(dtype: x?.dtype, shape: shape)]
    case "Slice":
      return [slice(node, ins, opset: opset)]
    case "Split":
      return split(node, ins, opset: opset)
    case "Pad":
      return [pad(node, ins, opset: opset)]
    case "Range":
      return [ShapeFact(dtype: x?.dtype, shape: [.symbol("\(node.name)_range")])]
    default:
      return node.outputs.map { _ in ShapeFact() }
    }
  }

  /// Slice: the sliced axes get their size where starts, ends, steps and the dimension are
  /// known (else a fresh symbol); the other axes keep theirs. A slice of a known 1-D shape
  /// vector keeps its elements.
  static func slice(_ node: Node, _ ins: [ShapeFact?], opset: Int) -> ShapeFact {
    let x = ins.first ?? nil
    guard let s = x?.shape else { return ShapeFact(dtype: x?.dtype) }
    func attribute(_ name: String) -> [Int]? {
      if case .ints(let v)? = node.attributes[name] { return v }
      return nil
    }
    func input(_ i: Int) -> ShapeFact? { i < ins.count ? ins[i] : nil }
    let starts = opset >= 10 ? input(1)?.fixedValue : attribute("starts")
    let ends = opset >= 10 ? input(2)?.fixedValue : attribute("ends")
    let count = opset >= 10 ? input(1)?.shape?.first?.value : attribute("starts")?.count
    var axes = opset >= 10 ? input(3)?.fixedValue : attribute("axes")
    let axesGiven = opset >= 10 ? (node.inputs.count > 3 && !node.inputs[3].isEmpty) : node.attributes["axes"] != nil
    if !axesGiven, let n = count { axes = Array(0..<n) }
    let steps = opset >= 10 && node.inputs.count > 4 && !node.inputs[4].isEmpty ? input(4)?.fixedValue : nil
    let stepsGiven = opset >= 10 && node.inputs.count > 4 && !node.inputs[4].isEmpty
    guard let axes, axes.allSatisfy({ $0 >= -s.count && $0 < s.count }) else {
      return ShapeFact(dtype: x?.dtype, shape: s.indices.map { .symbol("\(node.name)_d\($0)") })
    }
    var shape = s
    var ranges: [(Int, Int, Int)?] = Array(repeating: nil, count: s.count)
    for (k, a) in axes.enumerated() {
      let axis = a < 0 ? a + s.count : a
      guard let n = s[axis].value, let starts, let ends, k < starts.count, k < ends.count,
            !stepsGiven || (steps.map { k < $0.count && $0[k] != 0 } ?? false) else {
        shape[axis] = .symbol("\(node.name)_d\(axis)")
        continue
      }
      let step = stepsGiven ? steps![k] : 1
      func clamp(_ v: Int, _ lo: Int, _ hi: Int) -> Int { min(max(v < 0 ? v + n : v, lo), hi) }
      let b = step > 0 ? clamp(starts[k], 0, n) : clamp(starts[k], -1, n - 1)
      let e = step > 0 ? clamp(ends[k], 0, n) : clamp(ends[k], -1, n - 1)
      let size = step > 0 ? max(0, (e - b + step - 1) / step) : max(0, (b - e - step - 1) / -step)
      shape[axis] = .fixed(size)
      ranges[axis] = (b, size, step)
    }
    var value: [Dim]?
    if s.count == 1, let v = x?.value, let (b, size, step) = ranges[0] {
      value = (0..<size).map { v[b + $0 * step] }
    }
    return ShapeFact(dtype: x?.dtype, shape: shape, value: value)
  }

  /// Pad: axis `a` grows by `pads[a] + pads[a + r]` (input 1 from opset 11, the attribute
  /// before; input 3 names the axes from opset 18); an unpadded axis keeps its dimension, symbol
  /// included, and a padded symbolic one gets a fresh symbol. Unknown pads leave every axis a
  /// fresh symbol.
  static func pad(_ node: Node, _ ins: [ShapeFact?], opset: Int) -> ShapeFact {
    let x = ins.first ?? nil
    guard let s = x?.shape else { return ShapeFact(dtype: x?.dtype) }
    let unknown = ShapeFact(dtype: x?.dtype, shape: s.indices.map { .symbol("\(node.name)_d\($0)") })
    var pads: [Int]?
    if opset >= 11 {
      pads = ins.count > 1 ? ins[1]?.fixedValue : nil
    } else if case .ints(let v)? = node.attributes["pads"] {
      pads = v
    }
    var axes = Array(s.indices)
    if opset >= 18, node.inputs.count > 3, !node.inputs[3].isEmpty {
      guard let given = ins[3]?.fixedValue, given.allSatisfy({ $0 >= -s.count && $0 < s.count }) else { return unknown }
      axes = given.map { $0 < 0 ? $0 + s.count : $0 }
    }
    guard let pads, pads.count == 2 * axes.count else { return unknown }
    var shape = s
    for (k, axis) in axes.enumerated() {
      let grow = pads[k] + pads[k + axes.count]
      guard grow != 0 else { continue }
      shape[axis] = s[axis].value.map { .fixed($0 + grow) } ?? .symbol("\(node.name)_d\(axis)")
    }
    return ShapeFact(dtype: x?.dtype, shape: shape)
  }

  /// Split: each output's size along the axis from the split sizes (input 1 from opset 13, the
  /// attribute before) or equal parts, else a fresh symbol; the other axes are the input's.
  static func split(_ node: Node, _ ins: [ShapeFact?], opset: Int) -> [ShapeFact] {
    let x = ins.first ?? nil
    guard let s = x?.shape else { return node.outputs.map { _ in ShapeFact(dtype: x?.dtype) } }
    var a = 0
    if case .int(let v)? = node.attributes["axis"] { a = v }
    let axis = a < 0 ? a + s.count : a
    guard axis >= 0 && axis < s.count else { return node.outputs.map { _ in ShapeFact(dtype: x?.dtype) } }
    var sizes: [Int]?
    if opset >= 13 {
      sizes = node.inputs.count > 1 && !node.inputs[1].isEmpty ? (ins.count > 1 ? ins[1]?.fixedValue : nil) : nil
    } else if case .ints(let v)? = node.attributes["split"] {
      sizes = v
    }
    let parts = node.outputs.count
    if sizes == nil, let n = s[axis].value, parts > 0, n % parts == 0 { sizes = Array(repeating: n / parts, count: parts) }
    return node.outputs.indices.map { k in
      var shape = s
      shape[axis] = sizes.flatMap { k < $0.count ? .fixed($0[k]) : nil } ?? .symbol("\(node.name)_split\(k)")
      return ShapeFact(dtype: x?.dtype, shape: shape)
    }
  }

  /// Numpy broadcasting of symbolic shapes; nil when any is unknown. Two different symbols
  /// broadcast to a new one, `max(p,q)`, equal to neither (either may be 1).
  static func broadcast(_ shapes: [[Dim]?]) -> [Dim]? {
    var result: [Dim] = []
    for case let s? in shapes {
      let r = max(result.count, s.count)
      let a = Array(repeating: Dim.fixed(1), count: r - result.count) + result
      let b = Array(repeating: Dim.fixed(1), count: r - s.count) + s
      result = zip(a, b).map { p, q in
        if p == .fixed(1) || p == q { return q }
        if q == .fixed(1) { return p }
        if p.value != nil { return p }
        if q.value != nil { return q }
        return .symbol("max(\(p),\(q))")
      }
    }
    return shapes.contains(where: { $0 == nil }) ? nil : result
  }

  static func product<C: Collection>(_ dims: C) -> Dim where C.Element == Dim {
    let fixed = dims.compactMap(\.value)
    if fixed.count == dims.count { return .fixed(fixed.reduce(1, *)) }
    if dims.count - fixed.count == 1, fixed.reduce(1, *) == 1, let s = dims.first(where: { $0.value == nil }) { return s }
    return .symbol(dims.map(\.description).joined(separator: "*"))
  }

  static func stringAttribute(_ node: Node, _ name: String) -> String? {
    if case .string(let s)? = node.attributes[name] { return s }
    return nil
  }
}
