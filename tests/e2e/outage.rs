//! The service unreachable mid-run (network loss, service down): once uploads go unanswered even
//! after retries, the run stops submitting and exits 3 without marking any image failed for the
//! outage; the rerun once the service is back completes, paying once for each image. A service
//! that cannot even be connected to for a few seconds does not stop the run; one that stays out
//! of reach for `--outage-timeout` does.

use std::io::ErrorKind;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eraser_tests::emulator::{Emulator, Knobs};

use crate::util::{
    Expected, Finished, PROCESS_TIMEOUT, Running, TestDir, assert_each_uploaded_once,
    assert_outputs_exactly, emulator, num, wait_for, write_unique,
};

const IMAGES: u64 = 12;

/// Jobs taking 2 s; once two are accepted, every API connection is dropped.
fn run_into_an_outage() -> (Emulator, TestDir, Expected, Vec<String>, Finished) {
    let knobs = Knobs {
        processing_time: Duration::from_secs(2),
        ..Knobs::default()
    };
    let emu = emulator(knobs.clone());
    let td = TestDir::new();
    let mut expected = Expected::new();
    let shas = write_unique(&td, "o", 800, IMAGES, &mut expected);
    let running = Running::start(&mut td.run_cmd(
        &emu,
        &[&td.inputs()],
        &td.out(),
        &["-j", "4", "--upload-concurrency", "1"],
    ));
    wait_for("two jobs accepted", PROCESS_TIMEOUT, || {
        emu.counters().create_jobs >= 2
    });
    emu.set_knobs(Knobs {
        p_drop: 1.0,
        ..knobs
    });
    let finished = running.wait(PROCESS_TIMEOUT);
    (emu, td, expected, shas, finished)
}

#[test]
fn an_unreachable_service_stops_the_run_with_exit_3_and_no_image_failed() {
    let (emu, td, _expected, _shas, finished) = run_into_an_outage();

    let summary = finished.expect_code(3).json();

    assert_eq!(summary["end"], "unavailable");
    let accepted = emu.counters().create_jobs;
    emu.set_knobs(Knobs::default());
    let status = td.status(&emu);
    assert_eq!(num(&status, "/images/failed"), 0, "status {status}");
    assert_eq!(num(&status, "/images/uploading"), 0, "status {status}");
    assert_eq!(
        num(&status, "/images/processing") + num(&status, "/images/done"),
        accepted,
        "every accepted job kept for the next run: status {status}"
    );
}

#[test]
fn a_rerun_after_an_outage_completes_and_pays_once_per_image() {
    let (emu, td, expected, shas, finished) = run_into_an_outage();
    finished.expect_code(3);
    emu.set_knobs(Knobs::default());

    td.run(&emu, &[&td.inputs()], &td.out(), &["-j", "4"])
        .expect_code(0);

    assert_each_uploaded_once(&emu.counters(), &shas);
    assert_outputs_exactly(&td.out(), &expected);
}

/// A TCP relay to the emulator's API on a port of its own that can go away: while down nothing
/// listens there (connections are refused, as when the service's host is down) and the
/// connections it carried are cut.
struct Relay {
    port: u16,
    up: Arc<AtomicBool>,
    carried: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("relay binds");
        let port = listener.local_addr().expect("relay address").port();
        let up = Arc::new(AtomicBool::new(true));
        let carried = Arc::new(Mutex::new(Vec::new()));
        let (flag, streams) = (Arc::clone(&up), Arc::clone(&carried));
        std::thread::spawn(move || {
            let mut listener = Some(listener);
            loop {
                if !flag.load(Ordering::SeqCst) {
                    listener = None;
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                let Some(l) = &listener else {
                    listener = TcpListener::bind(("127.0.0.1", port)).ok();
                    continue;
                };
                l.set_nonblocking(true).expect("nonblocking relay");
                match l.accept() {
                    Ok((client, _)) => relay_one(client, target, &streams),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(_) => {}
                }
            }
        });
        Relay { port, up, carried }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops listening and cuts every connection it carries.
    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for stream in self.carried.lock().expect("relay streams").drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// Copies bytes both ways between `client` and a new connection to `target`.
fn relay_one(client: TcpStream, target: SocketAddr, carried: &Mutex<Vec<TcpStream>>) {
    let _ = client.set_nonblocking(false);
    let Ok(server) = TcpStream::connect(target) else {
        return;
    };
    let pipe = |mut from: TcpStream, mut to: TcpStream| {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Write);
        });
    };
    if let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
        client.try_clone(),
        server.try_clone(),
        client.try_clone(),
        server.try_clone(),
    ) {
        carried.lock().expect("relay streams").extend([c3, s3]);
        pipe(client, s2);
        pipe(server, c2);
    }
}

