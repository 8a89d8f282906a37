// The include path (Package.swift) selects the single-threaded OpenBLAS headers when installed.
#include <cblas.h>
