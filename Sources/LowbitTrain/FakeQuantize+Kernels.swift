import LowbitCore

extension FakeQuantize {
  /// A node's grid and parameters, checked against its input: the elements of `x` form
  /// `outer x channels x inner` blocks (channels = 1 per tensor), element `i` uses parameter
  /// `(i / inner) % channels`.
  struct Layout {
    let outer: Int, channels: Int, inner: Int
    let qmin: Int, qmax: Int
    let scaleShape: [Int], offsetShape: [Int]?
    let scales: [Float]
    /// The offsets rounded half to even (zeros without an offset input).
    let offsets: [Float]

    init(_ ctx: KernelContext, x: Tensor) throws {
      guard case .int(let lo)? = ctx.node.attributes["qmin"], case .int(let hi)? = ctx.node.attributes["qmax"] else {
        throw ctx.error("attributes 'qmin' and 'qmax' are required ints")
      }
      guard lo < hi, lo >= -(1 << 31), hi < (1 << 31) else { throw ctx.error("grid [\(lo), \(hi)] is empty or wider than int32") }
      let scale = try ctx.floatInput(1)
      let offset = ctx.optionalInput(2)
      if ctx.node.attributes["axis"] != nil {
        let axis = try ctx.axis(try ctx.int("axis", default: 0), rank: x.rank)
        guard scale.rank == 1, scale.count == x.shape[axis] else {
          throw ctx.error("scale has shape \(scale.shape), per-channel quantization along axis \(axis) of \(x.shape) needs [\(x.shape[axis])]")
        }
        (outer, channels, inner) = (x.shape[..<axis].reduce(1, *), x.shape[axis], x.shape[(axis + 1)...].reduce(1, *))
      } else {
        guard scale.count == 1 else { throw ctx.error("scale has shape \(scale.shape): per-tensor quantization needs one element (or set 'axis')") }
        (outer, channels, inner) = (1, 1, x.count)
      }
      if let offset, offset.shape != scale.shape {
        throw ctx.error("offset shape \(offset.shape) differs from scale shape \(scale.shape)")
      }
      scales = scale.floats
      if let bad = scales.first(where: { !($0 > 0) || !$0.isFinite }) {
        throw ctx.error("scale \(bad) is not positive and finite (Trainer.projectParameters keeps scales positive)", .invalidInput)
      }
      let rounded = offset.map { $0.asFloats().map(FakeQuantize.roundedOffset) } ?? [Float](repeating: 0, count: scales.count)
      if let bad = rounded.first(where: { !($0 >= Float(lo) && $0 <= Float(hi)) }) {
        throw ctx.error("offset \(bad) is outside the grid [\(lo), \(hi)]", .invalidInput)
      }
      offsets = rounded
      (qmin, qmax) = (lo, hi)
      scaleShape = scale.shape
      offsetShape = offset?.shape
    }
  }

  /// The forward kernel: `x_hat` for every element (see `FakeQuantize`).
  static func forward(_ ctx: KernelContext) throws -> [Tensor] {
    let x = try ctx.floatInput(0)
    let layout = try Layout(ctx, x: x)
    let xs = x.floats, ss = layout.scales, zs = layout.offsets
    let (channels, inner, qmin, qmax) = (layout.channels, layout.inner, layout.qmin, layout.qmax)
    var out = [Float](repeating: 0, count: xs.count)
    // Safety: i < xs.count == out.count, and (i / inner) % channels < channels == ss.count ==
    // zs.count (checked by Layout); each chunk writes only its own range of `out`.
    let exact = FakeQuantize.isFloatExact(qmin: qmin, qmax: qmax), lower = Float(qmin), upper = Float(qmax)
    xs.withUnsafeBufferPointer { xp in
      out.withUnsafeMutableBufferPointer { op in
        let (source, o) = (SharedBuffer(xp), SharedBuffer(op))
        parallelChunks(xs.count, costPerItem: 4) { range in
          let xi = source
          // Runs of elements that share one channel's scale and offset.
          var i = range.lowerBound
          while i < range.upperBound {
            let block = i / inner, end = min(range.upperBound, (block + 1) * inner)
            let c = block % channels, s = ss[c], z = zs[c]
            if exact {
              for j in i..<end { o[j] = FakeQuantize.value(xi[j], scale: s, offset: z, lower: lower, upper: upper) }
            } else {
              for j in i..<end { o[j] = FakeQuantize.value(xi[j], scale: s, offset: z, qmin: qmin, qmax: qmax) }
            }
            i = end
          }
        }
      }
    }
    return [Tensor(shape: x.shape, floats: out)]
  }

