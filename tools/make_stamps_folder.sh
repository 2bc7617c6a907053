#!/usr/bin/env bash
# Builds a second held-out colour validation folder for augment, from another source and of
# another kind than tools/make_icon_folder.sh: the Tux Paint stamps Debian ships, photographs and
# drawings of animals, food, vehicles, buildings and more, sorted into classes by the folder Tux
# Paint files them in. It is small and unbalanced (about 600 images, the largest class about 4x
# the smallest, which has 40), and the files stay as users' folders have them: every size and
# aspect ratio, RGBA with transparent backgrounds.
#
#   bash tools/make_stamps_folder.sh /work/data/stamps
#
# Output: OUT/<class>/<subfolder>__<name>.png. Class folders (Tux Paint's top-level folders):
# animals, clothes, food, household, "plants & flowers", "town & roads", vehicles.
#
# Debian 12 packages it needs (checked at start): tuxpaint-stamps-default librsvg2-bin python3
# python3-pil.
#
# How the images are chosen:
#   - every PNG and SVG under /usr/share/tuxpaint/stamps/<class folder>/ (any depth; a stamp's
#     sounds and descriptions are skipped);
#   - PNGs are copied byte for byte (their own size, mode and aspect ratio); SVGs are rasterized
#     by rsvg-convert with their longer side at 256 px, aspect ratio kept;
#   - dropped: files that fail to open or render, and exact duplicates (same sha256 of the
#     output PNG; the first in path order stays).
# Everything is sorted and hashed, nothing random: a rerun gives the same folder, byte for byte.
# The folder is built in a temp dir next to OUT and renamed into place at the end; an existing
# OUT is replaced only then.
set -euo pipefail

if [ "$#" -ne 1 ] || [ -z "$1" ]; then
  echo "usage: $0 OUTPUT_DIR   (e.g. bash $0 /work/data/stamps)" >&2
  exit 64
fi
source "$(dirname "${BASH_SOURCE[0]}")/validation_folder.sh"
validation_folder_start "$1" tuxpaint-stamps-default librsvg2-bin python3 python3-pil

nice -n 19 "$py" - "$tmp/out" <<'PY'
import hashlib, io, os, subprocess, sys
from PIL import Image

out_dir = sys.argv[1]
STAMPS = "/usr/share/tuxpaint/stamps"
# Tux Paint's folder -> class folder. Left out: folders that file by occasion or topic rather
# than by what a stamp depicts (seasonal, symbols, hobbies, sports, medical, military, ...).
CLASSES = {"animals": "animals", "clothes": "clothes", "food": "food", "household": "household",
           "plants": "plants & flowers", "town": "town & roads", "vehicles": "vehicles"}
LONG_SIDE = 256

seen = set()
counts = {c: 0 for c in CLASSES.values()}
dropped = 0
for folder, cls in sorted(CLASSES.items()):
    os.makedirs(os.path.join(out_dir, cls))
    root = os.path.join(STAMPS, folder)
    files = []
    for d, _, names in os.walk(root):
        files += [os.path.join(d, n) for n in names if n.endswith((".png", ".svg"))]
    for path in sorted(files):
        rel = os.path.relpath(path, root)
        base = rel.rsplit(".", 1)[0].replace(os.sep, "__")
        try:
            if path.endswith(".svg"):
                with Image.open(io.BytesIO(subprocess.run(
                        ["rsvg-convert", path], check=True, capture_output=True).stdout)) as im:
                    w, h = im.size
                side = "-w" if w >= h else "-h"
                data = subprocess.run(["rsvg-convert", side, str(LONG_SIDE), "-a", path],
                                      check=True, capture_output=True).stdout
            else:
                with open(path, "rb") as f:
                    data = f.read()
            with Image.open(io.BytesIO(data)) as im:
                im.load()
        except Exception as e:
            print(f"skipped {path}: {e}", file=sys.stderr)
            dropped += 1
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            dropped += 1
            continue
        seen.add(digest)
        with open(os.path.join(out_dir, cls, base + ".png"), "wb") as f:
            f.write(data)
        counts[cls] += 1

print(f"{'class':<18} {'images':>7}")
for cls in sorted(counts):
    print(f"{cls:<18} {counts[cls]:>7}")
print(f"{'total':<18} {sum(counts.values()):>7}   ({dropped} dropped: unreadable or duplicate)")
PY
validation_folder_publish
