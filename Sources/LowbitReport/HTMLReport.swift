import Foundation

/// A self-contained HTML page: headings, paragraphs, tables and plots drawn as inline SVG, with
/// inline CSS and no script, font or image from anywhere else, so it reads without JavaScript,
/// offline, and prints. Text is escaped; numbers are formatted by the caller.
public struct HTMLReport {
  public var title: String
  private var parts: [String] = []

  public init(title: String) { self.title = title }

  public mutating func heading(_ text: String, level: Int = 2) {
    let l = min(max(level, 1), 4)
    parts.append("<h\(l)>\(Self.escape(text))</h\(l)>")
  }

  public mutating func paragraph(_ text: String) { parts.append("<p>\(Self.escape(text))</p>") }

  /// A table; cells that look like numbers are right-aligned.
  public mutating func table(_ t: Table) {
    var html = "<table><thead><tr>" + t.headers.map { "<th>\(Self.escape($0))</th>" }.joined() + "</tr></thead><tbody>"
    for row in t.rows {
      html += "<tr>" + row.map { cell in
        let numeric = !cell.isEmpty && cell.allSatisfy { "0123456789.-+%xe inf".contains($0) }
        return numeric ? "<td class=\"n\">\(Self.escape(cell))</td>" : "<td>\(Self.escape(cell))</td>"
      }.joined() + "</tr>"
    }
    parts.append(html + "</tbody></table>")
  }

  /// Horizontal bars, one per label, lengths proportional to `values` (non-finite values are
  /// drawn at the largest finite one and labelled as given by `format`).
  public mutating func barChart(
    _ caption: String, labels: [String], values: [Double], format: (Double) -> String, highlighted: Set<Int> = []
  ) {
    let finite = values.filter(\.isFinite)
    let top = max(finite.map(abs).max() ?? 1, .leastNormalMagnitude)
    let rowHeight = 16.0, labelWidth = 380.0, barWidth = 360.0, width = labelWidth + barWidth + 90
    let height = rowHeight * Double(labels.count) + 8
    var svg = svgOpen(width: width, height: height, caption: caption)
    for (i, (label, v)) in zip(labels, values).enumerated() {
      let y = 4 + rowHeight * Double(i)
      let length = (v.isFinite ? abs(v) : top) / top * barWidth
      let fill = highlighted.contains(i) ? "#c0392b" : "#2e86c1"
      svg += text(Self.shorten(label, 60), x: labelWidth - 6, y: y + 12, anchor: "end")
      svg += "<rect x=\"\(f(labelWidth))\" y=\"\(f(y + 2))\" width=\"\(f(max(length, 0.5)))\" height=\"\(f(rowHeight - 4))\" fill=\"\(fill)\"/>"
      svg += text(format(v), x: labelWidth + length + 4, y: y + 12, anchor: "start")
    }
    parts.append(figure(svg + "</svg>", caption))
  }

  /// A histogram of `counts` in equal bins over `lower ... upper` (log-scaled heights, so the tails
  /// show), with vertical markers (e.g. the grid's clipping range) at the given values.
  public mutating func histogram(
    _ caption: String, lower: Double, upper: Double, counts: [Int], markers: [(value: Double, label: String)]
  ) {
    let width = 520.0, height = 150.0, plotHeight = 110.0, left = 10.0, plotWidth = width - 20
    var svg = svgOpen(width: width, height: height, caption: caption)
    let top = log1p(Double(counts.max() ?? 1))
    let span = upper > lower ? upper - lower : 1
    let binWidth = plotWidth / Double(max(counts.count, 1))
    for (i, c) in counts.enumerated() where c > 0 {
      let h = top > 0 ? log1p(Double(c)) / top * plotHeight : 0
      svg += "<rect x=\"\(f(left + binWidth * Double(i)))\" y=\"\(f(10 + plotHeight - h))\" width=\"\(f(max(binWidth - 1, 0.5)))\" height=\"\(f(h))\" fill=\"#5d6d7e\"/>"
    }
    svg += "<line x1=\"\(f(left))\" y1=\"\(f(10 + plotHeight))\" x2=\"\(f(left + plotWidth))\" y2=\"\(f(10 + plotHeight))\" stroke=\"#000\"/>"
    svg += text(Self.number(lower), x: left, y: height - 8, anchor: "start")
    svg += text(Self.number(upper), x: left + plotWidth, y: height - 8, anchor: "end")
    for (k, m) in markers.enumerated() where m.value.isFinite {
      let x = left + min(max((m.value - lower) / span, 0), 1) * plotWidth
      svg += "<line x1=\"\(f(x))\" y1=\"6\" x2=\"\(f(x))\" y2=\"\(f(10 + plotHeight))\" stroke=\"#c0392b\" stroke-dasharray=\"4 2\"/>"
      svg += text(m.label, x: x, y: k % 2 == 0 ? 8 : 18, anchor: x > width / 2 ? "end" : "start", color: "#c0392b")
    }
    parts.append(figure(svg + "</svg>", caption))
  }

