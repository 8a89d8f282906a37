import Foundation
import LowbitQuant
import LowbitReport

/// The HTML page of `lowbit ptq --report`: the run (steps, evaluation) and the white paper's
/// debugging flow (`QuantizationDiagnosis`) worded for people, with plots.
enum DiagnosisPage {
  /// How many quantizers the ranked charts and the per-tensor plots show.
  static let shown = 15, plotted = 3

  static func html(_ run: PTQReport, diagnosis d: QuantizationDiagnosis) -> String { page(run, diagnosis: d).html() }

  static func page(_ run: PTQReport, diagnosis d: QuantizationDiagnosis) -> HTMLReport {
    let c = run.config
    var page = HTMLReport(title: "lowbit: \(URL(fileURLWithPath: run.model).lastPathComponent), W\(c.weightBits)A\(c.activationBits) \(c.perChannel ? "per channel" : "per tensor")")
    page.paragraph("\(run.model) -> \(run.output): \(run.weightQuantizers) weight and \(run.activationQuantizers) activation quantizers, opset \(run.opset). Losses are against the float model's outputs on \(d.samples) samples: KL divergence for logits, mean square otherwise.")

    page.heading("Steps")
    var steps = Table(["step", "seconds", "detail"])
    for s in run.steps { steps.add([s.step, String(format: "%.2f", s.seconds), s.detail ?? ""]) }
    page.table(steps)
    if let e = run.evaluation {
      page.heading("Evaluation")
      var t = Table(["model", "top-1 %", "SQNR dB", "argmax agreement %", "KL"])
      t.add(["fp32", e.floatTop1.map { String(format: "%.2f", $0) } ?? "-", "", "", ""])
      t.add(["quantized", e.quantizedTop1.map { String(format: "%.2f", $0) } ?? "-", String(format: "%.2f", e.sqnrDB),
             String(format: "%.2f", 100 * e.argmaxAgreement), String(format: "%.4f", e.klDivergence)])
      page.table(t)
    }

    page.heading("1. Sanity: the simulation with quantizers off")
    page.paragraph(String(
      format: "The float graph after BatchNorm folding, cross-layer equalization and bias absorption, with no quantizer on, differs from the original by at most %@ in any output%@.",
      HTMLReport.number(d.sanityMaxDifference), d.sanityMaxDifference < 1e-3 ? " (float rounding)" : ": a transform changed the function"))

    page.heading("2. Weights or activations")
    var variants = Table(["quantized", "output loss", "output SQNR dB"])
    for v in d.variants { variants.add([v.name, HTMLReport.number(v.loss), HTMLReport.number(v.sqnr)]) }
    page.table(variants)
    if let w = d.variants.first(where: { $0.name == "weights only" }), let a = d.variants.first(where: { $0.name == "activations only" }) {
      page.paragraph(w.loss >= a.loss
        ? "Weight quantization costs more than activation quantization: look at the weight quantizers first (per-channel weights, CLE, AdaRound)."
        : "Activation quantization costs more than weight quantization: look at the activation ranges first (range method, mixed precision for the worst).")
    }

    let causes = causeSentences(d)
    if !causes.isEmpty {
      page.heading("Likely causes")
      for sentence in causes { page.paragraph(sentence) }
    }

    page.heading("3. Quantizers, ranked")
    let gain = d.quantizers.map { d.lossAll - $0.lossWithoutIt }
    let byGain = d.quantizers.indices.sorted { gain[$0] > gain[$1] }.prefix(shown)
    page.barChart(
      "Output loss saved by leaving each quantizer in float (all others on), the \(byGain.count) largest",
      labels: byGain.map { label(d.quantizers[$0]) }, values: byGain.map { gain[$0] }, format: HTMLReport.number)
    let byAlone = d.quantizers.indices.sorted { d.quantizers[$0].lossAlone > d.quantizers[$1].lossAlone }.prefix(shown)
    page.barChart(
      "Output loss with each quantizer alone on, the \(byAlone.count) largest",
      labels: byAlone.map { label(d.quantizers[$0]) }, values: byAlone.map { d.quantizers[$0].lossAlone }, format: HTMLReport.number)
    var table = Table(["quantizer", "kind", "bits", "grid", "tensor SQNR dB", "clipped %", "loss alone", "loss without it"])
    for q in d.quantizers {
      table.add([q.name, q.kind.rawValue, String(q.bits), q.perChannel ? "per channel" : "per tensor", HTMLReport.number(q.tensorSQNR),
                 String(format: "%.3f", 100 * q.clipped), HTMLReport.number(q.lossAlone), HTMLReport.number(q.lossWithoutIt)])
    }
    page.table(table)

    page.heading("4. Where error accumulates")
    page.barChart(
      "SQNR (dB) of each layer's output in the quantized network against the float network, in graph order",
      labels: d.layers.map { "\($0.node) (\($0.opType))" }, values: d.layers.map(\.sqnr), format: HTMLReport.number)

    page.heading("5. Ranges of the worst quantizers")
    let worst = Array(byAlone)
    for i in worst.filter({ d.quantizers[$0].kind == .weight }).prefix(plotted) {
      let q = d.quantizers[i]
      page.rangePlot(
        "\(q.name): range of each output channel's float weights; dashed: the grid's range\(q.perChannel ? " (per channel: the widest)" : "")",
        ranges: q.channelRanges.map { Double($0.lowerBound)...Double($0.upperBound) },
        grid: grid(q))
    }
    for i in worst.filter({ d.quantizers[$0].kind == .activation }).prefix(plotted) {
      let q = d.quantizers[i]
      let g = grid(q)
      page.histogram(
        "\(q.name): histogram of its float values (log counts); dashed: the grid's range, \(String(format: "%.3f", 100 * q.clipped))% clipped",
        lower: Double(q.histogram.lower), upper: Double(q.histogram.upper), counts: q.histogram.counts,
        markers: g.map { [($0.lowerBound, "grid min " + HTMLReport.number($0.lowerBound)), ($0.upperBound, "grid max " + HTMLReport.number($0.upperBound))] } ?? [])
    }
    return page
  }

