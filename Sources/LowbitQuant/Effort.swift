/// How much time the PTQ pipeline spends for fidelity (`lowbit ptq --effort`): a preset over the
/// pipeline's settings, applied before the options given one by one (which win).
///
/// | effort    | weights                                          | quantizer tuning        |
/// |-----------|--------------------------------------------------|-------------------------|
/// | `fast`    | round to nearest, empirical bias correction      | off                     |
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

  /// `config` with this effort's settings.
  public func applied(to config: QuantConfig) -> QuantConfig {
    var c = config
    switch self {
    case .fast:
      c.adaRound = false
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
