import ArgumentParser
import Foundation
import LowbitCore
import LowbitData
import LowbitONNX
import LowbitReport
import LowbitTrain

extension OptimizerKind: ExpressibleByArgument {}
extension ScheduleKind: ExpressibleByArgument {}

/// `lowbit train`: float training of an ONNX classifier, with checkpoints and exact resume.
struct TrainCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "train",
    abstract: "Train a float ONNX classifier on labelled data and write the trained model as ONNX.",
    discussion: """
      Minimizes softmax cross-entropy of the model's first output ([N, classes] logits) against \
      the labels, with BatchNorm in training mode (batch statistics; the running statistics move \
      as in PyTorch) and validates with BatchNorm in inference mode. Each epoch visits the \
      training samples in a seeded shuffle; rank-4 image data is augmented by a random crop of \
      the zero-padded image (pad 4 for images of 32 pixels and more, 2 below) and a horizontal \
      flip (--no-augment switches this off). Weight decay applies to conv and linear weights, \
      not to biases or BatchNorm scales and shifts. The written model keeps its \
      BatchNormalization nodes, with the trained running statistics. Defaults: batch 128, \
      SGD with momentum 0.9, lr 0.1 with cosine decay to 0, no warm-up, weight decay 5e-4, seed 0.

      With --checkpoint-dir, every epoch ends by writing DIR/epoch-NNNN.ckpt (parameters, \
      BatchNorm statistics, optimizer state, config, epoch and step, generator states). \
      `--resume DIR/epoch-NNNN.ckpt` with the same model and training data continues the run; \
      it ends with the same bits as the uninterrupted run. Training options left out on resume \
      come from the checkpoint; given ones must agree with it.

      Data parallel: `mpirun -np K lowbit train ...` (on one machine, or across machines with \
      --hostfile) runs K ranks on the same data; each global batch of --batch-size is split \
      over the ranks and their gradients averaged (MPI allreduce), so the ranks stay \
      identical. Rank 0 alone prints and writes the model, checkpoints and JSON; the model, \
      data and options must be the same on every machine, a --resume checkpoint need exist \
      only on rank 0's. Resuming with the same K continues bit for bit.
      """)

  @Argument(help: "The float ONNX model to train (its initializers are the starting point).")
  var model: String

  @Option(help: "Labelled training data spec, e.g. fashion-mnist:train or npy:x.npy,y.npy.")
  var train: String

  @Option(help: "Labelled validation data spec: eval top-1 after every epoch.")
  var eval: String?

  @OptionGroup(title: "Training")
  var training: TrainingOptions

  @Flag(help: "Train from scratch: the model gives the architecture; conv and linear weights start He-normal (seeded by --seed), biases 0, BatchNorm at identity.")
  var fromScratch = false

  @Option(name: .shortAndLong, help: "The trained ONNX model to write.")
  var output: String

  @Option(help: "Write a JSON report (config, every epoch, final numbers) to this file.")
  var json: String?

  @OptionGroup(title: "Images and text (images: and text: data)") var dataInput: DataInputOptions

  @Flag(help: "Print nothing but errors.")
  var quiet = false

  @Option(help: ArgumentHelp("Every rank writes its final model to DIR/rank-R.onnx (for testing data-parallel runs).", visibility: .hidden))
  var rankModels: String?

  func run() throws {
    let collective = try Distributed.collective()
    let root = collective.isRoot, quiet = self.quiet || !root
    let resume = training.resume
    let checkpoint = try resume.map {
      try Checkpoint(decoding: Distributed.rootReads($0, what: "checkpoint", collective: collective), source: $0)
    }
    if let checkpoint, !checkpoint.annotations.isEmpty {
      throw LowbitError.invalidArgument("'\(resume!)' is a `lowbit \(checkpoint.annotations["command"] ?? "qat")` checkpoint; resume it with that command")
    }
    let config = try training.config(resuming: checkpoint) { TrainingConfig(epochs: $0) }
    // Fail before training on anything that can be checked up front; rank 0 alone writes.
    if root {
      try checkWritableDestination(output)
      if let path = json, path != "-" { try checkWritableDestination(path) }
      try training.prepareCheckpointDirectory()
    }
    if let dir = rankModels {
      try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }
    var graph = try ONNXReader.load(contentsOf: model).simplified()
    if fromScratch && checkpoint == nil { graph = try ParameterInitialization.heNormal(graph, seed: config.seed) }
    let dataOptions = try dataInput.options()
    let trainData = try DataSpec.loaded(train, options: dataOptions, graph: graph)
    try trainData.validateFinite()
    let evalData = try eval.map { try DataSpec.loaded($0, options: dataOptions, graph: graph) }
    try evalData?.validateFinite()
    if let data = evalData {
      guard data.labels != nil else {
        throw LowbitError.invalidInput("evaluation data \(data.source) has no labels; --eval needs class labels")
      }
      _ = try data.feeds(for: graph, batch: 0..<1)
    }
    var loop = try checkpoint.map { try TrainingLoop(resuming: $0, graph: graph, training: trainData, collective: collective) }
      ?? TrainingLoop(graph: graph, training: trainData, config: config, collective: collective)
    if !quiet {
      let augmentation = loop.augmentation.map { "crop pad \($0.padding) + flip" } ?? "none"
      let start = resume.map { ", resuming \($0) after epoch \(loop.epoch)" } ?? ""
      let ranks = collective.size > 1 ? " per rank, \(collective.size) ranks" : ""
      print("""
        train \((model as NSString).lastPathComponent): \(trainData.count) samples (\(train)), \(loop.trainer.parameterNames.count) \
        parameter tensors, \(config.optimizer.rawValue) lr \(config.learningRate) \(config.schedule.rawValue), batch \
        \(config.batchSize), augmentation \(augmentation), \(kernelThreadCount) threads\(ranks)\(start)
        """)
      if let checkpoint, checkpoint.ranks != collective.size {
        print("note: the checkpoint was written by a run of \(checkpoint.ranks) rank(s), this one has \(collective.size): it continues, but not bit for bit")
      }
    }
    try runEpochs(&loop, validation: evalData, validationBatchSize: max(config.batchSize, 64), quiet: quiet) { loop, result in
      if root { try training.writeCheckpoint(loop, epoch: result.epoch) }
    }
    if let dir = rankModels {
      try ONNXWriter.write(loop.trainer.graph, to: (dir as NSString).appendingPathComponent("rank-\(collective.rank).onnx"))
    }
    guard root else { return }
    try ONNXWriter.write(loop.trainer.graph, to: output)
    let report = TrainReport(
      model: model, output: output, train: train, eval: eval, resumedFrom: resume, config: config,
      samples: trainData.count, threads: kernelThreadCount, ranks: collective.size, epochs: loop.history)
    if let path = json { try writeJSON(report, to: path) }
    if !quiet { print(report.render()) }
  }

  static func line(_ r: EpochResult, epochs: Int) -> String {
    let eval = r.evalTop1.map { String(format: "  eval top-1 %.2f%%", $0) } ?? ""
    return String(format: "epoch %d/%d  loss %.4f  train top-1 %.2f%%", r.epoch, epochs, r.loss, r.trainTop1)
      + eval + String(format: "  %.1f s  %.1f samples/s", r.seconds, r.samplesPerSecond)
  }
}

