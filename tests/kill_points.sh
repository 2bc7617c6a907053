#!/usr/bin/env bash
# A small full run of every stage, killed (SIGKILL) at each of its renames in turn: the step by
# which every stage makes a file or folder durable. After each kill the same command is run again;
# it must end with exit 0 and outputs byte-identical to an uninterrupted run (dataset timestamps
# aside). Then tampering: a byte flipped in each kind of output and a deleted shard must each make
# `status` say which stage is stale, and `run` must restore the file.
#   tests/kill_points.sh AUGMENT_BINARY KILL_AT_RENAME_LIB [FIRST [LAST]]
set -euo pipefail
augment=$1
preload=$2
first=${3:-1}
last=${4:-0}
python=/usr/bin/python3
[ -x "$python" ] || python=python3

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
input="$tmp/in"
# Two unbalanced classes with the names users have (a space, an ampersand), colour PNGs.
"$python" - "$input" <<'EOF'
import os, random, sys
from PIL import Image
random.seed(7)
for name, n, colour in (("big & bold", 12, (200, 60, 40)), ("small one", 6, (40, 90, 210))):
    os.makedirs(os.path.join(sys.argv[1], name), exist_ok=True)
    for i in range(n):
        im = Image.new("RGB", (12, 12), (20 + 5 * i, 30, 40))
        for _ in range(30):
            x, y = random.randrange(12), random.randrange(12)
            im.putpixel((x, y), colour)
        im.save(os.path.join(sys.argv[1], name, f"{i:02d}.png"))
EOF

source "$(dirname "$0")/tiny_run.sh"
tiny_run_options "$input"

run() {  # run DIR [env...]: the whole pipeline into DIR/work and DIR/out
  local dir=$1
  shift
  env "$@" "$augment" run --work "$dir/work" --output "$dir/out" "${options[@]}" > /dev/null
}

# Content of everything a run delivers, one "path sha256" line per file. Text files are compared
# with what differs between two uninterrupted runs blanked: dates, the emit's random id, timings
# ("seconds", the report's "Written by augment evaluate in N s") and the run's own folder in paths.
fingerprint() {
  local dir=$1
  "$python" - "$dir" <<'EOF'
import hashlib, json, os, re, sys
root = sys.argv[1]
volatile = re.compile(r'"(created|datePublished|dateCreated|dateModified|emit_id)": *"[^"]*"|"seconds": *([-0-9.e+]+|\{[^}]*\})')
report_time = re.compile(r'Written by augment evaluate in [0-9]+ s')
for top in ("out", "out_report", "out_hdf5"):
    base = os.path.join(root, top)
    for d, _, files in sorted(os.walk(base)):
        for f in sorted(files):
            p = os.path.join(d, f)
            data = open(p, "rb").read()
            if f == "croissant.json":  # it holds dataset.json's digest and size; dataset.json has dates and timings
                doc = json.loads(data)
                for entry in doc.get("distribution", []):
                    if entry.get("contentUrl") == "dataset.json":
                        entry["sha256"] = entry["contentSize"] = ""
                data = json.dumps(doc).encode()
            if f.endswith((".json", ".jsonl", ".csv", ".html")) or f == ".augment-dataset":
                text = data.decode("utf-8").replace(root + "/", "RUN/")
                text = report_time.sub("Written by augment evaluate in N s", text)
                data = volatile.sub(lambda m: m.group(0).split(":")[0] + ": 0", text).encode()
            print(os.path.relpath(p, root), hashlib.sha256(data).hexdigest())
EOF
}

fail=0
check_same() {  # check_same DIR WHAT: 0 when DIR delivered what the uninterrupted run did
  if ! diff <(fingerprint "$tmp/ref") <(fingerprint "$1") > "$tmp/diff.txt"; then
    echo "FAIL: $2: outputs differ from the uninterrupted run:"
    cat "$tmp/diff.txt"
    fail=1
    return 1
  fi
}

