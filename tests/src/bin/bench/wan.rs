//! The `wan` row: a full run over a network like a user's (a delay before every reply, one
//! uplink shared by all uploads) against the least time any client could take under the same
//! knobs, and what the run's own figures say limits it.

use std::num::NonZeroU64;
use std::time::Duration;

use eraser_tests::emulator::{Counters, Emulator, Knobs};

use crate::context::Bin;
use crate::data;
use crate::service_rows::{FullRun, full_run};
use crate::table::{Row, Verdict, secs, thousands};
use crate::{BenchResult, Ctx, progress};

pub const WAN_TARGET: &str = "≤ 1.1 × ideal";

pub const WAN_ABOUT: &str = "A full `eraser run -j 32` over `wan_images` distinct JPEGs of \
    50,000 bytes against the emulator with a processing time of 2 s, 150 ms before every reply \
    (API and CDN) and one uplink of 4 MB/s shared by all create-job bodies; whole process. The \
    reference is the least time any client could take under those knobs, taking a job slot of \
    `-j` from an upload's first byte to the get-job answer that says done, as eraser does: per \
    image on a slot at least D = S/U (its body alone on the uplink) + P (processing, which \
    starts when the body has arrived, so the create-job reply's delay overlaps it) + L (the \
    get-job round trip); some slot carries W = ⌈N/j⌉ images, and since the r images of the \
    last wave each need a slot carrying W images, whose first bodies share the uplink, one of \
    those slots starts (r−1)·S/U late; the last result's download adds L. So the ideal is \
    max(W·D + (r−1)·S/U + L, N·S/U + P + 2L), the second term being the uplink's own bound. \
    A client reaches it only by keeping the bodies apart on the uplink: bodies sent all at \
    once share it and end together, and so do their jobs, which makes every wave pay j·S/U \
    instead of the first one only. Target: at most 1.1 × the ideal. The verdict says what the \
    emulator saw: create-job requests in flight (at most, and their mean time against S/U + L \
    for one alone), the upload rate they allow against the j ÷ D per second that `-j` needs \
    (Little's law), and jobs processing at once.";

/// The knobs and the work of a `wan` run, and the ideal they allow.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Network {
    /// N: images, all distinct.
    pub images: u64,
    /// j: eraser's `-j`, jobs in flight.
    pub jobs: u64,
    /// S: bytes of each image (each create-job body carries at least these).
    pub image_bytes: u64,
    /// U: the shared uplink, bytes per second.
    pub uplink: NonZeroU64,
    /// P: the emulator's processing time.
    pub processing: Duration,
    /// L: the emulator's delay before every reply.
    pub latency: Duration,
}

/// The row's network: 150 ms, 4 MB/s, processing 2 s, `-j 32`, images of 50,000 bytes.
pub fn network(images: usize) -> Network {
    Network {
        images: images as u64,
        jobs: 32,
        image_bytes: 50_000,
        uplink: NonZeroU64::new(4_000_000).unwrap_or(NonZeroU64::MIN),
        processing: Duration::from_secs(2),
        latency: Duration::from_millis(150),
    }
}

impl Network {
    /// S/U: one image's body alone on the uplink.
    fn upload(&self) -> Duration {
        let nanos = u128::from(self.image_bytes) * 1_000_000_000 / u128::from(self.uplink.get());
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// The wait after a body has arrived before a get-job can answer done: the processing, or
    /// the create-job reply (the job id) if that comes later.
    fn wait(&self) -> Duration {
        self.processing.max(self.latency)
    }

    /// D: the least time one image holds a job slot.
    pub fn slot(&self) -> Duration {
        self.upload() + self.wait() + self.latency
    }

    /// W = ⌈N/j⌉.
    fn waves(&self) -> u64 {
        self.images.div_ceil(self.jobs.max(1))
    }

    /// r: the images of the last wave, 1..=j.
    fn last_wave(&self) -> u64 {
        self.images - (self.waves().saturating_sub(1)) * self.jobs.max(1)
    }

    /// How late the last of the fullest slots can start: its first body waits for the others'
    /// on the uplink, at most a slot's time (beyond that another slot would carry one image
    /// more, which costs D).
    fn stagger(&self) -> Duration {
        (self.upload() * u32::try_from(self.last_wave().saturating_sub(1)).unwrap_or(u32::MAX))
            .min(self.slot())
    }

    /// W·D + (r−1)·S/U + L: the slots' bound.
    pub fn wave_bound(&self) -> Duration {
        self.slot() * u32::try_from(self.waves()).unwrap_or(u32::MAX)
            + self.stagger()
            + self.latency
    }

    /// N·S/U + P + 2L: every body through the uplink, then the last one's processing, its
    /// get-job and its download.
    pub fn uplink_bound(&self) -> Duration {
        self.upload() * u32::try_from(self.images).unwrap_or(u32::MAX)
            + self.wait()
            + 2 * self.latency
    }

    /// The least time any client could take: the larger bound.
    pub fn ideal(&self) -> Duration {
        self.wave_bound().max(self.uplink_bound())
    }

    /// Uploads per second that keep `-j` slots busy: j ÷ D (Little's law).
    pub fn needed_upload_rate(&self) -> f64 {
        self.jobs as f64 / self.slot().as_secs_f64().max(1e-9)
    }

    /// The ideal with its formula and figures, for the reference cell.
    pub fn formula(&self) -> String {
        let p = if self.processing >= self.latency {
            "P"
        } else {
            "L"
        };
        let stagger = if self.stagger() < self.slot() {
            "(r−1)·S/U"
        } else {
            "D"
        };
        let waves = format!("W·D + {stagger} + L = {}", secs(self.wave_bound()));
        let uplink = format!("N·S/U + {p} + 2L = {}", secs(self.uplink_bound()));
        let (bound, other) = if self.wave_bound() >= self.uplink_bound() {
            (waves, uplink)
        } else {
            (uplink, waves)
        };
        format!(
            "ideal {bound}, D = S/U + {p} + L = {}, W = ⌈{}/{}⌉ = {}, r = {}, S/U = {} \
             ({} B at {} B/s), P = {}, L = {} (the other bound: {other})",
            secs(self.slot()),
            self.images,
            self.jobs,
            self.waves(),
            self.last_wave(),
            secs(self.upload()),
            thousands(self.image_bytes),
            thousands(self.uplink.get()),
            secs(self.processing),
            secs(self.latency),
        )
    }
}

/// What the emulator saw of one run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seen {
    pub wall: Duration,
    /// Most create-job requests open at once.
    pub uploads_open: u64,
    /// Their total open time.
    pub upload_time: Duration,
    pub create_job_requests: u64,
    /// Most jobs processing at once.
    pub processing: u64,
    pub get_jobs: u64,
    pub jobs: u64,
    /// From eraser's summary: requests it sent again, and the jobs-in-flight limit it settled
    /// at.
    pub retries: u64,
    pub job_limit: u64,
}

