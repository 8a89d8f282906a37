extension ConvJob {
  /// Depthwise convolution (one input and one output channel per group) as direct loops:
  /// `y[n, c, oh, ow] = act(b[c] + sum_{ki, kj} w[c, ki, kj] * xpad[n, c, oh*sh + ki*dh, ow*sw + kj*dw])`,
  /// the sum taken in (ki, kj) order over the zero-padded input, one plane at a time (so the
  /// result of a plane does not depend on the batch or the thread count). 3x3 kernels keep the
  /// nine products of an output in a register; other shapes add one tap at a time to the row.
  func depthwise() {
    let sh = geo.strides[0], sw = geo.strides[1], dh = geo.dilations[0], dw = geo.dilations[1]
    let ph = geo.padBegin[0], pw = geo.padBegin[1]
    let paddedH = inH + ph + geo.padEnd[0], paddedW = inW + pw + geo.padEnd[1]
    let padded = isPadded
    let inPlane = inH * inW, outPlane = outH * outW
    let planes = batch * channels
    let operands = shared
    let (kH, kW, inH, inW, outH, outW, channels, activation) = (kH, kW, inH, inW, outH, outW, channels, activation)
    parallelChunks(planes, costPerItem: outPlane * kH * kW) { range in
      // Safety: the pointers come from the caller's buffers, bounded by the checked shapes; the
      // padded buffer holds one padded plane and every tap reads inside it.
      let x = UnsafePointer(operands.x.pointer()), w = UnsafePointer(operands.w.pointer()), y = operands.y.pointer()
      let bias = operands.bias.map { UnsafePointer($0.pointer()) }
      let buf: UnsafeMutablePointer<Float>? = padded ? .allocate(capacity: paddedH * paddedW) : nil
      defer { buf?.deallocate() }
      if let buf = buf { buf.initialize(repeating: 0, count: paddedH * paddedW) }
      for p in range {
        let ci = p % channels
        var src = x + p * inPlane
        if let buf = buf {
          // Only the interior changes between planes; the border stays zero.
          for h in 0..<inH {
            (buf + (ph + h) * paddedW + pw).update(from: src + h * inW, count: inW)
          }
          src = UnsafePointer(buf)
        }
        let dst = y + p * outPlane
        let kernel = w + ci * kH * kW
        for oh in 0..<outH {
          let row = dst + oh * outW
          let top = src + oh * sh * paddedW
          if kH == 3 && kW == 3 {
            let rows = (top, top + dh * paddedW, top + 2 * dh * paddedW)
            ConvJob.depthwise3x3Row(row, rows, tap: dw, stride: sw, count: outW, kernel)
          } else {
            for ki in 0..<kH {
              for kj in 0..<kW {
                let wv = kernel[ki * kW + kj]
                let s = top + ki * dh * paddedW + kj * dw
                if ki == 0 && kj == 0 {
                  for ow in 0..<outW { row[ow] = wv * s[ow * sw] }
                } else {
                  for ow in 0..<outW { row[ow] += wv * s[ow * sw] }
                }
              }
            }
          }
        }
        if bias != nil || activation != nil {
          ConvJob.finish(dst, dst, count: outPlane, bias: bias?[ci] ?? 0, activation)
        }
      }
    }
  }

  /// One output row of a 3x3 depthwise convolution:
  /// `row[ow] = sum_{ki, kj} k[3*ki + kj] * rows.ki[ow*stride + kj*tap]`, summed in (ki, kj)
  /// order (the same order in the 4-wide loops, strides 1 and 2, and the scalar loop, so results
  /// do not depend on where a row's vector part ends).
  @inline(__always)
  static func depthwise3x3Row(
    _ row: UnsafeMutablePointer<Float>,
    _ rows: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>),
    tap: Int, stride: Int, count: Int, _ k: UnsafePointer<Float>
  ) {
    let (k0, k1, k2, k3, k4, k5, k6, k7, k8) = (k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7], k[8])
    let (a0, b0, c0) = (rows.0, rows.0 + tap, rows.0 + 2 * tap)
    let (a1, b1, c1) = (rows.1, rows.1 + tap, rows.1 + 2 * tap)
    let (a2, b2, c2) = (rows.2, rows.2 + tap, rows.2 + 2 * tap)
    var ow = 0
    if stride == 1 {
      @inline(__always) func v(_ p: UnsafePointer<Float>) -> SIMD4<Float> {
        UnsafeRawPointer(p + ow).loadUnaligned(as: SIMD4<Float>.self)
      }
      while ow &+ 4 <= count {
        var acc = k0 * v(a0)
        acc += k1 * v(b0)
        acc += k2 * v(c0)
        acc += k3 * v(a1)
        acc += k4 * v(b1)
        acc += k5 * v(c1)
        acc += k6 * v(a2)
        acc += k7 * v(b2)
        acc += k8 * v(c2)
        UnsafeMutableRawPointer(row + ow).storeBytes(of: acc, as: SIMD4<Float>.self)
        ow &+= 4
      }
    } else if stride == 2 {
      // The even lanes of 8 loaded floats; stopping one output early keeps the odd 8th lane
      // inside what the scalar loop reads anyway.
      @inline(__always) func v(_ p: UnsafePointer<Float>) -> SIMD4<Float> {
        UnsafeRawPointer(p + 2 &* ow).loadUnaligned(as: SIMD8<Float>.self).evenHalf
      }
      while ow &+ 4 < count {
        var acc = k0 * v(a0)
        acc += k1 * v(b0)
        acc += k2 * v(c0)
        acc += k3 * v(a1)
        acc += k4 * v(b1)
        acc += k5 * v(c1)
        acc += k6 * v(a2)
        acc += k7 * v(b2)
        acc += k8 * v(c2)
        UnsafeMutableRawPointer(row + ow).storeBytes(of: acc, as: SIMD4<Float>.self)
        ow &+= 4
      }
    }
    while ow < count {
      let i = ow &* stride
      var acc = k0 * a0[i]
      acc += k1 * b0[i]
      acc += k2 * c0[i]
      acc += k3 * a1[i]
      acc += k4 * b1[i]
      acc += k5 * c1[i]
      acc += k6 * a2[i]
      acc += k7 * b2[i]
      acc += k8 * c2[i]
      row[ow] = acc
      ow &+= 1
    }
  }
}