# The uninterrupted run, counting its renames.
run "$tmp/ref" LD_PRELOAD="$preload" AUGMENT_TEST_RENAME_LOG="$tmp/renames.log"
total=$(wc -l < "$tmp/renames.log")
echo "an uninterrupted run renames $total times"
[ "$total" -ge 20 ] || { echo "FAIL: too few renames seen ($total): is the preload library working?"; exit 1; }
# Byte-identical outputs from a second uninterrupted run: the comparison below means something.
run "$tmp/again"
check_same "$tmp/again" "a second uninterrupted run" || exit 1
rm -rf "$tmp/again"

[ "$last" -gt 0 ] || last=$total
for ((k = first; k <= last; k++)); do
  what=$(sed -n "${k}p" "$tmp/renames.log" | sed "s|$tmp/||g")
  dir="$tmp/k$k"
  set +e
  run "$dir" LD_PRELOAD="$preload" AUGMENT_TEST_KILL_AT_RENAME="$k" 2> "$tmp/killed.log"
  code=$?
  run "$dir" 2> "$tmp/rerun.log"
  rerun=$?
  set -e
  if [ "$code" -ne 137 ]; then
    echo "FAIL: kill at rename $k ($what): the run exited $code, not killed"
    fail=1
  elif [ "$rerun" -ne 0 ]; then
    echo "FAIL: kill at rename $k ($what): the rerun exited $rerun:"
    cat "$tmp/rerun.log"
    fail=1
  else
    check_same "$dir" "kill at rename $k ($what)" && echo "ok: killed at rename $k ($what), rerun exit 0, outputs identical"
  fi
  rm -rf "$dir"
done

# Tampering with a finished run: status names the stale stage, run restores the file. The cases
# take turns on one finished run (a copy elsewhere would be another work dir), each restored by
# its run before the next.
run "$tmp/t"
tamper() {  # tamper STAGE DESCRIPTION COMMAND...
  local stage=$1 what=$2
  shift 2
  (cd "$tmp/t" && "$@")
  local line
  line=$("$augment" status --work "$tmp/t/work" --output "$tmp/t/out" "${options[@]}" | grep "^$stage ")
  if [[ "$line" != *stale* ]]; then
    echo "FAIL: $what: status says: $line"
    fail=1
    return
  fi
  if ! run "$tmp/t" 2> "$tmp/rerun.log"; then
    echo "FAIL: $what: run failed:"
    cat "$tmp/rerun.log"
    fail=1
    return
  fi
  check_same "$tmp/t" "$what" && echo "ok: $what: $(echo "$line" | sed 's/  */ /g'); run restored it"
}
flip() {  # flip FILE: one byte in the middle changes, the size stays
  "$python" -c 'import sys; p=sys.argv[1]; b=bytearray(open(p,"rb").read()); b[len(b)//2]^=0x40; open(p,"wb").write(b)' "$1"
}
export -f flip
export python
tamper sample "a byte flipped in a PNG of the sample store" bash -c 'flip "$(find work/sample/images -name "*.png" | sort | head -n 1)"'
tamper emit "a byte flipped in a synthetic image of the output" bash -c 'flip "$(find out -name "synthetic_*.png" | sort | head -n 1)"'
tamper emit "a byte flipped in the output's manifest.csv" flip out/manifest.csv
tamper emit "a real image deleted from the output" bash -c 'rm "$(find out -name "real_*" | sort | head -n 1)"'
tamper emit "the report page deleted" rm out_report/index.html
tamper export "a shard deleted" bash -c 'rm "$(ls out_hdf5/*.h5 | head -n 1)"'
tamper export "a byte flipped in a shard" bash -c 'flip "$(ls out_hdf5/*.h5 | tail -n 1)"'
tamper cache "a byte flipped in the image cache" flip work/cache/train.h5

[ "$fail" -eq 0 ] && echo "kill points $first..$last of $total and the tamper cases: all passed"
exit "$fail"
