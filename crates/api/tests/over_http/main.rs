//! The client against the emulator (`eraser_tests::emulator`) over real HTTP on 127.0.0.1.
//! One behaviour per test; retries use millisecond delays so the suite stays fast.

/// Shared set-up: emulator, client builder, input files, retry recorder.
mod util;

/// Downloads: URL schemes, bounds, atomic placement.
mod downloads;
/// create → poll → download, end to end.
mod happy_path;
/// A hostile or broken server: huge and endless bodies, slow drip, bad replies, redirects.
mod hostile_server;
/// Permanent failures surfaced with their code and message; bad inputs refused locally.
mod permanent_failures;
/// The requests compared with the captured web app's, field by field.
mod request_shape;
/// Retryable faults (500, 429, drops, garbage, CDN errors, truncation) recovered.
mod retryable_faults;
/// The token never leaks; the CDN never sees the API's headers.
mod secrets;