  /// Section 6 of `lowbit debug`'s page: the fixes tried, the mixed-precision front and the
  /// recommended command.
  static func fixes(_ flow: DebuggingFlow.Outcome, command: String, into page: inout HTMLReport) {
    page.heading("6. The fixes, tried")
    page.paragraph("Each fix was applied on top of the ones kept before it, the model quantized again with the trial settings (`--effort fast`: weights of 8 bits and more rounded to nearest, fewer bits AdaRound capped at \(Effort.fastAdaRoundIterations) steps, no quantizer tuning; a change of activation range on the best trial's weights) and measured on the held-out samples; a fix is kept when it lowers the loss by more than \(Int(100 * QuantizationFix.margin))%. The recommendation is measured again with the settings given.")
    var t = Table(["configuration", "held-out loss", "output SQNR dB", "output cosine", "weight MB", "seconds", "kept"])
    func row(_ name: String, _ m: DebuggingFlow.Measurement, _ kept: Bool) {
      t.add([name, HTMLReport.number(m.loss), HTMLReport.number(m.sqnr), String(format: "%.5f", m.cosine), megabytes(m.weightBits),
             String(format: "%.1f", m.seconds), kept ? "yes" : ""])
    }
    row("baseline (the options given)", flow.baseline, false)
    row("baseline, trial settings", flow.trialBaseline, false)
    for trial in flow.trials { row(describe(trial.fix), trial.measurement, trial.kept) }
    page.table(t)
    if !flow.weightFront.isEmpty {
      var front = Table(["weight quantizers widened", "weight MB", "held-out loss", "output SQNR dB", "output cosine", "recommended"])
      for p in flow.weightFront {
        front.add([String(p.fix.quantizers ?? 0), megabytes(p.measurement.weightBits), HTMLReport.number(p.measurement.loss),
                   HTMLReport.number(p.measurement.sqnr), String(format: "%.5f", p.measurement.cosine), p.kept ? "yes" : ""])
      }
      page.table(front)
    }
    let everything = [("baseline", flow.baseline, false), ("trial baseline", flow.trialBaseline, false)]
      + (flow.trials + flow.weightFront + flow.mixedPrecisionFront).map { (describe($0.fix), $0.measurement, $0.kept) }
    page.scatterPlot(
      "Held-out loss (log scale) against the quantized weights' size, every configuration measured; red: kept or recommended; the line joins the Pareto front (no other point smaller and better)",
      points: everything.map { (x: Double($0.1.weightBits) / 8e6, y: $0.1.loss, label: $0.0, highlighted: $0.2) },
      xLabel: "weight MB", yLabel: "held-out loss")
    if !flow.mixedPrecisionFront.isEmpty {
      var front = Table(["activation quantizers widened", "held-out loss", "output SQNR dB", "output cosine", "recommended"])
      for p in flow.mixedPrecisionFront {
        front.add([String(p.fix.quantizers ?? 0), HTMLReport.number(p.measurement.loss), HTMLReport.number(p.measurement.sqnr), String(format: "%.5f", p.measurement.cosine), p.kept ? "yes" : ""])
      }
      page.table(front)
      page.barChart(
        "Held-out loss with the k most sensitive activation quantizers widened (mixed precision), on top of the kept fixes",
        labels: flow.mixedPrecisionFront.map { describe($0.fix) }, values: flow.mixedPrecisionFront.map(\.measurement.loss),
        format: HTMLReport.number, highlighted: Set(flow.mixedPrecisionFront.indices.filter { flow.mixedPrecisionFront[$0].kept }))
    }
    if let m = flow.rejectedMeasurement {
      page.paragraph("The fixes the trials kept (\(flow.rejectedFixes.map(describe).joined(separator: ", "))) did not beat the options given once measured with their settings (loss \(HTMLReport.number(m.loss)) against \(HTMLReport.number(flow.baseline.loss))): the options given stay the recommendation.")
    }
    page.heading("Recommended")
    page.paragraph("\(command)")
    page.paragraph("Measured on the held-out samples: loss \(HTMLReport.number(flow.recommendedMeasurement.loss)) (baseline \(HTMLReport.number(flow.baseline.loss))), output cosine \(String(format: "%.5f", flow.recommendedMeasurement.cosine)) (baseline \(String(format: "%.5f", flow.baseline.cosine))), output SQNR \(HTMLReport.number(flow.recommendedMeasurement.sqnr)) dB (baseline \(HTMLReport.number(flow.baseline.sqnr)) dB).")
  }

