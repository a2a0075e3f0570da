//! A real ledger in a temp dir for the verbs' tests, with helpers to record inputs and take
//! images to `done`.

use std::path::PathBuf;

use eraser_store::{Content, FoundInput, Ledger, Location, Root, ScanBatch, Sha256};
use sha2::Digest as _;

/// The sha256 of `bytes`.
pub(super) fn sha_of(bytes: &[u8]) -> Sha256 {
    Sha256(sha2::Sha256::digest(bytes).into())
}

/// A real ledger in a temp dir with helpers to put images in the `done` state.
pub(super) struct Fixture {
    pub(super) dir: tempfile::TempDir,
    pub(super) ledger: Ledger,
    pub(super) run: eraser_store::RunId,
}

impl Fixture {
    pub(super) async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let ledger = Ledger::open(&Location::file(dir.path().join("ledger.db")))
            .await
            .expect("open ledger");
        let run = ledger
            .begin_run("eraser run test", &dir.path().join("out"))
            .await
            .expect("begin run");
        Self { dir, ledger, run }
    }

    pub(super) fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Records inputs `names` (all holding `content`) with planned outputs in `out/`.
    pub(super) async fn record(&self, names: &[&str], content: &[u8]) -> Sha256 {
        let sha = sha_of(content);
        let inputs = names
            .iter()
            .map(|name| FoundInput {
                path: self.path(&format!("in/{name}.png")),
                size: content.len() as u64,
                mtime_ns: 1,
                content: Some(Content {
                    sha256: sha,
                    format: "png",
                }),
                planned_output: self.path(&format!("out/{name}.jpg")),
            })
            .collect();
        let batch = ScanBatch {
            roots: vec![Root::Folder(self.path("in"))],
            inputs,
            rejected: Vec::new(),
        };
        let scan = self.ledger.begin_scan(self.run).await.expect("begin scan");
        scan.record(&batch).await.expect("record inputs");
        sha
    }

    /// Takes every `new` image through upload to `done`, writing `result` for each input
    /// (the first input's file is the stored result).
    pub(super) async fn finish_all(&self, names_by_sha: &[(Sha256, &[&str])], result: &[u8]) {
        let claims = self
            .ledger
            .claim_for_upload(self.run, 100)
            .await
            .expect("claim");
        assert_eq!(claims.len(), names_by_sha.len());
        std::fs::create_dir_all(self.path("out")).expect("mkdir out");
        for (n, (sha, names)) in names_by_sha.iter().enumerate() {
            self.ledger
                .mark_processing(self.run, sha, &format!("job-{n}"))
                .await
                .expect("processing");
            let stored = self.path(&format!("out/{}.jpg", names[0]));
            let done = eraser_store::DoneRecord {
                output_url: format!("http://127.0.0.1:9/{n}.jpg"),
                output_path: stored,
                output_sha256: Some(sha_of(result)),
                output_size: result.len() as u64,
                ..Default::default()
            };
            self.ledger.mark_done(sha, &done).await.expect("done");
            for name in *names {
                let out = self.path(&format!("out/{name}.jpg"));
                std::fs::write(&out, result).expect("write output");
                let input = self.path(&format!("in/{name}.png"));
                self.ledger
                    .set_input_output(self.run, &input, &out)
                    .await
                    .expect("set output");
            }
        }
    }
}