impl Seen {
    fn from(run: &FullRun, c: &Counters) -> Seen {
        Seen {
            wall: run.measured.wall,
            retries: run.summary.retries,
            job_limit: run.summary.concurrency_limit,
            uploads_open: c.max_create_jobs_open,
            upload_time: c.create_job_time,
            create_job_requests: c.create_job_requests,
            processing: c.max_in_flight_seen,
            get_jobs: c.get_jobs,
            jobs: c.create_jobs,
        }
    }

    /// The mean time a create-job request was open.
    fn mean_upload(&self) -> Duration {
        self.upload_time / u32::try_from(self.create_job_requests.max(1)).unwrap_or(u32::MAX)
    }

    /// Uploads per second the most requests in flight allow at their mean time.
    fn upload_rate(&self) -> f64 {
        self.uploads_open as f64 / self.mean_upload().as_secs_f64().max(1e-9)
    }
}

/// The verdict's note: the run's figures, led by what limits it when the target is missed:
/// too few uploads in flight for the rate `-j` needs, else uploads slowed by sharing the
/// uplink (each create-job much longer than one alone takes), else neither.
pub fn limit_note(net: &Network, seen: &Seen, met: bool) -> String {
    let alone = net.upload() + net.latency;
    let figures = format!(
        "create-job requests in flight at most {} ({:.1} on average, {} each, {} alone) → up \
         to {:.1} uploads/s, where -j {} needs {:.1}/s ({} ÷ D); at most {} of {} jobs \
         processing at once; {:.2} get-job/job; eraser: job limit {}, {} retries",
        seen.uploads_open,
        seen.upload_time.as_secs_f64() / seen.wall.as_secs_f64().max(1e-9),
        secs(seen.mean_upload()),
        secs(alone),
        seen.upload_rate(),
        net.jobs,
        net.needed_upload_rate(),
        net.jobs,
        seen.processing,
        net.jobs,
        seen.get_jobs as f64 / seen.jobs.max(1) as f64,
        seen.job_limit,
        seen.retries,
    );
    if met {
        figures
    } else if seen.upload_rate() < net.needed_upload_rate() {
        format!("limit: the uploads in flight: {figures}")
    } else if seen.mean_upload().as_secs_f64() > 1.5 * alone.as_secs_f64() {
        format!("limit: uploads slowed by sharing the uplink: {figures}")
    } else {
        format!("limit: not the uploads: {figures}")
    }
}

