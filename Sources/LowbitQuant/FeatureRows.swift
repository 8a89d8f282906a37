import LowbitCore

/// The feature rows a calibration pass sees at a linear layer's input `[..., K]`: every row of
/// `K` values, without the token positions a mask input marks as padding (a transformer's
/// `attention_mask` `[N, L]` is 0 there, and the model's outputs ignore those positions).
struct FeatureRows {
  /// Per `(n, l)` of the mask, whether the row is kept; nil keeps every row.
  var kept: [Bool]?
  var maskShape: [Int]?

  /// The rows `feeds[mask]` keeps (every row when the model has no such rank-2 input).
  init(feeds: [String: Tensor], mask: String?) {
    let m = mask.flatMap { feeds[$0] }.flatMap { $0.rank == 2 ? $0 : nil }
    kept = m?.asFloats().map { $0 != 0 }
    maskShape = m?.shape
  }

  /// The kept rows of `t` (`[rows, K]` row-major): a value `[N, L, K]` whose first two axes are
  /// the mask's loses the positions where it is 0; any other value keeps all its rows.
  func rows(_ t: Tensor, features k: Int) -> [Float] {
    let values = t.floats
    guard let kept, t.rank == 3, Array(t.shape.prefix(2)) == maskShape else { return values }
    return kept.indices.filter { kept[$0] }.flatMap { r in values[(r * k)..<(r * k + k)] }
  }

  /// `t` without its padding rows, as `[rows, K]`, when it is `[N, L, K]` over the mask's
  /// `[N, L]`; else `t` itself.
  func keptTensor(_ t: Tensor) -> Tensor {
    guard kept != nil, t.rank == 3, Array(t.shape.prefix(2)) == maskShape, t.dtype.isFloatingPoint else { return t }
    let k = t.shape[2], rows = rows(t, features: k)
    return Tensor(shape: [rows.count / max(k, 1), k], floats: rows)
  }
}
