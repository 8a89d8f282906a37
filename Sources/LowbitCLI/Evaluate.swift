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
