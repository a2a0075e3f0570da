//! Test support for eraser: a faithful, fault-injecting emulator of the MagicEraser service.
//!
//! The emulator depends on no eraser crate, so every crate of the workspace may dev-depend on it.
//! The binary `fake-magiceraser` serves the same emulator from the command line.
pub mod emulator;
