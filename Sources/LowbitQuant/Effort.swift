/// How much time the PTQ pipeline spends for fidelity (`lowbit ptq --effort`): a preset over the
/// pipeline's settings, applied before the options given one by one (which win).
///
/// | effort    | weights                                          | quantizer tuning        |
/// |-----------|--------------------------------------------------|-------------------------|
/// | `fast`    | 8+ bits: round to nearest, empirical bias correction; fewer bits: AdaRound, `fastAdaRoundIterations` steps | off |
/// | `default` | AdaRound per layer (sec. 3.4)                    | when activations < 8 bits |
/// | `best`    | AdaRound per block (BRECQ), then per layer where a block has no gradient rule | on |
///
/// Every effort keeps range setting, BatchNorm folding, cross-layer equalization and bias
/// absorption as `QuantConfig` sets them. docs/ptq-pipeline.md gives the measured time and
/// fidelity of each on EfficientNet-Lite2.
public enum Effort: String, Sendable, Codable, CaseIterable {
  case fast
  case `default`
  case best

  /// AdaRound steps per layer of `fast` below 8-bit weights.
  public static let fastAdaRoundIterations = 100

  /// `config` with this effort's settings for its bit widths (set those first).
  public func applied(to config: QuantConfig) -> QuantConfig {
    var c = config
    switch self {
    case .fast:
      // Below 8 bits round-to-nearest loses most of the model (EfficientNet-Lite2 W4A8: 21%
      // top-1 agreement with FP32 against 72% after 100 AdaRound steps).
      if c.weightBits >= 8 {
        c.adaRound = false
      } else {
        c.adaRoundOptions.iterations = min(c.adaRoundOptions.iterations, Effort.fastAdaRoundIterations)
      }
      c.quantizerTuning = false
    case .default:
      break
    case .best:
      c.adaRound = true
      c.adaRoundOptions.unit = .block
      c.quantizerTuning = true
    }
    return c
  }
}
