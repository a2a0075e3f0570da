//! What a wide-area network adds that loopback does not: a delay before every reply
//! ([`Knobs::latency`]) and one uplink shared by every upload ([`Knobs::uplink_bytes_per_sec`]).
//!
//! The delay comes after the handler has done its work, as on a real link where the request
//! reaches the server before the reply travels back: a create-job's job exists (and starts
//! processing) while its reply is still on its way, and a get-job answers the state at arrival.
//!
//! [`Knobs::latency`]: super::Knobs::latency
//! [`Knobs::uplink_bytes_per_sec`]: super::Knobs::uplink_bytes_per_sec

use std::num::NonZeroU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use futures_util::{Stream, StreamExt, stream};

use super::state::Shared;

/// Largest piece of a body handed on at once: concurrent uploads then take turns on the
/// uplink in slices of a few milliseconds, as packets of several flows share a real link.
const PIECE: usize = 16 * 1024;

/// Middleware of both listeners: runs the handler, then waits the current latency before the
/// reply goes out.
pub(crate) async fn delay_reply(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    let latency = shared.lock().knobs.latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    response
}

/// Middleware of create-job: its body reaches the handler no faster than the shared uplink
/// allows (unchanged when the uplink is unlimited, checked per piece so a change of knobs
/// applies at once).
pub(crate) async fn throttle_body(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let request = request.map(|body| Body::from_stream(throttled(body, shared)));
    next.run(request).await
}

/// `body`, each piece released once the uplink has carried it.
fn throttled(
    body: Body,
    shared: Arc<Shared>,
) -> impl Stream<Item = Result<Bytes, axum::Error>> + Send + 'static {
    body.into_data_stream()
        .flat_map(|chunk| match chunk {
            Ok(bytes) => stream::iter(pieces(bytes).into_iter().map(Ok)).left_stream(),
            Err(error) => stream::iter([Err(error)]).right_stream(),
        })
        .then(move |piece| {
            let shared = shared.clone();
            async move {
                if let Ok(bytes) = &piece {
                    let rate = shared.lock().knobs.uplink_bytes_per_sec;
                    if let Some(rate) = rate {
                        let until = shared.uplink.reserve(bytes.len(), rate, Instant::now());
                        tokio::time::sleep_until(until.into()).await;
                    }
                }
                piece
            }
        })
}

/// `bytes` cut into pieces of at most [`PIECE`] bytes (no copy).
fn pieces(mut bytes: Bytes) -> Vec<Bytes> {
    let mut out = Vec::with_capacity(bytes.len().div_ceil(PIECE));
    while bytes.len() > PIECE {
        out.push(bytes.split_to(PIECE));
    }
    if !bytes.is_empty() {
        out.push(bytes);
    }
    out
}

/// The one uplink all create-job bodies share: a schedule of when it is next free. Each piece
/// takes its turn after the pieces before it, so together they pass at the set rate; an idle
/// uplink saves nothing up (no burst after a pause).
#[derive(Debug, Default)]
pub(crate) struct Uplink {
    free_at: Mutex<Option<Instant>>,
}

impl Uplink {
    /// Books `bytes` at `rate` bytes/s from `now` on (or after the pieces booked before) and
    /// returns when they have passed.
    pub(crate) fn reserve(&self, bytes: usize, rate: NonZeroU64, now: Instant) -> Instant {
        let mut free_at = self.free_at.lock().unwrap_or_else(PoisonError::into_inner);
        let start = free_at.map_or(now, |at| at.max(now));
        let end = start + transfer_time(bytes, rate);
        *free_at = Some(end);
        end
    }
}

/// How long `bytes` take at `rate` bytes/s (rounded up to the nanosecond).
fn transfer_time(bytes: usize, rate: NonZeroU64) -> Duration {
    let nanos = (bytes as u128 * 1_000_000_000).div_ceil(u128::from(rate.get()));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(bytes_per_sec: u64) -> NonZeroU64 {
        NonZeroU64::new(bytes_per_sec).expect("non-zero")
    }

    #[test]
    fn pieces_cover_the_bytes_in_order_and_none_is_larger_than_a_piece() {
        let bytes = Bytes::from((0..40_000u32).map(|i| i as u8).collect::<Vec<_>>());
        let cut = pieces(bytes.clone());
        assert_eq!(cut.len(), 3);
        assert!(cut.iter().all(|p| !p.is_empty() && p.len() <= PIECE));
        assert_eq!(cut.concat(), bytes.to_vec());
        assert!(pieces(Bytes::new()).is_empty());
    }

    #[test]
    fn bookings_follow_each_other_at_the_rate() {
        let uplink = Uplink::default();
        let t0 = Instant::now();
        let first = uplink.reserve(1000, rate(10_000), t0);
        let second = uplink.reserve(500, rate(10_000), t0);
        assert_eq!(first - t0, Duration::from_millis(100));
        assert_eq!(second - t0, Duration::from_millis(150));
    }

    #[test]
    fn an_idle_uplink_saves_nothing_up() {
        let uplink = Uplink::default();
        let t0 = Instant::now();
        uplink.reserve(1000, rate(10_000), t0);
        let later = t0 + Duration::from_secs(5);
        assert_eq!(
            uplink.reserve(1000, rate(10_000), later) - later,
            Duration::from_millis(100)
        );
    }
}
