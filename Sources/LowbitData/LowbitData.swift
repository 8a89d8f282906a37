/// LowbitData: data set readers (IDX, NPY, NPZ) and data specs.
