/// The runtime a quantized file is written for (`lowbit ptq --target`). Each target's required
/// settings become the defaults of the fields it constrains (`QuantConfig.init(target:)`), and
/// `violations(of:)` names every setting it cannot run with integer kernels, so lowbit refuses
/// them instead of writing a file the runtime would run in float or reject. docs/deployment.md
/// gives each rule's source.
public enum DeploymentTarget: String, Sendable, Codable, CaseIterable {
  /// ONNX Runtime (CPU): any QDQ file runs; integer kernels where its QDQ fusions match.
  case ort
  /// OpenVINO (CPU plugin): 8-bit activations per tensor, symmetric weights.
  case openvino
  /// TensorRT's explicit quantization: symmetric INT8 (zero point 0), weights in [-127, 127],
  /// activations per tensor, biases in float.
  case tensorrt
  /// Qualcomm QNN (HTP) through ONNX Runtime's QNN execution provider or an encodings file:
  /// unsigned 8- or 16-bit activations per tensor, symmetric 8- or 4-bit weights, one grid on
  /// both sides of a Concat and of an AveragePool.
  case qnn

  /// Sets the fields this target requires in `config` (applied to the defaults).
  func preset(_ config: inout QuantConfig) {
    switch self {
    case .ort:
      break
    case .openvino:
      config.activationPerChannel = false  // one scale per tensor there
      config.rotation = false  // a float MatMul between integer layers
      config.embeddingTables = false  // an int8 Gather and Cast outside Q/DQ, not checked there
      config.inputPerChannel = false
    case .qnn:
      config.activationPerChannel = false  // one scale per tensor there
      config.rotation = false  // a float MatMul between integer layers
      config.embeddingTables = false  // an int8 Gather and Cast outside Q/DQ, not checked there
      config.inputPerChannel = false
      config.concat = .sharedGrid
      config.averagePoolKeepsGrid = true
    case .tensorrt:
      config.activationPerChannel = false  // one scale per tensor there
      config.rotation = false  // a float MatMul between integer layers
      config.embeddingTables = false  // an int8 Gather and Cast outside Q/DQ, not checked there
      config.activationSymmetric = true
      config.weightNarrowRange = true
      config.integerBiases = false
      config.inputPerChannel = false
    }
  }

  /// What in `config` this target cannot run, one phrase each (empty: it runs everything).
  public func violations(of c: QuantConfig) -> [String] {
    var found: [String] = []
    func require(_ holds: Bool, _ phrase: @autoclosure () -> String) { if !holds { found.append(phrase()) } }
    let activations = c.quantizeActivations, weights = c.quantizeWeights
    let perTensorActivations = c.activationPerChannel != true && !c.inputPerChannel
    // Widened weights must be a width the target's integer kernels take, as the others.
    if c.mixedPrecisionWeights > 0 && c.mixedPrecisionWeightBits != c.weightBits {
      var widened = c
      widened.weightBits = c.mixedPrecisionWeightBits
      widened.mixedPrecisionWeights = 0
      for v in violations(of: widened) where !found.contains(v) { found.append("widened weights: " + v) }
    }
    switch self {
    case .ort:
      break
    case .openvino:
      require(!activations || c.activationBits == 8, "its CPU plugin computes with 8-bit activations (--a-bits 8), got \(c.activationBits)")
      require(!weights || c.weightBits == 8, "its integer convolutions and matrix products take 8-bit weights (--w-bits 8), got \(c.weightBits)")
      require(!weights || c.weightSymmetric, "its integer kernels take symmetric weights (zero point 0)")
      require(!activations || perTensorActivations, "its integer kernels take one activation scale per tensor (input_per_channel and activation_per_channel off)")
      require(c.weightGroupSize == nil, "per-group weights are not an OpenVINO integer kernel for convolutions")
      require(c.mixedPrecision == 0 || c.mixedPrecisionBits == 8, "mixed precision above 8 bits runs in float there")
    case .tensorrt:
      require(!activations || c.activationBits == 8, "it computes INT8 activations only (--a-bits 8), got \(c.activationBits)")
      require(!weights || c.weightBits == 8, "its INT8 layers take 8-bit weights (its INT4 weights are for weight-only layers), got \(c.weightBits)")
      require(!activations || c.activationSymmetric, "its quantization is symmetric: activations need zero point 0 (symmetric activations)")
      require(!weights || c.weightSymmetric, "weights need zero point 0 (symmetric weights)")
      require(!weights || c.weightNarrowRange, "INT8 weights lie in [-127, 127] (weight_narrow_range)")
      require(!activations || perTensorActivations, "activations take one scale per tensor (input_per_channel and activation_per_channel off)")
      require(c.weightGroupSize == nil, "per-group weights are INT4 weight-only layers there")
      require(!c.integerBiases, "biases stay float: TensorRT dequantizes INT8 and INT4, not INT32 (integer_biases off)")
      require(c.mixedPrecision == 0 || c.mixedPrecisionBits == 8, "it has no 16-bit integer activations (mixed precision)")
    case .qnn:
      require(!activations || [8, 16].contains(c.activationBits), "its HTP computes with 8- or 16-bit activations, got \(c.activationBits)")
      require(!activations || !c.activationSymmetric, "it takes unsigned activations with a zero point (uint8 / uint16), not symmetric ones")
      require(!weights || [4, 8].contains(c.weightBits), "its HTP takes 8- or 4-bit weights, got \(c.weightBits)")
      require(!weights || c.weightSymmetric, "it takes symmetric weights (zero point 0)")
      require(!activations || perTensorActivations, "activations take one scale per tensor (input_per_channel and activation_per_channel off)")
      require(c.weightGroupSize == nil, "its block-wise weights are LPBQ, which lowbit does not write")
      require(c.mixedPrecision == 0 || [8, 16].contains(c.mixedPrecisionBits), "mixed precision needs 8 or 16 bits there")
      require(!activations || c.concat == .sharedGrid, "a Concat takes one encoding for its inputs and output (--concat shared-grid)")
      require(!activations || c.averagePoolKeepsGrid, "an AveragePool takes its input's encoding (average_pool_keeps_grid)")
    }
    return found
  }
}
