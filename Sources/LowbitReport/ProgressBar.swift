import Foundation

/// A one-line progress bar on standard error: `label [#####.....] 40/100 12.3/s eta 5s`.
///
/// Draws only when standard error is a terminal (or when forced), at most ten times a second,
/// so logs and pipes stay clean.
public final class ProgressBar {
  public let label: String
  public let total: Int
  private(set) public var done = 0
  private let enabled: Bool
  private let start = Date()
  private var lastDraw = Date.distantPast

  public init(_ label: String, total: Int, enabled: Bool = ProgressBar.terminalAttached) {
    self.label = label
    self.total = max(total, 0)
    self.enabled = enabled
  }

  /// Whether standard error is a terminal.
  public static var terminalAttached: Bool { isatty(2) != 0 }

  /// Advances by `count` units and redraws when due.
  public func advance(_ count: Int = 1) {
    done = min(total, done + count)
    guard enabled else { return }
    let now = Date()
    if now.timeIntervalSince(lastDraw) >= 0.1 || done == total {
      lastDraw = now
      draw(now)
    }
  }

  /// Clears the line (if drawn) and prints the final state with the elapsed time.
  public func finish() {
    guard enabled else { return }
    draw(Date())
    FileHandle.standardError.write(Data("\n".utf8))
  }

  /// Seconds since the bar was created.
  public var elapsed: Double { Date().timeIntervalSince(start) }

  private func draw(_ now: Date) {
    let width = 24
    let fraction = total == 0 ? 1 : Double(done) / Double(total)
    let filled = Int(fraction * Double(width))
    let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
    let seconds = now.timeIntervalSince(start)
    // A rate over less than a fifth of a second says nothing (a bar made after its first unit).
    let rate = seconds >= 0.2 ? Double(done) / seconds : 0
    let speed = rate > 0 ? "\(format(rate))/s eta \(Int((Double(total - done) / rate).rounded()))s" : "-/s eta -"
    let line = "\r\(label) [\(bar)] \(done)/\(total) \(speed)  "
    FileHandle.standardError.write(Data(line.utf8))
  }

  private func format(_ v: Double) -> String {
    v >= 100 ? String(Int(v.rounded())) : String(format: "%.1f", v)
  }
}
