import ArgumentParser
import Foundation
import LowbitCore
import LowbitData
import LowbitONNX
import LowbitQuant
import LowbitReport
import LowbitTrain

extension QATBatchNorm: ExpressibleByArgument {}
extension QATStart: ExpressibleByArgument {}

/// `lowbit qat`: quantization-aware training to a QDQ ONNX file.
struct QATCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "qat",
    abstract: "Quantization-aware training of a float ONNX classifier; writes a QDQ ONNX file.",
    discussion: """
      Starts where `lowbit ptq` ends (--start ptq, the default): BatchNorm folding, cross-layer \
      equalization with bias absorption, quantizer placement, MSE weight ranges, AdaRound and \
      activation ranges (MSE; cross-entropy for the logits) on the first --calib-size training \
      samples. --start range-setting is the white paper's fig. 11 instead: range setting only \
      on the float weights (CLE with --cle). Then it trains weights, biases and every \
      quantizer's scale and offset together (straight-through estimator; LSQ scale gradients \
      with gradient scaling) on the labelled training data, and writes QuantizeLinear / \
      DequantizeLinear pairs with the trained grids.

      BatchNorm: --batchnorm fold (default) folds it statically before training; --batchnorm \
      keep (per-channel weights only) keeps it unfolded and training in training mode, then \
      absorbs it into the per-channel weight scales for the file. --bn-reestimation N \
      recomputes the running statistics on N batches of the trained network before that.

      Training defaults: SGD with momentum 0.9, lr 0.003 with cosine decay to 0, batch 128, \
      weight decay 5e-5 on conv and linear weights (none on biases, BatchNorm and quantizer \
      parameters), no augmentation (--augment: random crop and flip), seed 0. Every epoch validates on \
      --eval (the quantized network) and, with --checkpoint-dir, writes DIR/epoch-NNNN.ckpt; \
      `--resume` with the same model, data and quantization options continues the run bit for bit.
      """)

  @Argument(help: "The float ONNX model (trained; its weights are the starting point).")
  var model: String

  @Option(help: "Labelled training data spec, e.g. fashion-mnist:train or npy:x.npy,y.npy.")
  var train: String

  @Option(help: "Labelled validation data spec: quantized top-1 after every epoch and for the written file.")
  var eval: String?

  @Option(name: .customLong("w-bits"), help: "Weight bit width (2-16, default 8).")
  var weightBits = 8

  @Option(name: .customLong("a-bits"), help: "Activation bit width (2-16, default 8).")
  var activationBits = 8

  @Flag(help: "Per-output-channel weight scales.")
  var perChannel = false

  @Flag(name: .customLong("cle"), help: "Cross-layer equalization before placing quantizers (with --start range-setting; the ptq start always equalizes).")
  var crossLayerEqualization = false

  @Option(help: "Starting point: ptq (default: lowbit ptq's pipeline, CLE and AdaRound included) or range-setting (the paper's fig. 11).")
  var start: QATStart = .ptq

  @Option(help: "BatchNorm during training: fold (static folding) or keep (unfolded, per-channel only).")
  var batchnorm: QATBatchNorm = .fold

  @Option(help: "Re-estimate BatchNorm statistics on this many training batches after training (with --batchnorm keep).")
  var bnReestimation = 0

  @Option(help: "Knowledge distillation from the float model: the weight of its term in the loss, 0 to 1 (default 0: labels only).")
  var distill: Float = 0

  @Option(help: "Temperature of the distillation term (default 1).")
  var distillTemperature: Float = 1

  @Option(help: "Training samples used for range setting (default 1024).")
  var calibSize = 1024

  @OptionGroup(title: "Training")
  var training: TrainingOptions

  @Option(name: .shortAndLong, help: "The quantized ONNX file to write.")
  var output: String

  @Option(help: "Write a JSON report (settings, PTQ steps, every epoch, final accuracies) to this file.")
  var json: String?

  @OptionGroup var modelOutput: ModelOutputOptions

  @OptionGroup(title: "Images and text (images: and text: data)") var dataInput: DataInputOptions

  @Flag(help: "Print nothing but errors.")
  var quiet = false

  /// `lowbit qat`'s training defaults (see the discussion).
  static func defaultConfig(epochs: Int) -> TrainingConfig {
    var c = TrainingConfig(epochs: epochs)
    c.learningRate = 0.003
    c.weightDecay = 5e-5
    // Fine-tuning a trained model: augmentation the model was not trained with shifts the data
    // (horizontal flips mirror Fashion-MNIST's one-way shoes: fm_resnet20 W8A8 93.36 with flips
    // against 93.82 without, 5,000 images).
    c.augment = false
    return c
  }

  /// Option checks; they throw `LowbitError.invalidArgument` (exit 1, an `error:` line).
  func checkOptions() throws {
    for (name, bits) in [("--w-bits", weightBits), ("--a-bits", activationBits)] where !IntegerGrid.supportedBits.contains(bits) {
      throw LowbitError.invalidArgument("\(name) \(bits) is not supported: use 2 to 16")
    }
    guard (0...1).contains(distill) else { throw LowbitError.invalidArgument("--distill must be in [0, 1], got \(distill)") }
    guard distillTemperature > 0, distillTemperature.isFinite else {
      throw LowbitError.invalidArgument("--distill-temperature must be positive, got \(distillTemperature)")
    }
    guard calibSize > 0 else { throw LowbitError.invalidArgument("--calib-size must be positive, got \(calibSize)") }
    guard bnReestimation >= 0 else { throw LowbitError.invalidArgument("--bn-reestimation must be 0 or more batches") }
    if batchnorm == .keep && !perChannel {
      throw LowbitError.invalidArgument(
        "--batchnorm keep needs --per-channel: only per-channel weight scales can absorb BatchNorm after training")
    }
    if bnReestimation > 0 && batchnorm == .fold {
      throw LowbitError.invalidArgument(
        "--bn-reestimation needs --batchnorm keep: folded BatchNorm has no statistics left to re-estimate")
    }
  }

  /// The PTQ config QAT starts from (`QATStart.config`).
  var quantConfig: QuantConfig {
    start.config(weightBits: weightBits, activationBits: activationBits, perChannel: perChannel,
                 crossLayerEqualization: crossLayerEqualization)
  }

  /// What a qat checkpoint written before `--start` existed was made with (range setting was
  /// the only start then); applied only to checkpoints that record `command` qat.
  static let annotationsBeforeStart = ["start": QATStart.rangeSetting.rawValue]

  /// The settings a checkpoint records and a resume must repeat.
  var annotations: [String: String] {
    [
      "command": "qat", "w_bits": String(weightBits), "a_bits": String(activationBits),
      "per_channel": String(perChannel), "cle": String(crossLayerEqualization), "start": start.rawValue,
      "batchnorm": batchnorm.rawValue, "calib_size": String(calibSize),
      "distill": "\(distill)", "distill_temperature": "\(distillTemperature)",
    ]
  }

  func run() throws {
    let started = monotonicSeconds()
    try checkOptions()
    let collective = try Distributed.collective()
    let root = collective.isRoot, quiet = self.quiet || !root
    let checkpoint = try training.resume.map {
      try Checkpoint(decoding: Distributed.rootReads($0, what: "checkpoint", collective: collective), source: $0)
    }
    if let checkpoint {
      var stored = checkpoint.annotations
      if stored["command"] == "qat" { stored.merge(Self.annotationsBeforeStart) { recorded, _ in recorded } }
      for (key, value) in annotations.sorted(by: { $0.key < $1.key }) where stored[key] != value {
        throw LowbitError.invalidArgument(
          "'\(training.resume!)' was made with \(key) \(stored[key] ?? "(none: not a qat checkpoint)"), this run asks for \(value); resume with the options the run started with")
      }
    }
    let config = try training.config(resuming: checkpoint, defaults: Self.defaultConfig)
    let qconfig = quantConfig
    try qconfig.validate()
    if root {
      try checkWritableDestination(output)
      if let path = json, path != "-" { try checkWritableDestination(path) }
      try training.prepareCheckpointDirectory()
    }
    let graph = try ONNXReader.load(contentsOf: model)
    let dataOptions = try dataInput.options()
    let trainData = try DataSpec.loaded(train, options: dataOptions, graph: graph)
    try trainData.validateFinite()
    let evalData = try eval.map { try DataSpec.loaded($0, options: dataOptions, graph: graph) }
    try evalData?.validateFinite()
    if let data = evalData {
      guard data.labels != nil else {
        throw LowbitError.invalidInput("evaluation data \(data.source) has no labels; --eval needs class labels")
      }
      try checkFeedsFit(data, graph)
    }

    // PTQ part: fold, equalize, place quantizers, set ranges; then the trainable graph.
    let batches = try PostTrainingQuantization.calibrationBatches(trainData, graph: graph, batchSize: 32, limit: calibSize)
    let progress = StepProgress(prefix: "qat", enabled: !quiet)
    var setup = try QuantizationAwareTraining.prepare(
      graph, config: qconfig, batchNorm: batchnorm, batches: batches, progress: progress.update)
    progress.finish()
    // Every rank calibrated on the same samples; rank 0's parameters make the start identical.
    try collective.broadcastInitializers(of: &setup.graph)
    var loop = try checkpoint.map { try TrainingLoop(resuming: $0, graph: setup.graph, training: trainData, collective: collective) }
      ?? TrainingLoop(graph: setup.graph, training: trainData, config: config, collective: collective)
    if distill > 0 { loop.teacher = try Teacher(setup.ptq.floatGraph, weight: distill, temperature: distillTemperature) }
    let quantizers = setup.parameters.quantizers
    if !quiet {
      let resuming = training.resume.map { ", resuming \($0) after epoch \(loop.epoch)" } ?? ""
      print("""
        qat \((model as NSString).lastPathComponent): W\(weightBits)A\(activationBits) \(perChannel ? "per-channel" : "per-tensor"), \
        \(quantizers.filter { $0.kind == .weight }.count) weight and \(quantizers.filter { $0.kind == .activation }.count) \
        activation quantizers, BatchNorm \(batchnorm == .fold ? "folded" : "kept (\(setup.unfolded.count) layers)"); \
        \(trainData.count) samples, \(config.optimizer.rawValue) lr \(config.learningRate) \(config.schedule.rawValue), \
        batch \(config.batchSize), \(kernelThreadCount) threads\(collective.size > 1 ? " per rank, \(collective.size) ranks" : "")\(resuming)
        """)
    }
    var startTop1: Double?
    if let data = evalData, checkpoint == nil {
      startTop1 = try loop.evaluate(data, batchSize: 256, progress: nil).top1
      if !quiet { print(String(format: "epoch 0/%d  eval top-1 %.2f%% (%@)", config.epochs, startTop1!, start.summary)) }
    }
    try runEpochs(&loop, validation: evalData, validationBatchSize: 256, quiet: quiet) { loop, result in
      if root { try training.writeCheckpoint(loop, epoch: result.epoch, annotations: annotations) }
    }

    var trained = loop.trainer
    var reestimated = 0
    if bnReestimation > 0 {
      let batches = try PostTrainingQuantization.calibrationBatches(
        trainData, graph: trained.graph, batchSize: config.batchSize, limit: bnReestimation * config.batchSize).loaded()
      reestimated = try trained.reestimateBatchNormStatistics(batches)
      var graph = trained.graph
      try collective.broadcastInitializers(of: &graph)
      trained = try Trainer(graph)
    }
    guard root else { return }
    let folded = try QuantizationAwareTraining.foldBatchNorm(trained.graph)
    let qdq = try QuantizationAwareTraining.export(folded.graph, parameters: setup.parameters)
    var report = QATReport(
      model: model, output: output, train: train, eval: eval, resumedFrom: training.resume, start: start, quant: qconfig,
      batchNorm: batchnorm, unfolded: setup.unfolded, bnReestimated: reestimated, clippedWeights: folded.clippedWeights,
      config: config, samples: trainData.count, threads: kernelThreadCount, ptqSteps: setup.ptq.steps,
      epochs: loop.history, startTop1: startTop1)
    if let data = evalData {
      report.evaluation = try EvaluationReport.compare(
        float: setup.ptq.floatGraph, quantized: qdq, data: data, batchSize: 256, quiet: quiet)
    }
    try ONNXWriter.write(qdq, to: output, externalData: modelOutput.layout)
    report.totalSeconds = monotonicSeconds() - started
    if let path = json { try writeJSON(report, to: path) }
    if !quiet { print(report.render()) }
  }
}

