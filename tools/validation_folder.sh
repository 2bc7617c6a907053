# Shared by the scripts that build held-out validation folders from Debian-packaged artwork
# (tools/make_icon_folder.sh, tools/make_stamps_folder.sh); sourced, not run. After
#   validation_folder_start OUTPUT_DIR PACKAGE...
# the script writes its folder to "$tmp/out" with "$py" (Debian's python3, which python3-pil
# belongs to), then calls validation_folder_publish.

validation_folder_start() {
  out="${1%/}"
  shift
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "error: missing Debian package(s): ${missing[*]}" >&2
    echo "install with: sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
  # Debian's python3, not whatever python3 is first on PATH.
  py=/usr/bin/python3
  command -v rsvg-convert >/dev/null || { echo "error: rsvg-convert not found (librsvg2-bin)" >&2; exit 1; }
  "$py" -c 'import PIL' 2>/dev/null || { echo "error: $py cannot import PIL (python3-pil)" >&2; exit 1; }

  local parent
  parent="$(dirname "$out")"
  mkdir -p "$parent"
  tmp="$(mktemp -d "$parent/.$(basename "$out").tmp.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  start=$SECONDS
  export LC_ALL=C
}

# An existing folder moves into the temp dir (removed on exit), the new one takes its place.
validation_folder_publish() {
  if [ -e "$out" ]; then mv "$out" "$tmp/old"; fi
  mv "$tmp/out" "$out"
  echo "wrote $out in $((SECONDS - start)) s"
}
