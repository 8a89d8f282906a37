import Foundation

/// The recurrent layers RNN, GRU and LSTM (forward, reverse, bidirectional; layout 0 and 1;
/// sequence_lens, initial states, LSTM peepholes and input_forget, clip). Gate order as ONNX
/// writes the weights: LSTM `i, o, f, c`, GRU `z, r, h`. Per direction and step t, with the
/// input projection `x_t W^T + Wb` computed for all steps at once:
///
///     RNN   H_t = f(x_t Wi^T + H Ri^T + Wbi + Rbi)
///     GRU   z = f(x_t Wz^T + H Rz^T + Wbz + Rbz),  r = f(x_t Wr^T + H Rr^T + Wbr + Rbr),
///           h = g(x_t Wh^T + (r . H) Rh^T + Rbh + Wbh)       (linear_before_reset 0)
///           h = g(x_t Wh^T + r . (H Rh^T + Rbh) + Wbh)       (linear_before_reset 1)
///           H_t = (1 - z) . h + z . H
///     LSTM  i = f(.. + Pi . C),  f = f(.. + Pf . C),  c = g(..),  C_t = f . C + i . c,
///           o = f(.. + Po . C_t),  H_t = o . h(C_t)
///
/// Steps past a sample's sequence length leave its state unchanged and write zeros to Y.
extension Ops {
  static let recurrentKernels: [String: Kernel] = [
    "RNN": { try recurrent($0, cell: .rnn) },
    "GRU": { try recurrent($0, cell: .gru) },
    "LSTM": { try recurrent($0, cell: .lstm) },
  ]
}

private enum Cell {
  case rnn, gru, lstm
  var gates: Int { self == .rnn ? 1 : (self == .gru ? 3 : 4) }
  var functions: Int { self == .rnn ? 1 : (self == .gru ? 2 : 3) }
  var defaultActivations: [String] { self == .rnn ? ["Tanh"] : (self == .gru ? ["Sigmoid", "Tanh"] : ["Sigmoid", "Tanh", "Tanh"]) }
}

/// One of the activation functions a recurrent op may name, with ONNX's default alpha and beta
/// where it takes them, evaluated by the elementwise kernels' own scalar functions; nil for a
/// name lowbit does not run (Affine).
private struct GateFunction {
  let apply: (Float) -> Float

  init?(_ name: String, alpha: Float?, beta: Float?) {
    switch name {
    case "Sigmoid": apply = SigmoidOp().callAsFunction
    case "Tanh": apply = TanhOp().callAsFunction
    case "Relu": apply = ReluOp().float
    case "LeakyRelu": apply = LeakyReluOp(alpha: alpha ?? 0.01).callAsFunction
    case "ThresholdedRelu": apply = ThresholdedReluOp(alpha: alpha ?? 1).callAsFunction
    case "HardSigmoid": apply = HardSigmoidOp(alpha: alpha ?? 0.2, beta: beta ?? 0.5).callAsFunction
    case "Elu": apply = EluOp(alpha: alpha ?? 1).callAsFunction
    case "Softsign": apply = SoftsignOp().callAsFunction
    case "Softplus": apply = SoftplusOp().callAsFunction
    case "ScaledTanh":
      let (a, b) = (alpha ?? 1, beta ?? 1)
      apply = { a * tanhf(b * $0) }
    default: return nil
    }
  }

  func callAsFunction(_ x: Float) -> Float { apply(x) }
}