/// The emulator's API behind a [`Relay`].
fn relayed(emu: &Emulator) -> Relay {
    let api: SocketAddr = emu
        .api_url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("the emulator's API address");
    Relay::start(api)
}

/// A run of `images` 3-s jobs through a [`Relay`], `-j images` and `extra`, whose relay goes
/// down once eraser has recorded every job.
struct CutOff {
    emu: Emulator,
    relay: Relay,
    td: TestDir,
    expected: Expected,
    shas: Vec<String>,
    running: Running,
}

fn cut_off_once_accepted(images: u64, extra: &[&str]) -> CutOff {
    let emu = emulator(Knobs {
        processing_time: Duration::from_secs(3),
        ..Knobs::default()
    });
    let relay = relayed(&emu);
    let td = TestDir::new();
    let mut expected = Expected::new();
    let shas = write_unique(&td, "c", 900, images, &mut expected);
    let (jobs, url) = (images.to_string(), relay.url());
    let mut args = vec!["-j", &jobs, "--api-base", &url];
    args.extend_from_slice(extra);
    let running = Running::start(&mut td.run_cmd(&emu, &[&td.inputs()], &td.out(), &args));
    wait_for("every job accepted", PROCESS_TIMEOUT, || {
        emu.counters().create_jobs >= images
    });
    // Accepted is not yet known to eraser: a reply cut by the relay would leave an image whose
    // job the service created as `new` (the case no client can settle without an idempotency
    // key), and the rerun would upload it again.
    wait_for("every job id in the ledger", PROCESS_TIMEOUT, || {
        let status = td.status(&emu);
        num(&status, "/images/processing") + num(&status, "/images/done") >= images
    });
    relay.down();
    CutOff {
        emu,
        relay,
        td,
        expected,
        shas,
        running,
    }
}

#[test]
fn a_service_that_cannot_be_connected_to_for_a_few_seconds_does_not_stop_the_run() {
    let run = cut_off_once_accepted(8, &[]);
    std::thread::sleep(Duration::from_secs(8));
    run.relay.up();

    let summary = run.running.wait(PROCESS_TIMEOUT).expect_code(0).json();

    assert!(
        num(&summary, "/retries") > 0,
        "the outage was felt: {summary}"
    );
    assert_each_uploaded_once(&run.emu.counters(), &run.shas);
    assert_outputs_exactly(&run.td.out(), &run.expected);
}

#[test]
fn a_service_out_of_reach_for_the_outage_timeout_ends_the_run_and_the_rerun_pays_nothing_twice() {
    let run = cut_off_once_accepted(6, &["--outage-timeout", "2s"]);

    let finished = run.running.wait(PROCESS_TIMEOUT).expect_code(3);

    assert_eq!(finished.json()["end"], "unavailable");
    assert!(
        finished.stderr.contains("could not be reached for"),
        "stderr does not say why:\n{}",
        finished.stderr
    );
    run.relay.up();
    let (emu, td) = (&run.emu, &run.td);
    let status = td.status(emu);
    assert_eq!(num(&status, "/images/failed"), 0, "status {status}");
    assert_eq!(num(&status, "/images/new"), 0, "status {status}");
    td.run(
        emu,
        &[&td.inputs()],
        &td.out(),
        &["--api-base", &run.relay.url()],
    )
    .expect_code(0);
    assert_each_uploaded_once(&emu.counters(), &run.shas);
    assert_outputs_exactly(&td.out(), &run.expected);
}
