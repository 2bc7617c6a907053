#!/usr/bin/env bash
# Builds a held-out colour validation folder for augment from the icon themes Debian ships:
# real images sorted into classes by what they depict, drawn from many themes so that each class
# has varied styles, and unbalanced like a long-tailed set (the largest class about 14x the
# smallest, which has under 100 images).
#
#   bash tools/make_icon_folder.sh /work/data/icons
#
# Output: OUT/<class>/<theme>__<iconname>.png, 64x64 RGBA PNGs (alpha kept as the themes ship
# it). Class folders: "audio & speaker", battery, "clock & calendar", folder, "network & wifi",
# printer, trash, weather.
#
# Debian 12 packages it needs (checked at start):
#   librsvg2-bin python3 python3-pil
#   adwaita-icon-theme breeze-icon-theme deepin-icon-theme elementary-xfce-icon-theme
#   faba-icon-theme faenza-icon-theme gnome-brave-icon-theme gnome-colors-common
#   gnome-dust-icon-theme gnome-human-icon-theme gnome-icon-theme lxde-icon-theme
#   mate-icon-theme moka-icon-theme numix-icon-theme obsidian-icon-theme oxygen-icon-theme
#   paper-icon-theme papirus-icon-theme
# (faba-icon-theme comes with moka-icon-theme, gnome-colors-common with gnome-*-icon-theme.)
#
# How the images are chosen:
#   - only each package's base theme, no dark/light/colour variants (Papirus, not Papirus-Dark,
#     ePapirus, Obsidian-Red, Faenza-Dark, ...): variants are mostly the same drawing recoloured;
#   - a class is picked from the icon name by the first rule below that matches; names matching
#     none are skipped; anything "symbolic" (in the name or path) is skipped;
#   - skipped too: the panel, notifications, animations and symbolic folders (monochrome tray
#     and on-screen-display icons), and small designs: a drawing must be made for 32 px or more
#     (so not 16@2x, 24@2x, Obsidian's 24s or Adwaita's scalable-up-to-32), a PNG must also
#     have at least 48 px;
#   - one file per theme+name: the pixel size closest to 64 (ties: the larger design, then
#     SVG; "scalable" counts as 64); SVGs are rasterized at 64x64 by rsvg-convert, PNGs resized
#     with PIL (Lanczos), a non-square drawing is centred on a transparent 64x64 canvas;
#   - dropped: files that fail to render, images with under 2% opaque pixels, one-colour
#     silhouettes (symbolic-like: 97% of the pixels at least half opaque have one colour, at 4
#     bits a channel), and exact duplicates (same sha256 of the output PNG; the first in
#     (class, theme, name) order stays);
#   - within a theme, icons are taken in a fixed pseudo-random order (sha256 of "theme/name"),
#     at most 3 of a numbered family (calendar-red-01..31, weather-clear-night-000..350, and
#     battery-000..100 are one family each: the names with the digits blanked) and at most 200
#     of one theme per class, so no theme fills a class alone;
#   - a class over its cap (CAPS below) is filled by taking themes in turn.
# Everything is sorted and hashed, nothing random: a rerun gives the same folder, byte for byte.
# The folder is built in a temp dir next to OUT and renamed into place at the end; an existing
# OUT is replaced only then.
set -euo pipefail

if [ "$#" -ne 1 ] || [ -z "$1" ]; then
  echo "usage: $0 OUTPUT_DIR   (e.g. bash $0 /work/data/icons)" >&2
  exit 64
fi
source "$(dirname "${BASH_SOURCE[0]}")/validation_folder.sh"
validation_folder_start "$1" librsvg2-bin python3 python3-pil \
  adwaita-icon-theme breeze-icon-theme deepin-icon-theme elementary-xfce-icon-theme \
  faba-icon-theme faenza-icon-theme gnome-brave-icon-theme gnome-colors-common \
  gnome-dust-icon-theme gnome-human-icon-theme gnome-icon-theme lxde-icon-theme \
  mate-icon-theme moka-icon-theme numix-icon-theme obsidian-icon-theme oxygen-icon-theme \
  paper-icon-theme papirus-icon-theme

