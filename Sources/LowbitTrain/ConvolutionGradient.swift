import Dispatch
import LowbitCore

/// The input and weight gradients of a 2-D convolution, computed over small chunks of images.
///
/// With `cols_g(n)` image `n`'s patch matrix of group `g` (`Im2col`) and `dY_g(n)` its output
/// gradient rows `[Mg, P]`, `dW_g = sum_n dY_g(n) cols_g(n)^T` and `dX(n) = col2im(W_g^T dY_g(n))`.
/// The images are split into one contiguous run per thread and each run into chunks whose patch
/// matrix is about 256 KiB, so the buffers are allocated once per thread, stay in cache and are
/// reused (no full-batch im2col matrix). Each chunk adds its `dY cols^T` product to the thread's
/// weight-gradient sum; the thread sums are then added in thread order. The result is the same
/// for every run with the same shapes and thread count (the grouping of the sum over images
/// depends on both).
struct ConvolutionGradient {
  let geometry: WindowGeometry
  let images: Int, channels: Int, outChannels: Int, group: Int

  var groupChannels: Int { channels / group }
  var groupOutChannels: Int { outChannels / group }
  var positions: Int { geometry.outputPlane }
  /// Rows of one group's patch matrix, `C/G * KH * KW`.
  var patchSize: Int { groupChannels * geometry.taps }

  /// `dX` (when `input`) and `dW` (when `weight`) from the input `x` [N, C, H, W], the weight
  /// `w` [M, C/G, KH, KW] and the output gradient `dy` [N, M, OH, OW].
  func run(x: [Float], w: [Float], dy: [Float], input: Bool, weight: Bool) -> (dx: [Float]?, dw: [Float]?) {
    let (n, p, kg, cg, mg) = (images, positions, patchSize, groupChannels, groupOutChannels)
    let (c, m, group, geometry) = (channels, outChannels, group, geometry)
    let inPlane = geometry.inputPlane, wCount = m * kg
    let work = n * m * p * kg
    let threads = work < 1 << 18 ? 1 : max(1, min(kernelThreadCount, n))
    let perThread = (n + threads - 1) / threads
    let chunk = max(1, min(perThread, (1 << 16) / max(kg * p, 1)))
    var partial = [Float](repeating: 0, count: weight ? threads * wCount : 0)
    var dx: [Float]? = nil
    let xCount = n * c * inPlane
    // Safety: every pointer below is bounded by the shapes above; thread t reads and writes only
    // the images of its run in `dx`, `dy` and `x`, its own slice of `partial` and its own buffers.
    let body = { (xs: SharedBuffer<Float>, ws: SharedBuffer<Float>, dys: SharedBuffer<Float>,
                  dxs: SharedBuffer<Float>?, partials: SharedBuffer<Float>?) in
      let runThread: @Sendable (Int) -> Void = { t in
        let run = (n * t / threads)..<(n * (t + 1) / threads)
        guard !run.isEmpty else { return }
        let x = UnsafePointer(xs.pointer()), w = UnsafePointer(ws.pointer()), dy = UnsafePointer(dys.pointer())
        let dx = dxs?.pointer()
        let dw = partials?.pointer(at: t * wCount, count: wCount)
        let width = chunk * p
        let cols: UnsafeMutablePointer<Float>? = dw != nil ? .allocate(capacity: kg * width) : nil
        let dcols: UnsafeMutablePointer<Float>? = dx != nil ? .allocate(capacity: kg * width) : nil
        let dyc: UnsafeMutablePointer<Float>? = chunk > 1 ? .allocate(capacity: mg * width) : nil
        defer { cols?.deallocate(); dcols?.deallocate(); dyc?.deallocate() }
        dx.map { ($0 + run.lowerBound * c * inPlane).update(repeating: 0, count: run.count * c * inPlane) }
        for g in 0..<group {
          let im = Im2col(geometry: geometry, channels: c, firstChannel: g * cg, groupChannels: cg)
          for start in stride(from: run.lowerBound, to: run.upperBound, by: chunk) {
            let count = min(chunk, run.upperBound - start), width = count * p
            // dY_g of the chunk, [Mg, width]: in place for one image, else copied side by side.
            var dyg = dy + (start * m + g * mg) * p, ldy = p
            if let buffer = dyc, count > 1 {
              for j in 0..<count {
                for o in 0..<mg {
                  (buffer + o * width + j * p).update(from: dy + ((start + j) * m + g * mg + o) * p, count: p)
                }
              }
              dyg = UnsafePointer(buffer)
              ldy = width
            }
            if let dw = dw, let cols = cols {
              for j in 0..<count { im.gather(x, image: start + j, into: cols + j * p, ld: width) }
              MatrixProduct.gemm(
                transB: true, m: mg, n: kg, k: width, a: dyg, lda: ldy, b: cols, ldb: width, beta: 1,
                c: dw + g * mg * kg, ldc: kg)
            }
            if let dx = dx, let dcols = dcols {
              MatrixProduct.gemm(
                transA: true, m: kg, n: width, k: mg, a: w + g * mg * kg, lda: kg, b: dyg, ldb: ldy,
                c: dcols, ldc: width)
              for j in 0..<count { im.scatterAdd(dcols + j * p, ld: width, image: start + j, into: dx) }
            }
          }
        }
      }
      if threads > 1 {
        DispatchQueue.concurrentPerform(iterations: threads, execute: runThread)
      } else {
        runThread(0)
      }
    }
    x.withUnsafeBufferPointer { xp in
      w.withUnsafeBufferPointer { wp in
        dy.withUnsafeBufferPointer { dyp in
          partial.withUnsafeMutableBufferPointer { pp in
            let pw = weight ? SharedBuffer(pp) : nil
            let (xs, ws, dys) = (SharedBuffer(xp), SharedBuffer(wp), SharedBuffer(dyp))
            if input {
              // Every thread zeroes, then accumulates into, the images of its run.
              dx = SharedBuffer<Float>.array(count: xCount) { dxs in body(xs, ws, dys, dxs, pw) }
            } else {
              body(xs, ws, dys, nil, pw)
            }
          }
        }
      }
    }
    guard weight else { return (dx, nil) }
    if threads == 1 { return (dx, partial) }
    var dw = Array(partial[0..<wCount])
    for t in 1..<threads {
      for i in 0..<wCount { dw[i] += partial[t * wCount + i] }
    }
    return (dx, dw)
  }
}
