//! The `eraser` command-line tool: the batch pipeline, its commands and its terminal output.
//!
//! A library as well as a binary so the fuzz targets and benchmarks can reach the pure parts
//! (the output-path mapping above all); `main.rs` stays a table of contents.

pub mod cli;
pub mod commands;
pub mod config;
pub mod exit;
pub mod logging;
pub mod pipeline;
pub mod progress;
pub mod review;
pub mod summary;
pub mod token_file;