/// `wan_images` photo-sized JPEGs through the emulator's network knobs with `-j 32`: wall time
/// against [`Network::ideal`].
pub fn wan(ctx: &mut Ctx) -> BenchResult<Row> {
    let net = network(ctx.sizes.wan_images);
    let n = ctx.sizes.wan_images;
    progress(&format!(
        "writing {n} JPEGs of {} bytes",
        thousands(net.image_bytes)
    ));
    let image_bytes = usize::try_from(net.image_bytes)?;
    let tree = data::photo_tree(&ctx.fresh("wan-tree"), n, image_bytes, 6)?;
    data::sync();
    progress(&format!(
        "eraser run -j {}, processing {}, latency {}, uplink {} B/s",
        net.jobs,
        secs(net.processing),
        secs(net.latency),
        thousands(net.uplink.get())
    ));
    let both = ctx.both(|ctx, bin: Bin| {
        let emu = Emulator::spawn(Knobs {
            processing_time: net.processing,
            latency: net.latency,
            uplink_bytes_per_sec: Some(net.uplink),
            ..Knobs::default()
        })?;
        let jobs = usize::try_from(net.jobs)?;
        let run = full_run(ctx, bin, &emu, &tree, jobs)?;
        Ok(Seen::from(&run, &emu.counters()))
    })?;
    let ideal = net.ideal();
    let ratio = |seen: &Seen| seen.wall.as_secs_f64() / ideal.as_secs_f64().max(1e-9);
    let seen = both.main;
    let met = ratio(&seen) <= 1.1;
    Ok(Row {
        name: "wan",
        measured: format!(
            "{} for {n} images of {} B, -j {}",
            secs(seen.wall),
            thousands(net.image_bytes),
            net.jobs
        ),
        reference: net.formula(),
        ratio: format!("{:.2} × ideal", ratio(&seen)),
        baseline: both.baseline_cell(|seen| {
            format!(
                "{} · {:.2} × ideal; ≤ {} create-jobs in flight",
                secs(seen.wall),
                ratio(seen),
                seen.uploads_open
            )
        }),
        target: WAN_TARGET,
        verdict: Verdict::check(met, limit_note(&net, &seen, met)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn the_rows_ideal_is_five_waves_of_a_slot_plus_the_first_waves_uploads_and_a_download() {
        let net = network(160);
        // D = 12.5 ms + 2 s + 150 ms; 5 × D + 31 × 12.5 ms + 150 ms.
        assert_eq!(net.slot(), Duration::from_micros(2_162_500));
        assert_eq!(net.wave_bound(), Duration::from_micros(11_350_000));
        assert_eq!(net.uplink_bound(), ms(4_300));
        assert_eq!(net.ideal(), Duration::from_micros(11_350_000));
    }

    #[test]
    fn a_slow_uplink_makes_the_uplink_the_bound() {
        let net = Network {
            uplink: NonZeroU64::new(100_000).expect("non-zero"),
            ..network(160)
        };
        // 160 × 0.5 s + 2 s + 2 × 150 ms.
        assert_eq!(net.ideal(), ms(82_300));
        assert!(
            net.formula().starts_with("ideal N·S/U + P + 2L = 82.30 s"),
            "{}",
            net.formula()
        );
    }

    #[test]
    fn one_image_more_than_the_slots_is_a_second_wave_without_a_stagger() {
        let net = network(33);
        assert_eq!(net.last_wave(), 1);
        assert_eq!(net.ideal(), net.slot() * 2 + ms(150));
    }

    #[test]
    fn a_latency_above_the_processing_time_is_waited_for_instead() {
        let net = Network {
            processing: ms(100),
            ..network(1)
        };
        assert_eq!(
            net.slot(),
            Duration::from_micros(12_500) + ms(150) + ms(150)
        );
        assert!(
            net.formula().contains("D = S/U + L + L"),
            "{}",
            net.formula()
        );
    }

    #[test]
    fn needing_more_uploads_than_the_requests_in_flight_allow_names_them_as_the_limit() {
        let net = network(160);
        let seen = Seen {
            wall: ms(15_800),
            uploads_open: 2,
            upload_time: ms(160 * 165),
            create_job_requests: 160,
            processing: 29,
            get_jobs: 320,
            jobs: 160,
            retries: 0,
            job_limit: 32,
        };
        let note = limit_note(&net, &seen, false);
        assert!(note.starts_with("limit: the uploads in flight: "), "{note}");
        assert!(
            note.contains("up to 12.1 uploads/s, where -j 32 needs 14.8/s"),
            "{note}"
        );
        assert!(note.contains("2.00 get-job/job"), "{note}");
    }

    fn seen(uploads_open: u64, each: Duration) -> Seen {
        Seen {
            wall: ms(14_000),
            uploads_open,
            upload_time: each * 160,
            create_job_requests: 160,
            processing: 32,
            get_jobs: 800,
            jobs: 160,
            retries: 0,
            job_limit: 32,
        }
    }

    #[test]
    fn uploads_much_slower_than_one_alone_are_named_as_the_limit() {
        let note = limit_note(&network(160), &seen(32, ms(550)), false);
        assert!(
            note.starts_with("limit: uploads slowed by sharing the uplink"),
            "{note}"
        );
        assert!(note.contains("550.0 ms each, 162.5 ms alone"), "{note}");
    }

    #[test]
    fn enough_uploads_in_flight_at_their_own_speed_are_not_named_as_the_limit() {
        let net = network(160);
        let quick = seen(16, ms(170));
        assert!(limit_note(&net, &quick, false).starts_with("limit: not the uploads: "));
        assert!(!limit_note(&net, &quick, true).starts_with("limit"));
    }
}