  /// One vertical bar per channel from its smallest to its largest value (the white paper's
  /// fig. 6 view of per-channel weight ranges), with the grid's range as dashed lines.
  public mutating func rangePlot(_ caption: String, ranges: [ClosedRange<Double>], grid: ClosedRange<Double>?) {
    let width = 520.0, height = 170.0, top = 10.0, plotHeight = 140.0, left = 40.0, plotWidth = width - 50
    let lo = min(ranges.map(\.lowerBound).min() ?? 0, grid?.lowerBound ?? 0)
    let hi = max(ranges.map(\.upperBound).max() ?? 1, grid?.upperBound ?? 0)
    let span = hi > lo ? hi - lo : 1
    func y(_ v: Double) -> Double { top + (hi - v) / span * plotHeight }
    var svg = svgOpen(width: width, height: height, caption: caption)
    let step = plotWidth / Double(max(ranges.count, 1))
    for (i, r) in ranges.enumerated() {
      let x = left + step * Double(i)
      svg += "<rect x=\"\(f(x))\" y=\"\(f(y(r.upperBound)))\" width=\"\(f(max(step * 0.7, 0.5)))\" height=\"\(f(max(y(r.lowerBound) - y(r.upperBound), 0.5)))\" fill=\"#2e86c1\"/>"
    }
    if let g = grid {
      for v in [g.lowerBound, g.upperBound] {
        svg += "<line x1=\"\(f(left))\" y1=\"\(f(y(v)))\" x2=\"\(f(left + plotWidth))\" y2=\"\(f(y(v)))\" stroke=\"#c0392b\" stroke-dasharray=\"4 2\"/>"
      }
    }
    svg += text(Self.number(hi), x: left - 4, y: top + 4, anchor: "end")
    svg += text(Self.number(lo), x: left - 4, y: top + plotHeight, anchor: "end")
    if lo < 0 && hi > 0 {
      svg += "<line x1=\"\(f(left))\" y1=\"\(f(y(0)))\" x2=\"\(f(left + plotWidth))\" y2=\"\(f(y(0)))\" stroke=\"#999\"/>"
    }
    parts.append(figure(svg + "</svg>", caption))
  }

