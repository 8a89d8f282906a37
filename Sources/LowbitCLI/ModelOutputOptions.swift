import ArgumentParser
import LowbitONNX

/// How a command that writes a model lays out its file.
struct ModelOutputOptions: ParsableArguments {
  @Flag(name: .customLong("external-data"), help: ArgumentHelp(
    "Write the weights to '<output>.data' beside the model (ONNX external data).",
    discussion: "Done automatically when the weights pass 2 GiB, the most one ONNX file can hold. Tensors under 1 KiB stay in the model file; offsets are page-aligned."))
  var externalData = false

  var layout: ExternalData { externalData ? .always : .automatic }
}