/// What `lowbit qat --json` writes.
struct QATReport: Encodable {
  var model: String
  var output: String
  var train: String
  var eval: String?
  var resumedFrom: String?
  var start: QATStart
  var quant: QuantConfig
  var batchNorm: QATBatchNorm
  var unfolded: [UnfoldedLayer]
  var bnReestimated: Int
  var clippedWeights: Int
  var config: TrainingConfig
  var samples: Int
  var threads: Int
  var ptqSteps: [StepTiming]
  var epochs: [EpochResult]
  /// The quantized network's top-1 before training (the `--start` point), on the eval data.
  var startTop1: Double?
  /// FP32 vs the written file on the eval data.
  var evaluation: EvaluationReport?
  var totalSeconds = 0.0

  enum CodingKeys: String, CodingKey {
    case model, output, train, eval, start, quant, unfolded, config, samples, threads, epochs, evaluation
    case resumedFrom = "resumed_from", batchNorm = "batchnorm", bnReestimated = "bn_reestimated"
    case clippedWeights = "clipped_weights", ptqSteps = "ptq_steps", startTop1 = "start_top1"
    case totalSeconds = "total_seconds", trainingSeconds = "training_seconds"
  }

  func encode(to encoder: Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(model, forKey: .model)
    try c.encode(output, forKey: .output)
    try c.encode(train, forKey: .train)
    try c.encode(eval, forKey: .eval)
    try c.encode(resumedFrom, forKey: .resumedFrom)
    try c.encode(start, forKey: .start)
    try c.encode(quant, forKey: .quant)
    try c.encode(batchNorm, forKey: .batchNorm)
    try c.encode(unfolded, forKey: .unfolded)
    try c.encode(bnReestimated, forKey: .bnReestimated)
    try c.encode(clippedWeights, forKey: .clippedWeights)
    try c.encode(config, forKey: .config)
    try c.encode(samples, forKey: .samples)
    try c.encode(threads, forKey: .threads)
    try c.encode(ptqSteps, forKey: .ptqSteps)
    try c.encode(epochs, forKey: .epochs)
    try c.encode(startTop1, forKey: .startTop1)
    try c.encode(evaluation, forKey: .evaluation)
    try c.encode(epochs.map(\.seconds).reduce(0, +), forKey: .trainingSeconds)
    try c.encode(totalSeconds, forKey: .totalSeconds)
  }

