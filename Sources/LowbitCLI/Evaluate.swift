import LowbitCore
import LowbitData
import LowbitReport

/// Runs `interpreter` over `data` with a progress bar labelled `label` (drawn on a terminal
/// unless `quiet`): the one evaluation loop of `run`, `ptq --eval` and `demo`.
func evaluateWithProgress(
  _ interpreter: Interpreter, on data: Dataset, batchSize: Int, label: String, quiet: Bool,
  profile: OpProfile? = nil
) throws -> Evaluation {
  let bar = ProgressBar(label, total: data.count, enabled: !quiet && ProgressBar.terminalAttached)
  defer { bar.finish() }
  return try data.evaluate(interpreter, batchSize: batchSize, profile: profile) { bar.advance($0 - bar.done) }
}

/// One progress bar per pipeline step, replaced when the step changes.
final class StepProgress {
  private var bar: ProgressBar?
  private var step = ""
  private let prefix: String
  private let enabled: Bool

  init(prefix: String = "", enabled: Bool) {
    self.prefix = prefix
    self.enabled = enabled && ProgressBar.terminalAttached
  }

  func update(_ step: String, _ done: Int, _ total: Int) {
    if bar == nil || self.step != step {
      bar?.finish()
      bar = ProgressBar(prefix.isEmpty ? step : "\(prefix) \(step)", total: total, enabled: enabled)
      self.step = step
    }
    bar?.advance(done - (bar?.done ?? 0))
  }

  func finish() { bar?.finish() }
}

/// Throws unless the first sample of `data` fits `graph`'s inputs (shapes and types), so a
/// command fails before its long steps rather than at evaluation.
func checkFeedsFit(_ data: Dataset, _ graph: Graph) throws {
  let interpreter = try Interpreter(graph)
  let feeds = try data.feeds(for: graph, batch: 0..<min(1, data.count))
  for input in graph.inputs { if let t = feeds[input.name] { try interpreter.checkFeed(t, for: input) } }
}
