//! The MagicEraser emulator used by eraser's tests, benchmarks and demo.
pub mod emulator;