nice -n 19 "$py" - "$tmp" <<'PY'
import hashlib, io, os, re, subprocess, sys
from collections import Counter, defaultdict
from PIL import Image

tmp = sys.argv[1]
ICONS = "/usr/share/icons"
THEMES = sorted("""Adwaita Faba Faenza Moka Numix Obsidian Paper Papirus Sea Vintage bloom breeze
elementary-xfce gnome gnome-brave gnome-colors-common gnome-dust gnome-human mate menta nuoveXT2
oxygen""".split())
SIZE = 64

# (class, include regex, exclude regex or None); the first rule whose include matches and whose
# exclude does not wins.
RULES = [
    ("trash", r"trash|^emptytrash$", r"folder|indicator"),
    ("printer", r"(^|[-_.])printers?([-_.0-9]|$)", None),
    ("battery", r"(^|[-_.])battery", None),
    ("weather", r"^(weather|stock_weather)([-_]|$)", r"widget"),
    ("audio & speaker", r"^(audio-volume|audio-speaker|multimedia-volume|stock_volume)", r"-panel$"),
    ("network & wifi", r"^(network-wireless|network-wired|nm-signal|nm-device-wire|"
                       r"gnome-netstatus|wifi([-_]|$)|preferences-system-network$)", None),
    ("clock & calendar", r"(^|[-_.])(x-office-calendar|calendar|clocks?|alarm|appointment|"
                         r"chronometer|stopwatch|timer|time-admin)([-_.0-9]|$)", r"clockwise"),
    ("folder", r"^(folder|inode-directory$)", None),
]
# Class caps, on top of THEME_CAP and FAMILY_CAP below (which alone leave folder ~700,
# the rest 50-160 each): the largest class stays about 14x the smallest (trash, ~50).
CAPS = {"folder": 700}
THEME_CAP = 200   # at most this many images of one theme in one class
FAMILY_CAP = 3    # and of one numbered family (calendar-red-01..31, battery-000..100, ...)
CLASSES = [r[0] for r in RULES]
rules = [(c, re.compile(i), re.compile(e) if e else None) for c, i, e in RULES]

def classify(name):
    for c, inc, exc in rules:
        if inc.search(name) and not (exc and exc.search(name)):
            return c
    return None

size_re = re.compile(r"(\d+)(?:x\d+)?(?:@(\d+)x?)?|(\d+)s|(?:scalable-)?up-to-(\d+)")
def sizes(parts):
    """(design size, pixel size) from the folder names: "48x48", "48", "24@2x" (a 24 px design
    drawn at 48 px), Obsidian's "24s" (an SVG drawn for 24 px), "scalable-up-to-32" (for 32 px
    and under: counted as 24); "scalable", or no size folder at all (Deepin's Sea), is 64."""
    design = pixels = None
    for c in parts:
        m = size_re.fullmatch(c)
        if not m:
            continue
        if m.group(1):
            design = int(m.group(1))
            pixels = design * int(m.group(2) or 1)
        elif m.group(3):
            design = pixels = int(m.group(3))
        else:
            design = pixels = 24
    return (design, pixels) if design is not None else (SIZE, SIZE)

# contexts of monochrome tray, on-screen-display and animation icons
SKIP_CONTEXTS = {"panel", "notifications", "animations", "symbolic"}

# 1. inventory: the best file per (theme, name)
best = {}
for theme in THEMES:
    base = os.path.join(ICONS, theme)
    for dp, dns, fns in os.walk(base, followlinks=True):
        dns.sort()
        for f in sorted(fns):
            stem, _, ext = f.rpartition(".")
            if ext not in ("png", "svg"):
                continue
            path = os.path.join(dp, f)
            rel = os.path.relpath(path, base)
            dirs = rel.split(os.sep)[:-1]
            if "symbolic" in rel or SKIP_CONTEXTS & set(dirs) or not os.path.isfile(path):
                continue
            cls = classify(stem)
            if cls is None:
                continue
            design, pixels = sizes(dirs)
            if design < 32 or (ext == "png" and pixels < 48):
                continue
            key = (abs(pixels - SIZE), -design, -pixels, ext != "svg", rel)
            k = (theme, stem)
            if k not in best or key < best[k][0]:
                best[k] = (key, cls, path, ext)

