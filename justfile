# Recipes for people; the README's two commands and .ci/run need cargo alone.

export SQLX_OFFLINE := "true"

# Build the eraser binary (release).
build:
    cargo build --release

# Run every test (the README's test command).
test:
    cargo test --workspace

# Formatting and lints, as CI runs them.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# Regenerate the sqlx offline query data in .sqlx/ (both backends) after changing a query or a
# migration; starts its own throwaway PostgreSQL unless ERASER_TEST_POSTGRES names a server.
sqlx-prepare:
    .ci/sqlx-prepare

# Start the emulator and run eraser on a few generated images (ledger and output in ./demo).
demo:
    cargo build --release --workspace
    cargo run --release -p eraser-tests --bin demo

# The benchmark tables, the ledger's then eraser's, which also goes into docs/performance.md
# (args: --quick, --rows wan,status, --baseline OTHER_ERASER --baseline-label COMMIT).
bench *args:
    #!/usr/bin/env bash
    set -euo pipefail
    # The status and export rows need the sqlite3 CLI; without it they print "skipped".
    if ! command -v sqlite3 >/dev/null && command -v apt-get >/dev/null; then
      sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
      $sudo apt-get install -y sqlite3 || echo "bench: sqlite3 not installed; its rows are skipped" >&2
    fi
    cargo bench -p eraser-store --bench ledger
    cargo build --release --workspace
    cargo run --release -p eraser-tests --bin bench -- --write docs/performance.md {{args}}

# Fuzz each target for a bounded time (stable toolchain via RUSTC_BOOTSTRAP). New inputs go to
# fuzz/target/corpus/<target> (ignored); the committed seeds in fuzz/corpus/<target> are only read.
fuzz seconds="60":
    #!/usr/bin/env bash
    set -euo pipefail
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
    cd fuzz
    export RUSTC_BOOTSTRAP=1
    for t in $(cargo fuzz list); do
      mkdir -p "target/corpus/$t"
      dict=()
      case "$t" in *_reply) dict=(-dict=dict/reply.dict) ;; esac
      cargo fuzz run "$t" "target/corpus/$t" "corpus/$t" -- -max_total_time={{seconds}} "${dict[@]}"
    done

# The long soak test: 10,000 images, every fault on, killed and resumed.
soak:
    cargo test --release -p eraser-tests --test e2e -- --ignored soak --nocapture