/// What `lowbit train --json` writes.
struct TrainReport: Encodable {
  var model: String
  var output: String
  var train: String
  var eval: String?
  var resumedFrom: String?
  var config: TrainingConfig
  var samples: Int
  var threads: Int
  /// Data-parallel ranks (1: a single process); `threads` is per rank.
  var ranks: Int
  var epochs: [EpochResult]

  enum CodingKeys: String, CodingKey {
    case model, output, train, eval, config, samples, threads, ranks, epochs, final
    case resumedFrom = "resumed_from"
  }

  func encode(to encoder: Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(model, forKey: .model)
    try c.encode(output, forKey: .output)
    try c.encode(train, forKey: .train)
    try c.encode(eval, forKey: .eval)
    try c.encode(resumedFrom, forKey: .resumedFrom)
    try c.encode(config, forKey: .config)
    try c.encode(samples, forKey: .samples)
    try c.encode(threads, forKey: .threads)
    try c.encode(ranks, forKey: .ranks)
    try c.encode(epochs, forKey: .epochs)
    try c.encode(epochs.last, forKey: .final)
  }

  func render() -> String {
    var table = Table(["epoch", "lr", "loss", "train top-1 %", "eval top-1 %", "seconds", "samples/s"])
    for r in epochs {
      table.add([
        String(r.epoch), String(format: "%.4g", r.learningRate), String(format: "%.4f", r.loss),
        String(format: "%.2f", r.trainTop1), r.evalTop1.map { String(format: "%.2f", $0) } ?? "-",
        String(format: "%.1f", r.seconds), String(format: "%.1f", r.samplesPerSecond),
      ])
    }
    return table.render() + "\nwrote \(output)"
  }
}