# 2. render to 64x64 RGBA
drops = Counter()
def render(path, ext):
    if ext == "svg":
        r = subprocess.run(["timeout", "30", "rsvg-convert", "-w", str(SIZE), "-h", str(SIZE),
                            "-a", "-f", "png", path], capture_output=True)
        if r.returncode != 0 or not r.stdout:
            return None
        im = Image.open(io.BytesIO(r.stdout))
    else:
        im = Image.open(path)
    im.load()
    im = im.convert("RGBA")
    if im.size != (SIZE, SIZE):
        w, h = im.size
        s = SIZE / max(w, h)
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        if (nw, nh) != (w, h):
            im = im.resize((nw, nh), Image.LANCZOS)
        canvas = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
        canvas.paste(im, ((SIZE - nw) // 2, (SIZE - nh) // 2))
        im = canvas
    return im

items = []  # (class index, theme, name, png bytes)
for (theme, name), (_, cls, path, ext) in sorted(best.items()):
    try:
        im = render(path, ext)
    except Exception:
        im = None
    if im is None:
        drops["render failed"] += 1
        continue
    px = list(im.getdata())
    if sum(1 for p in px if p[3] >= 128) < 0.02 * len(px):
        drops["nearly empty"] += 1
        continue
    solid = Counter((r >> 4, g >> 4, b >> 4) for r, g, b, a in px if a >= 128)
    if solid.most_common(1)[0][1] >= 0.97 * sum(solid.values()):
        drops["one-colour silhouette"] += 1
        continue
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    items.append((CLASSES.index(cls), theme, name, buf.getvalue()))

# 3. exact duplicates
items.sort(key=lambda t: t[:3])
seen, unique = set(), []
for it in items:
    h = hashlib.sha256(it[3]).hexdigest()
    if h in seen:
        drops["duplicate image"] += 1
        continue
    seen.add(h)
    unique.append(it)

# 4. per-class caps, themes in turn
def order(theme, name):
    return hashlib.sha256(f"{theme}/{name}".encode()).hexdigest()
safe = lambda s: re.sub(r"[^A-Za-z0-9._+-]", "_", s)
outdir = os.path.join(tmp, "out")
table = []
for ci, cls in enumerate(CLASSES):
    by_theme = defaultdict(list)
    for it in unique:
        if it[0] == ci:
            by_theme[it[1]].append(it)
    for t in by_theme:
        fam, kept = Counter(), []
        for it in sorted(by_theme[t], key=lambda it: order(it[1], it[2])):
            f = re.sub(r"[0-9]+", "#", it[2])
            fam[f] += 1
            if fam[f] <= FAMILY_CAP and len(kept) < THEME_CAP:
                kept.append(it)
            else:
                drops["numbered-family or theme cap"] += 1
        by_theme[t] = kept
    avail = sum(len(v) for v in by_theme.values())
    chosen, round_, cap = [], 0, CAPS.get(cls, len(unique))
    while len(chosen) < cap and any(len(v) > round_ for v in by_theme.values()):
        for t in sorted(by_theme):
            if len(chosen) < cap and len(by_theme[t]) > round_:
                chosen.append(by_theme[t][round_])
        round_ += 1
    os.makedirs(os.path.join(outdir, cls))
    per_theme = Counter()
    for _, theme, name, data in chosen:
        per_theme[theme] += 1
        fn = os.path.join(outdir, cls, f"{safe(theme)}__{safe(name)}.png")
        assert not os.path.exists(fn), fn
        with open(fn, "wb") as f:
            f.write(data)
    top = per_theme.most_common(1)[0]
    table.append((cls, len(chosen), avail, len(per_theme), f"{top[0]} {top[1]}"))

print("dropped: " + ", ".join(f"{k} {v}" for k, v in sorted(drops.items())))
print(f"{'class':<18} {'images':>6} {'(of)':>6} {'themes':>6}  largest theme share")
for cls, n, avail, nt, top in sorted(table, key=lambda r: -r[1]):
    print(f"{cls:<18} {n:>6} {avail:>6} {nt:>6}  {top}")
print(f"{'total':<18} {sum(r[1] for r in table):>6}")
PY

validation_folder_publish