  /// The diagnosis' causes in words, one sentence each, with the fixes the white paper gives.
  static func causeSentences(_ d: QuantizationDiagnosis) -> [String] {
    d.causes.map { cause in
      let share = String(format: "%.0f%%", 100 * cause.lossShare)
      let named = zip(cause.quantizers, cause.roles).prefix(4).map { role($1, quantizer: $0) }
      let more = cause.quantizers.count > 4 ? " and \(cause.quantizers.count - 4) more" : ""
      let list = named.joined(separator: "; ") + more
      func span(_ format: String) -> String {
        let lo = cause.measures.min() ?? 0, hi = cause.measures.max() ?? 0
        return lo == hi ? String(format: format, lo) : String(format: format, lo) + " to " + String(format: format, hi)
      }
      switch cause.kind {
      case .weightChannelRanges:
        let depthwise = cause.roles.filter(\.depthwise).count
        let kinds = depthwise == cause.roles.count ? "depthwise layers" : depthwise > 0 ? "layers (\(depthwise) of \(cause.roles.count) depthwise)" : "layers"
        return "Weight channel ranges (the white paper's fig. 6): the per-tensor grids of these \(kinds) span output channels of very different ranges, so the narrow channels get a few levels; one grid per channel would gain \(span("%.1f")) dB of SQNR: \(list). They make \(share) of the weight quantizers' loss alone. Fixes: per-channel weights, or cross-layer equalization."
      case .activationOutliers:
        let residual = cause.roles.contains(where: \.residualSum) ? " (the residual stream)" : ""
        let norm = cause.roles.contains(where: { $0.readers.contains("LayerNormalization") }) ? ", LayerNorm inputs among them" : ""
        return "Activation outliers\(residual)\(norm): a few values stretch the grid to \(span("%.0f"))x the range of the central 99.9% of values, leaving the bulk a few levels: \(list). They make \(share) of the activation quantizers' loss alone. Fixes: a wider grid for them (mixed precision), a clipping range (MSE, percentile)."
      case .activationClipping:
        let percents = cause.measures.sorted().map { String(format: "%.1f%%", 100 * $0) }
        let range = percents.first == percents.last ? percents[0] : "\(percents.first!) to \(percents.last!)"
        return "Clipped activations: the grid cuts off \(range) of the values of \(list). They make \(share) of the activation quantizers' loss alone. Fixes: a wider range (min-max, or MSE with more candidates)."
      }
    }
  }

  /// A quantizer with where it sits: "depthwise Conv 'x'", "'v' (residual sum of Add 'n', read by LayerNormalization)".
  static func role(_ r: QuantizationDiagnosis.Role, quantizer: String) -> String {
    guard let op = r.opType, let node = r.node else { return "'\(quantizer)' (a model input)" }
    if r.readers.isEmpty && !r.residualSum { return "\(r.depthwise ? "depthwise " : "")\(op) '\(node)'" }
    let source = r.residualSum ? "residual sum of Add '\(node)'" : "output of \(op) '\(node)'"
    let readers = r.readers.isEmpty ? "" : ", read by " + r.readers.joined(separator: ", ")
    return "'\(quantizer)' (\(source)\(readers))"
  }

  static func megabytes(_ bits: Int) -> String { String(format: "%.3f", Double(bits) / 8e6) }

  /// A fix in a few words.
  static func describe(_ fix: QuantizationFix) -> String {
    switch fix.kind {
    case .perChannelWeights: return "per-channel weights"
    case .crossLayerEqualization: return fix.enabled == true ? "CLE on" : "CLE off"
    case .activationRange: return "activation range \(fix.rangeMethod?.rawValue ?? "")"
    case .biasCorrection: return "bias correction \(fix.biasCorrection?.rawValue ?? "")"
    case .adaRound: return fix.enabled == true ? "AdaRound on" : "AdaRound off"
    case .mixedPrecision: return "\(fix.quantizers ?? 0) activation quantizers widened"
    case .weightMixedPrecision: return "\(fix.quantizers ?? 0) weight quantizers widened"
    case .quantizerRange: return "range of '\(fix.quantizer ?? "")' \(fix.rangeMethod?.rawValue ?? "")"
    }
  }

  static func label(_ q: QuantizationDiagnosis.Quantizer) -> String { "\(q.name) (\(q.kind.rawValue))" }

  /// The union of a quantizer's grid ranges.
  static func grid(_ q: QuantizationDiagnosis.Quantizer) -> ClosedRange<Double>? {
    guard let lo = q.gridRanges.map(\.lowerBound).min(), let hi = q.gridRanges.map(\.upperBound).max() else { return nil }
    return Double(lo)...Double(hi)
  }
}