  /// The gradient rule: `dx = dY` inside the grid and 0 outside; `ds` and `dz` sum
  /// `dY * d x_hat / d s` and `dY * d x_hat / d z` (table in `FakeQuantize`) over every element
  /// of their channel, in element order, accumulated in Double, times `gradient_scale`.
  static func backward(_ ctx: BackwardContext) throws -> [Tensor?] {
    let x = try ctx.forward.floatInput(0)
    let layout = try Layout(ctx.forward, x: x)
    let xs = x.floats, g = ctx.outputGradient().floats
    let (channels, inner, qmin, qmax) = (layout.channels, layout.inner, layout.qmin, layout.qmax)
    let gradientScale = Double(try ctx.forward.float("gradient_scale", default: 1))
    var dx = [Float](repeating: 0, count: ctx.wants(0) ? xs.count : 0)
    var ds = [Double](repeating: 0, count: channels), dz = [Double](repeating: 0, count: channels)
    let exact = isFloatExact(qmin: qmin, qmax: qmax), lower = Float(qmin), upper = Float(qmax), wantsInput = !dx.isEmpty
    for o in 0..<layout.outer {
      for c in 0..<channels {
        let s = layout.scales[c], zr = layout.offsets[c]
        let base = (o * channels + c) * inner
        var sumS = 0.0, sumZ = 0.0
        if exact {
          // region() in Float (exact for these grids), with x / s computed once.
          for i in base..<(base + inner) {
            let u = xs[i] / s, r = u.rounded(.toNearestOrEven), q = r + zr
            if q < lower {
              sumS += Double(g[i]) * Double(lower - zr)
              sumZ -= Double(g[i]) * Double(s)
            } else if q > upper {
              sumS += Double(g[i]) * Double(upper - zr)
              sumZ -= Double(g[i]) * Double(s)
            } else {
              if wantsInput { dx[i] = g[i] }
              sumS += Double(g[i]) * Double(r - u)
            }
          }
          ds[c] += sumS
          dz[c] += sumZ
          continue
        }
        for i in base..<(base + inner) {
          let gi = Double(g[i])
          switch region(xs[i], scale: s, offset: zr, qmin: qmin, qmax: qmax) {
          case .inside:
            if !dx.isEmpty { dx[i] = g[i] }
            let u = xs[i] / s
            sumS += gi * Double(u.rounded(.toNearestOrEven) - u)
          case .below:
            sumS += gi * Double(Float(qmin) - zr)
            sumZ -= gi * Double(s)
          case .above:
            sumS += gi * Double(Float(qmax) - zr)
            sumZ -= gi * Double(s)
          }
        }
        ds[c] += sumS
        dz[c] += sumZ
      }
    }
    return [
      ctx.wants(0) ? Tensor(shape: x.shape, floats: dx) : nil,
      ctx.wants(1) ? Tensor(shape: layout.scaleShape, floats: ds.map { Float($0 * gradientScale) }) : nil,
      ctx.wants(2) ? layout.offsetShape.map { Tensor(shape: $0, floats: dz.map { Float($0 * gradientScale) }) } : nil,
    ]
  }
}

extension GradientRules {
  static let fakeQuantizeRules: [String: GradientRule] = [
    FakeQuantize.opType: GradientRule(inputs: [0, 1, 2], FakeQuantize.backward)
  ]
}

extension Trainer {
  /// Projects the FakeQuantize parameters back into their valid set after an optimizer step
  /// (`step` calls it; a hand-written loop must too): every trainable scale becomes
  /// `max(s, min_scale)` (the node's attribute, default `FakeQuantize.defaultMinimumScale`),
  /// every trainable offset `clamp(z, qmin, qmax)`. A scale shared by nodes with different
  /// floors gets the largest floor.
  public mutating func projectParameters() {
    let trainable = Set(parameterNames)
    var updated: [String: Tensor] = [:]
    for node in graph.nodes where FakeQuantize.isFakeQuantize(node) {
      guard case .int(let qmin)? = node.attributes["qmin"], case .int(let qmax)? = node.attributes["qmax"] else { continue }
      var floor = FakeQuantize.defaultMinimumScale
      if case .float(let v)? = node.attributes["min_scale"] { floor = v }
      if node.inputs.count > 1, trainable.contains(node.inputs[1]), let s = updated[node.inputs[1]] ?? graph.initializers[node.inputs[1]] {
        updated[node.inputs[1]] = Tensor(shape: s.shape, floats: s.floats.map { FakeQuantize.projectedScale($0, minimumScale: floor) })
      }
      if node.inputs.count > 2, trainable.contains(node.inputs[2]), let z = updated[node.inputs[2]] ?? graph.initializers[node.inputs[2]] {
        updated[node.inputs[2]] = Tensor(shape: z.shape, floats: z.floats.map { FakeQuantize.projectedOffset($0, qmin: qmin, qmax: qmax) })
      }
    }
    if !updated.isEmpty { parameters = updated }
  }
}
