#!/usr/bin/env bash
# What downstream users load augment's output with, in CI: a tiny full `augment run` (classes named
# with a space and an '&', a grayscale and an RGBA PNG among the colour ones), then
#   - torchvision's ImageFolder on OUTPUT and the HDF5 shards of OUTPUT_hdf5 through a torch Dataset
#     over h5py with a DataLoader of 2 workers (Debian's python3: python3-torch, -torchvision, -h5py);
#   - Hugging Face datasets' imagefolder on OUTPUT and mlcroissant on OUTPUT/croissant.json, from a
#     venv made once per machine at ${XDG_CACHE_HOME:-$HOME/.cache}/augment/loaders-venv
#     (--system-site-packages, pip install datasets mlcroissant). Where pip cannot reach the package
#     index those two print "SKIPPED: ..." and the rest still runs.
# Every loader is checked against augment's manifest.csv / metadata.jsonl / dataset.json
# (tests/downstream_loaders.py). Exit 0 only if every check that ran passed.
#   tests/downstream_loaders.sh AUGMENT_BINARY
set -euo pipefail
augment=$1
here=$(cd "$(dirname "$0")" && pwd)
checks="$here/downstream_loaders.py"
python=/usr/bin/python3
[ -x "$python" ] || python=python3
start=$SECONDS

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
input="$tmp/in"
"$python" - "$input" <<'EOF'
import os, random, sys
from PIL import Image
random.seed(7)
root = sys.argv[1]
for name, n, colour in (("big & bold", 12, (200, 60, 40)), ("small one", 6, (40, 90, 210)), ("Tiny & Co", 5, (30, 200, 60))):
    os.makedirs(os.path.join(root, name), exist_ok=True)
    for i in range(n):
        im = Image.new("RGB", (12, 12), (20 + 5 * i, 30, 40))
        for _ in range(30):
            im.putpixel((random.randrange(12), random.randrange(12)), colour)
        if name == "big & bold" and i == 3:
            im = im.convert("L")  # grayscale
        if name == "small one" and i == 2:
            im = im.convert("RGBA")
            im.putpixel((0, 0), (1, 2, 3, 100))  # a pixel that is not opaque
        im.save(os.path.join(root, name, f"{i:02d}.png"))
EOF

# The tiny run (tests/tiny_run.sh).
source "$(dirname "$0")/tiny_run.sh"
tiny_run_options "$input"
out="$tmp/out"
if ! "$augment" run --work "$tmp/work" --output "$out" "${options[@]}" > "$tmp/run.log" 2>&1; then
  echo "FAIL: augment run failed:"
  cat "$tmp/run.log"
  exit 1
fi
echo "augment run: $((SECONDS - start)) s, $(($(wc -l < "$out/manifest.csv") - 1)) images in $out"

fail=0
echo "== torchvision ImageFolder, HDF5 shards through torch.utils.data (Debian python3)"
"$python" "$checks" torch "$out" || fail=1

# The venv for datasets and mlcroissant: made once per machine, under a lock (tests may run in
# parallel); .complete marks one whose pip install finished.
venv="${XDG_CACHE_HOME:-$HOME/.cache}/augment/loaders-venv"
venv_ready() {
  [ -f "$venv/.complete" ] && "$venv/bin/python" -c "import datasets, mlcroissant" 2> /dev/null
}
setup_venv() {  # 0: ready; 1: pip cannot reach the index (why in $tmp/pip.log); 2: another failure
  mkdir -p "$(dirname "$venv")"
  exec 9> "$venv.lock"
  flock 9
  if venv_ready; then return 0; fi
  rm -rf "$venv"
  if ! "$python" -m venv --system-site-packages "$venv" > "$tmp/pip.log" 2>&1; then
    rm -rf "$venv"
    return 2
  fi
  # A bounded wait where the index does not answer (the environment may set a 180 s timeout).
  if ! "$venv/bin/python" -m pip install -q --timeout 20 --retries 2 datasets mlcroissant >> "$tmp/pip.log" 2>&1; then
    rm -rf "$venv"
    if grep -qE "NewConnectionError|Connection refused|ConnectTimeout|ConnectionError|Max retries exceeded|Temporary failure in name resolution|Name or service not known|Network is unreachable|No route to host|ProxyError|timed out|Read timed out|SSLError|No matching distribution found for (datasets|mlcroissant)" "$tmp/pip.log"; then
      return 1
    fi
    return 2
  fi
  touch "$venv/.complete"
  venv_ready || return 2
}
set +e
setup_venv
venv_status=$?
set -e
exec 9>&-
if [ "$venv_status" -eq 1 ]; then
  net_error="Failed to establish a new connection: [^')]*|Temporary failure in name resolution|Name or service not known|Network is unreachable|No route to host|timed out[^')]*|ProxyError[^')]*|SSLError[^')]*|No matching distribution found for [a-z]+"
  why=$(grep -oE "$net_error" "$tmp/pip.log" | head -n 1 || true)
  why="${PIP_INDEX_URL:-the default index}: ${why:-see the pip output}"
  echo "SKIPPED: Hugging Face datasets imagefolder check: pip cannot reach the package index to install datasets: $why"
  echo "SKIPPED: mlcroissant check of croissant.json: pip cannot reach the package index to install mlcroissant: $why"
elif [ "$venv_status" -ne 0 ]; then
  echo "FAIL: could not set up $venv (python3 -m venv --system-site-packages; pip install datasets mlcroissant):"
  tail -n 30 "$tmp/pip.log"
  fail=1
else
  # Nothing from the user's Hugging Face cache, and nothing fetched from the hub.
  export HF_HOME="$tmp/hf" HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1
  echo "== Hugging Face datasets imagefolder (venv)"
  "$venv/bin/python" "$checks" hf "$out" || fail=1
  echo "== mlcroissant (venv)"
  "$venv/bin/python" "$checks" croissant "$out" || fail=1  # mlcroissant's own warnings go to stderr
fi

if [ "$fail" -eq 0 ]; then
  echo "downstream loaders: all checks that ran passed ($((SECONDS - start)) s)"
else
  echo "downstream loaders: FAILED ($((SECONDS - start)) s)"
fi
exit "$fail"
