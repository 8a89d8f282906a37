import Foundation

/// The repository root, found from this file's location.
public let repositoryRoot: URL = URL(fileURLWithPath: #filePath)
  .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// A demo model committed under assets/models (present in every clone).
public func demoModelPath(_ name: String) -> String {
  repositoryRoot.appendingPathComponent("assets/models/\(name).onnx").path
}

/// The shared test folder beside the repository (`LOWBIT_SHARED` overrides it).
public var sharedFolder: URL {
  if let path = ProcessInfo.processInfo.environment["LOWBIT_SHARED"] { return URL(fileURLWithPath: path) }
  return repositoryRoot.deletingLastPathComponent().appendingPathComponent("shared")
}
