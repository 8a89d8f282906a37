import Foundation
import LowbitData

extension DataSpec {
  /// The data set a command-line spec names, Fashion-MNIST read from
  /// `$LOWBIT_FASHION_MNIST_DIR` when set (the library itself reads no environment).
  static func loaded(_ text: String) throws -> Dataset {
    let directory = ProcessInfo.processInfo.environment[fashionMNISTDirectoryVariable] ?? defaultFashionMNISTDirectory
    return try parse(text).load(fashionMNISTDirectory: directory)
  }
}