private func recurrent(_ ctx: KernelContext, cell: Cell) throws -> [Tensor] {
  let x = try ctx.floatInput(0), w = try ctx.floatInput(1), r = try ctx.floatInput(2)
  let layout = try ctx.int("layout", default: 0)
  guard x.rank == 3, layout == 0 || layout == 1 else { throw ctx.error("X has shape \(x.shape) (layout \(layout)), expected rank 3") }
  let (steps, batch, inputSize) = layout == 0 ? (x.shape[0], x.shape[1], x.shape[2]) : (x.shape[1], x.shape[0], x.shape[2])
  let direction = try ctx.string("direction", default: "forward")
  guard ["forward", "reverse", "bidirectional"].contains(direction) else { throw ctx.error("direction '\(direction)' is not supported") }
  let dirs = direction == "bidirectional" ? 2 : 1
  let g = cell.gates
  let hidden = try ctx.int("hidden_size", default: w.rank == 3 ? w.shape[1] / g : 0)
  guard hidden > 0, w.shape == [dirs, g * hidden, inputSize], r.shape == [dirs, g * hidden, hidden] else {
    throw ctx.error("W \(w.shape) and R \(r.shape) do not fit \(dirs) direction(s), hidden size \(hidden), input size \(inputSize)")
  }
  // Activation functions: per direction, `cell.functions` of them.
  var names = cell.defaultActivations
  if case .strings(let given)? = ctx.node.attributes["activations"] { names = given }
  if names.count == cell.functions && dirs == 2 { names += names }
  guard names.count == cell.functions * dirs else { throw ctx.error("activations \(names) do not fit \(dirs) direction(s)") }
  var alphas: [Float] = [], betas: [Float] = []
  if case .floats(let a)? = ctx.node.attributes["activation_alpha"] { alphas = a }
  if case .floats(let b)? = ctx.node.attributes["activation_beta"] { betas = b }
  var functions: [GateFunction] = []
  for (k, name) in names.enumerated() {
    guard let f = GateFunction(name, alpha: k < alphas.count ? alphas[k] : nil, beta: k < betas.count ? betas[k] : nil) else {
      throw ctx.error("activation '\(name)' is not supported", .unsupported)
    }
    functions.append(f)
  }
  let clip: Float? = ctx.node.attributes["clip"] == nil ? nil : try ctx.float("clip", default: 0)
  let linearBeforeReset = try ctx.int("linear_before_reset", default: 0) != 0
  let inputForget = try ctx.int("input_forget", default: 0) != 0
  func optional(_ i: Int, _ what: String, _ shape: [Int]) throws -> [Float]? {
    guard let t = ctx.optionalInput(i) else { return nil }
    guard t.dtype.isFloatingPoint, t.shape == shape else { throw ctx.error("\(what) has shape \(t.shape), expected \(shape)") }
    return t.floats
  }
  let bias = try optional(3, "B", [dirs, 2 * g * hidden])
  var lengths = [Int](repeating: steps, count: batch)
  if ctx.optionalInput(4) != nil {
    lengths = try ctx.intList(4, what: "sequence_lens")
    guard lengths.count == batch, lengths.allSatisfy({ (0...steps).contains($0) }) else {
      throw ctx.error("sequence_lens \(lengths) does not fit batch \(batch) and \(steps) steps", .invalidInput)
    }
  }
  let stateShape = layout == 0 ? [dirs, batch, hidden] : [batch, dirs, hidden]
  let initialH = try optional(5, "initial_h", stateShape)
  let initialC = cell == .lstm ? try optional(6, "initial_c", stateShape) : nil
  let peepholes = cell == .lstm ? try optional(7, "P", [dirs, 3 * hidden]) : nil

  // Time-major copy of X: [steps, batch, input].
  var xs = x.floats
  if layout == 1 {
    xs = [Float](repeating: 0, count: x.count)
    for b in 0..<batch { for t in 0..<steps { for i in 0..<inputSize { xs[(t * batch + b) * inputSize + i] = x.floats[(b * steps + t) * inputSize + i] } } }
  }
  func stateIndex(_ d: Int, _ b: Int) -> Int { layout == 0 ? (d * batch + b) * hidden : (b * dirs + d) * hidden }
  var y = [Float](repeating: 0, count: steps * dirs * batch * hidden)  // [steps, dirs, batch, hidden]
  var finalH = [Float](repeating: 0, count: dirs * batch * hidden), finalC = finalH
  let ws = w.floats, rs = r.floats
  for d in 0..<dirs {
    let reverse = direction == "reverse" || d == 1
    let f = functions[d * cell.functions]
    let gFn = cell.functions > 1 ? functions[d * cell.functions + 1] : f
    let hFn = cell.functions > 2 ? functions[d * cell.functions + 2] : f
    // Input projections of every step: [steps * batch, g H] = X W_d^T (+ Wb).
    var projection = MatrixProduct.product(xs, Array(ws[(d * g * hidden * inputSize)..<((d + 1) * g * hidden * inputSize)]),
                                           m: steps * batch, n: g * hidden, k: inputSize, transB: true)
    let rd = Array(rs[(d * g * hidden * hidden)..<((d + 1) * g * hidden * hidden)])
    let wb = bias.map { Array($0[(d * 2 * g * hidden)..<(d * 2 * g * hidden + g * hidden)]) } ?? [Float](repeating: 0, count: g * hidden)
    let rb = bias.map { Array($0[(d * 2 * g * hidden + g * hidden)..<((d + 1) * 2 * g * hidden)]) } ?? [Float](repeating: 0, count: g * hidden)
    for row in 0..<(steps * batch) { for k in 0..<(g * hidden) { projection[row * g * hidden + k] += wb[k] } }
    var h = [Float](repeating: 0, count: batch * hidden), c = h
    for b in 0..<batch {
      for j in 0..<hidden {
        if let ih = initialH { h[b * hidden + j] = ih[stateIndex(d, b) + j] }
        if let ic = initialC { c[b * hidden + j] = ic[stateIndex(d, b) + j] }
      }
    }
    let p = peepholes.map { Array($0[(d * 3 * hidden)..<((d + 1) * 3 * hidden)]) }
    func clipped(_ v: Float) -> Float { clip.map { min(max(v, -$0), $0) } ?? v }
    for step in 0..<steps {
      // H R^T + Rb for the whole batch: [batch, g H].
      var recurrentPart = MatrixProduct.product(h, rd, m: batch, n: g * hidden, k: hidden, transB: true)
      for b in 0..<batch { for k in 0..<(g * hidden) { recurrentPart[b * g * hidden + k] += rb[k] } }
      for b in 0..<batch {
        let length = lengths[b]
        guard step < length else { continue }
        let t = reverse ? length - 1 - step : step
        let xp = (t * batch + b) * g * hidden, hp = b * g * hidden, s = b * hidden
        var next = [Float](repeating: 0, count: hidden)
        switch cell {
        case .rnn:
          for j in 0..<hidden { next[j] = f(clipped(projection[xp + j] + recurrentPart[hp + j])) }
        case .gru:
          var reset = [Float](repeating: 0, count: hidden), update = reset
          for j in 0..<hidden {
            update[j] = f(clipped(projection[xp + j] + recurrentPart[hp + j]))
            reset[j] = f(clipped(projection[xp + hidden + j] + recurrentPart[hp + hidden + j]))
          }
          var candidate = [Float](repeating: 0, count: hidden)
          if linearBeforeReset {
            for j in 0..<hidden { candidate[j] = projection[xp + 2 * hidden + j] + reset[j] * recurrentPart[hp + 2 * hidden + j] }
          } else {
            // (r . H) Rh^T + Rbh.
            for j in 0..<hidden {
              var sum = rb[2 * hidden + j]
              for k in 0..<hidden { sum += reset[k] * h[s + k] * rd[(2 * hidden + j) * hidden + k] }
              candidate[j] = projection[xp + 2 * hidden + j] + sum
            }
          }
          for j in 0..<hidden {
            let hh = gFn(clipped(candidate[j]))
            next[j] = (1 - update[j]) * hh + update[j] * h[s + j]
          }
        case .lstm:
          for j in 0..<hidden {
            let cPrev = c[s + j]
            var i = projection[xp + j] + recurrentPart[hp + j] + (p?[j] ?? 0) * cPrev
            var fo = projection[xp + 2 * hidden + j] + recurrentPart[hp + 2 * hidden + j] + (p?[2 * hidden + j] ?? 0) * cPrev
            i = f(clipped(i))
            fo = inputForget ? 1 - i : f(clipped(fo))
            let candidate = gFn(clipped(projection[xp + 3 * hidden + j] + recurrentPart[hp + 3 * hidden + j]))
            let cNew = fo * cPrev + i * candidate
            let o = f(clipped(projection[xp + hidden + j] + recurrentPart[hp + hidden + j] + (p?[hidden + j] ?? 0) * cNew))
            c[s + j] = cNew
            next[j] = o * hFn(cNew)
          }
        }
        for j in 0..<hidden {
          h[s + j] = next[j]
          y[((t * dirs + d) * batch + b) * hidden + j] = next[j]
        }
      }
    }
    for b in 0..<batch {
      for j in 0..<hidden {
        finalH[stateIndex(d, b) + j] = h[b * hidden + j]
        finalC[stateIndex(d, b) + j] = c[b * hidden + j]
      }
    }
  }
  var yOut = y, yShape = [steps, dirs, batch, hidden]
  if layout == 1 {
    yShape = [batch, steps, dirs, hidden]
    yOut = [Float](repeating: 0, count: y.count)
    for t in 0..<steps { for d in 0..<dirs { for b in 0..<batch { for j in 0..<hidden {
      yOut[((b * steps + t) * dirs + d) * hidden + j] = y[((t * dirs + d) * batch + b) * hidden + j]
    } } } }
  }
  var outputs = [Tensor(shape: yShape, floats: yOut), Tensor(shape: stateShape, floats: finalH)]
  if cell == .lstm { outputs.append(Tensor(shape: stateShape, floats: finalC)) }
  return Array(outputs.prefix(max(ctx.node.outputs.count, 1)))
}