  /// Points of (x, y) with y on a log scale (non-positive or non-finite y left out), labelled;
  /// the Pareto front (points with no other point at most as large in x and lower in y) joined
  /// by a line, highlighted points in red.
  public mutating func scatterPlot(
    _ caption: String, points: [(x: Double, y: Double, label: String, highlighted: Bool)], xLabel: String, yLabel: String
  ) {
    let shown = points.filter { $0.x.isFinite && $0.y.isFinite && $0.y > 0 }
    guard !shown.isEmpty else { return }
    let width = 600.0, height = 270.0, left = 90.0, top = 26.0, plotWidth = width - 120, plotHeight = height - 70
    let xs = shown.map(\.x), ys = shown.map { log10($0.y) }
    let (x0, x1) = (xs.min()!, xs.max()!), (y0, y1) = (ys.min()!, ys.max()!)
    let xSpan = x1 > x0 ? x1 - x0 : 1, ySpan = y1 > y0 ? y1 - y0 : 1
    func px(_ x: Double) -> Double { left + (x - x0) / xSpan * plotWidth }
    func py(_ y: Double) -> Double { top + (y1 - log10(y)) / ySpan * plotHeight }
    var svg = svgOpen(width: width, height: height, caption: caption)
    svg += "<line x1=\"\(f(left))\" y1=\"\(f(top + plotHeight))\" x2=\"\(f(left + plotWidth))\" y2=\"\(f(top + plotHeight))\" stroke=\"#000\"/>"
    svg += "<line x1=\"\(f(left))\" y1=\"\(f(top))\" x2=\"\(f(left))\" y2=\"\(f(top + plotHeight))\" stroke=\"#000\"/>"
    let front = shown.filter { p in !shown.contains { q in q.x <= p.x && q.y < p.y } }.sorted { $0.x < $1.x }
    if front.count > 1 {
      svg += "<polyline fill=\"none\" stroke=\"#7f8c8d\" stroke-dasharray=\"3 2\" points=\"" + front.map { "\(f(px($0.x))),\(f(py($0.y)))" }.joined(separator: " ") + "\"/>"
    }
    for p in shown {
      svg += "<circle cx=\"\(f(px(p.x)))\" cy=\"\(f(py(p.y)))\" r=\"3.5\" fill=\"\(p.highlighted ? "#c0392b" : "#2e86c1")\"><title>\(Self.escape(p.label))</title></circle>"
    }
    svg += text(Self.number(x0), x: left, y: top + plotHeight + 14, anchor: "start")
    svg += text(Self.number(x1), x: left + plotWidth, y: top + plotHeight + 14, anchor: "end")
    svg += text(xLabel, x: left + plotWidth / 2, y: height - 8, anchor: "middle")
    svg += text(Self.number(pow(10, y1)), x: left - 4, y: top + 8, anchor: "end")
    svg += text(Self.number(pow(10, y0)), x: left - 4, y: top + plotHeight, anchor: "end")
    svg += text(yLabel, x: left, y: top - 12, anchor: "middle")
    parts.append(figure(svg + "</svg>", caption))
  }

  /// The whole page.
  public func html() -> String {
    """
    <!DOCTYPE html>
    <html lang="en"><head><meta charset="utf-8"><title>\(Self.escape(title))</title>
    <style>
    body { font-family: sans-serif; margin: 2em auto; max-width: 62em; color: #222; line-height: 1.4 }
    table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em }
    th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left }
    td.n { text-align: right; font-variant-numeric: tabular-nums }
    figure { margin: 1em 0; page-break-inside: avoid }
    figcaption { font-size: 0.9em; color: #555 }
    svg text { font-family: sans-serif; font-size: 11px }
    </style></head><body>
    <h1>\(Self.escape(title))</h1>
    \(parts.joined(separator: "\n"))
    </body></html>

    """
  }

  // MARK: - Helpers

  private func svgOpen(width: Double, height: Double, caption: String) -> String {
    "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(f(width))\" height=\"\(f(height))\" viewBox=\"0 0 \(f(width)) \(f(height))\" role=\"img\" aria-label=\"\(Self.escape(caption))\">"
  }

  private func figure(_ svg: String, _ caption: String) -> String {
    "<figure>\(svg)<figcaption>\(Self.escape(caption))</figcaption></figure>"
  }

  private func text(_ s: String, x: Double, y: Double, anchor: String, color: String = "#222") -> String {
    "<text x=\"\(f(x))\" y=\"\(f(y))\" text-anchor=\"\(anchor)\" fill=\"\(color)\">\(Self.escape(s))</text>"
  }

  private func f(_ v: Double) -> String { String(format: "%.1f", v.isFinite ? v : 0) }

  /// A number in 4 significant digits.
  public static func number(_ v: Double) -> String { v.isFinite ? String(format: "%.4g", v) : (v > 0 ? "inf" : v < 0 ? "-inf" : "nan") }

  /// `s` cut to `limit` characters in the middle, so that both a name's start (which layer) and
  /// its end (which tensor) stay.
  static func shorten(_ s: String, _ limit: Int) -> String {
    guard s.count > limit else { return s }
    let head = (limit - 1) / 2
    return s.prefix(head) + "…" + s.suffix(limit - 1 - head)
  }

  /// `s` with &, <, >, " and ' escaped.
  public static func escape(_ s: String) -> String {
    var out = ""
    out.reserveCapacity(s.count)
    for c in s {
      switch c {
      case "&": out += "&amp;"
      case "<": out += "&lt;"
      case ">": out += "&gt;"
      case "\"": out += "&quot;"
      case "'": out += "&#39;"
      default: out.append(c)
      }
    }
    return out
  }
}
