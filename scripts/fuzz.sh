#!/usr/bin/env bash
# The fuzzers, each for a bounded time (default 60 s per target, as CI runs them):
#   scripts/fuzz.sh [SECONDS]
# decode_image: libFuzzer through cargo fuzz (nightly Rust) on src/image_decode.rs, seeded
#   with a file of every format (fuzz/seeds/decode_image);
# checkpoint: atheris on AugVAE/BiART.from_checkpoint, seeded with small valid files.
# The corpora grow across runs under $LVERSE_CACHE/fuzz. Each target first replays the
# inputs of its past findings (fuzz/regressions/TARGET/). A new finding stops its target,
# is saved under fuzz/artifacts/ and fails the run: fix it and keep the input under
# fuzz/regressions/ (and a test of the case under tests/).
# Needs the venv of scripts/dev.sh setup (active, or at $LVERSE_VENV).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${LVERSE_CACHE:-$HOME/.cache/lverse}"
SECONDS_PER_TARGET="${1:-60}"
CORPUS="$CACHE/fuzz"
mkdir -p "$CORPUS/decode_image" "$CORPUS/checkpoint" "$ROOT/fuzz/artifacts"
if [ -z "${VIRTUAL_ENV:-}" ]; then
  # shellcheck disable=SC1091
  source "${LVERSE_VENV:-$CACHE/venv}/bin/activate"
fi

# cargo fuzz builds with nightly-only flags (-Zsanitizer=address).
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "== installing the nightly Rust toolchain (cargo fuzz needs it)"
  rustup toolchain install nightly --profile minimal \
    || { echo "fuzz: no nightly Rust toolchain and none could be installed" >&2; exit 1; }
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install --quiet --locked cargo-fuzz
fi

replay() {
  local target="$1"
  shift
  local cases=("$ROOT/fuzz/regressions/$target"/*)
  [ -e "${cases[0]}" ] || return 0
  "$@" "${cases[@]}" >"$CORPUS/$target-replay.log" 2>&1 \
    || { tail -40 "$CORPUS/$target-replay.log"; echo "fuzz $target: a past finding fails again"; exit 1; }
  echo "fuzz $target: ${#cases[@]} past findings replayed"
}

# libFuzzer's last line, "Done N runs in T second(s)", carries the count.
report() {
  local target="$1" log="$2"
  local done_line
  done_line="$(grep -a '^Done [0-9]* runs' "$log" | tail -1 || true)"
  echo "fuzz $target: ${done_line:-no summary line (see $log)}"
}

echo "== fuzz decode_image (${SECONDS_PER_TARGET} s)"
cd "$ROOT/fuzz"
# Its own target directory: the sanitizer flags would rebuild the crate's cache otherwise.
CARGO_TARGET_DIR="$CACHE/fuzz-target" cargo +nightly fuzz build decode_image
# The built target replays files given as arguments (cargo fuzz run would add its corpus
# directory, and libFuzzer takes a mix of files and directories for directories).
triple="$(rustc +nightly -vV | sed -n 's/^host: //p')"
replay decode_image "$CACHE/fuzz-target/$triple/release/decode_image"
log="$CORPUS/decode_image.log"
CARGO_TARGET_DIR="$CACHE/fuzz-target" cargo +nightly fuzz run decode_image \
  "$CORPUS/decode_image" "$ROOT/fuzz/seeds/decode_image" -- \
  -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=4096 \
  -artifact_prefix="$ROOT/fuzz/artifacts/decode_image-" -print_final_stats=1 >"$log" 2>&1 \
  || { tail -40 "$log"; echo "fuzz decode_image: FOUND A FAILURE (saved under fuzz/artifacts/)"; exit 1; }
report decode_image "$log"

echo "== fuzz checkpoint (${SECONDS_PER_TARGET} s)"
cd "$ROOT"
seeds="$CACHE/fuzz/checkpoint-seeds"
[ -d "$seeds" ] || python fuzz/checkpoint.py --seeds "$seeds"
replay checkpoint python fuzz/checkpoint.py
log="$CORPUS/checkpoint.log"
python fuzz/checkpoint.py "$CORPUS/checkpoint" "$seeds" \
  -max_total_time="$SECONDS_PER_TARGET" -timeout=20 -rss_limit_mb=4096 \
  -artifact_prefix="$ROOT/fuzz/artifacts/checkpoint-" -print_final_stats=1 >"$log" 2>&1 \
  || { tail -40 "$log"; echo "fuzz checkpoint: FOUND A FAILURE (saved under fuzz/artifacts/)"; exit 1; }
report checkpoint "$log"