  func render() -> String {
    var table = Table(["epoch", "lr", "loss", "train top-1 %", "eval top-1 %", "seconds", "samples/s"])
    if let s = startTop1 { table.add([start == .ptq ? "0 (PTQ)" : "0 (ranges)", "-", "-", "-", String(format: "%.2f", s), "-", "-"]) }
    for r in epochs {
      table.add([
        String(r.epoch), String(format: "%.4g", r.learningRate), String(format: "%.4f", r.loss),
        String(format: "%.2f", r.trainTop1), r.evalTop1.map { String(format: "%.2f", $0) } ?? "-",
        String(format: "%.1f", r.seconds), String(format: "%.1f", r.samplesPerSecond),
      ])
    }
    var lines = [table.render()]
    if let e = evaluation {
      var t = Table(["model", "top-1 %", "SQNR dB", "cosine", "argmax agree %"])
      t.add(["fp32", e.floatTop1.map { String(format: "%.2f", $0) } ?? "-", "-", "-", "-"])
      t.add([
        "W\(quant.weightBits)A\(quant.activationBits) QAT (file)", e.quantizedTop1.map { String(format: "%.2f", $0) } ?? "-",
        String(format: "%.2f", e.sqnrDB), String(format: "%.5f", e.meanCosine), String(format: "%.2f", 100 * e.argmaxAgreement),
      ])
      lines.append(t.render())
    }
    if clippedWeights > 0 { lines.append("note: \(clippedWeights) weights clipped by one step where a BN factor turned negative") }
    lines.append(String(format: "wrote %@ (%.1f s)", output, totalSeconds))
    return lines.joined(separator: "\n")
  }
}
