//! Black-box tests: one binary, one module per area.
