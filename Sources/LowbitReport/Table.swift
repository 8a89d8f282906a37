/// A plain-text table with aligned columns, for summaries at the end of a command.
public struct Table {
  public var headers: [String]
  public var rows: [[String]] = []

  public init(_ headers: [String]) { self.headers = headers }

  public mutating func add(_ row: [String]) { rows.append(row) }

  /// The table as text: a header, a rule, then rows; numbers-looking cells right-aligned.
  public func render() -> String {
    let columns = headers.count
    var widths = headers.map(\.count)
    for row in rows {
      for (i, cell) in row.prefix(columns).enumerated() { widths[i] = max(widths[i], cell.count) }
    }
    func line(_ cells: [String]) -> String {
      (0..<columns).map { i in
        let cell = i < cells.count ? cells[i] : ""
        let pad = String(repeating: " ", count: widths[i] - cell.count)
        return isNumeric(cell) ? pad + cell : cell + pad
      }.joined(separator: "  ")
    }
    var out = [line(headers), widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")]
    out += rows.map(line)
    return out.joined(separator: "\n")
  }

  private func isNumeric(_ s: String) -> Bool {
    !s.isEmpty && s.allSatisfy { "0123456789.-+%xe".contains($0) }
  }
}
