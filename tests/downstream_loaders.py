"""What downstream users load augment's output with, checked against augment's own manifests.

    downstream_loaders.py torch     OUTPUT   torchvision ImageFolder on OUTPUT; OUTPUT_hdf5 through a
                                             torch Dataset over h5py and a DataLoader with 2 workers
    downstream_loaders.py hf        OUTPUT   Hugging Face datasets.load_dataset("imagefolder", data_dir=OUTPUT)
    downstream_loaders.py croissant OUTPUT   mlcroissant.Dataset(jsonld=OUTPUT/croissant.json) and its records

The reference is what `augment emit` wrote: manifest.csv (one row per image: file_name, class, label,
source, ...), metadata.jsonl (the same rows as JSON) and dataset.json (class_names, per class its
folder and counts, generation resolution and channels). Those three are first checked against each
other, then every loader against them. Prints "ok: ..." / "FAIL: ..." lines; exit 1 on any FAIL.
The torch mode runs under Debian's python3 (torch, torchvision, h5py); hf and croissant under the
test's venv, which has its own numpy and must not import torch or h5py.
"""
import collections
import csv
import hashlib
import json
import math
import os
import sys

failures = []
quiet = False  # the manifests' own checks are printed once, by the first mode (torch)


def ok(msg):
    if not quiet:
        print(f"ok: {msg}", flush=True)


def fail(msg):
    failures.append(msg)
    print(f"FAIL: {msg}", flush=True)


def check(cond, good, bad):
    (ok if cond else fail)(good if cond else bad)
    return cond


def same_value(a, b):
    """JSON value equality, floats by value (1 == 1.0), None only equal to None."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0) and (not isinstance(a, int) or not isinstance(b, int) or a == b)
    return a == b


def csv_value(cell, like):
    """A manifest.csv cell as the JSON value `like` (from metadata.jsonl) has it: '' is null."""
    if cell == "":
        return None
    if isinstance(like, bool):
        return cell
    if isinstance(like, int):
        return int(cell)
    if isinstance(like, float):
        return float(cell)
    return cell


class Reference:
    """augment's manifests, cross-checked with each other."""

    def __init__(self, out):
        self.out = out
        with open(os.path.join(out, "manifest.csv"), newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            self.header = next(reader)
            self.csv_rows = [dict(zip(self.header, r)) for r in reader]
            widths = {len(r) for r in self.csv_rows}
        with open(os.path.join(out, "metadata.jsonl"), encoding="utf-8") as f:
            self.rows = [json.loads(line) for line in f if line.strip()]
        with open(os.path.join(out, "dataset.json"), encoding="utf-8") as f:
            self.card = json.load(f)
        self.class_names = self.card["class_names"]
        self.folders = [c["folder"] for c in sorted(self.card["classes"], key=lambda c: c["label"])]
        self.resolution = self.card["generation"]["resolution"]
        self.channels = self.card["generation"]["channels"]
        self.by_file = {r["file_name"]: r for r in self.rows}
        self.counts = collections.Counter(r["label"] for r in self.rows)
        self.synthetic_counts = collections.Counter(r["label"] for r in self.rows if r["source"] == "synthetic")

        n = len(self.rows)
        check(widths <= {len(self.header)}, f"manifest.csv: {len(self.csv_rows)} rows of {len(self.header)} columns",
              f"manifest.csv: rows of {sorted(widths)} cells under a header of {len(self.header)}")
        check(n > 0 and len(self.csv_rows) == n, f"manifest.csv and metadata.jsonl: {n} rows each",
              f"manifest.csv has {len(self.csv_rows)} rows, metadata.jsonl {n}")
        check(all(set(r) == set(self.header) for r in self.rows), f"metadata.jsonl rows carry the {len(self.header)} manifest columns",
              f"metadata.jsonl keys differ from manifest.csv's header {self.header}")
        # metadata.jsonl mixes real and synthetic rows (for loaders that type columns from the first
        # block); manifest.csv lists real rows first. The same rows, matched by file_name.
        csv_by_file = {c.get("file_name"): c for c in self.csv_rows}
        bad = [(j["file_name"], k, csv_by_file.get(j["file_name"], {}).get(k), j.get(k)) for j in self.rows for k in self.header
               if not same_value(csv_value(csv_by_file.get(j["file_name"], {}).get(k, ""), j.get(k)), j.get(k))]
        check(not bad, "manifest.csv and metadata.jsonl hold the same rows and values",
              f"manifest.csv and metadata.jsonl differ (file, column, csv, json): {bad[:5]}")
        check(len(self.by_file) == n, "file_name is unique", f"{n - len(self.by_file)} duplicate file_name values in the manifest")
        bad = [r["file_name"] for r in self.rows
               if not (0 <= r["label"] < len(self.class_names)) or r["class"] != self.class_names[r["label"]]
               or r["file_name"].split("/")[0] != self.folders[r["label"]] or r["file_name"].count("/") != 1]
        check(not bad, f"every row's class, label and folder agree with dataset.json's {len(self.class_names)} classes",
              f"rows whose class/label/folder disagree with dataset.json: {bad[:5]}")
        bad = [(c["name"], c["after"]["total"], self.counts[c["label"]], c["after"]["synthetic"], self.synthetic_counts[c["label"]])
               for c in self.card["classes"]
               if c["after"]["total"] != self.counts[c["label"]] or c["after"]["synthetic"] != self.synthetic_counts[c["label"]]]
        check(not bad, "dataset.json's per-class totals match the manifest: " + self.count_text(),
              f"dataset.json's per-class counts differ from the manifest (class, card total, rows, card synthetic, rows): {bad}")
        missing = [f for f in self.by_file if not os.path.isfile(os.path.join(out, f))]
        check(not missing, "every manifest file exists in the output folder", f"manifest rows without a file: {missing[:5]}")

    def count_text(self, counts=None):
        counts = self.counts if counts is None else counts
        return ", ".join(f"{self.class_names[l]!r}: {counts.get(l, 0)}" for l in range(len(self.class_names)))


# --------------------------------------------------------------------------------------------
# torchvision ImageFolder and the HDF5 shards through torch.utils.data

def check_image_folder(ref):
    from PIL import Image
    import torch
    from torchvision import datasets, transforms

    res = ref.resolution
    ds = datasets.ImageFolder(ref.out, transform=transforms.Compose([transforms.Resize((res, res)), transforms.PILToTensor()]))
    check(ds.classes == sorted(ref.folders), f"ImageFolder classes are the {len(ds.classes)} class folders: {ds.classes}",
          f"ImageFolder classes {ds.classes} != the dataset's class folders {sorted(ref.folders)}")
    mapping = {f: ds.class_to_idx.get(f) for f in ref.folders}
    check(all(mapping[f] == l for l, f in enumerate(ref.folders)), "ImageFolder's class index of every folder is augment's label",
          f"ImageFolder class_to_idx {ds.class_to_idx} != augment's labels {dict((f, l) for l, f in enumerate(ref.folders))}")
    files = [os.path.relpath(p, ref.out) for p, _ in ds.samples]
    check(len(files) == len(ref.rows) and set(files) == set(ref.by_file),
          f"ImageFolder finds exactly the manifest's {len(ref.rows)} images",
          f"ImageFolder finds {len(files)} images; not in the manifest: {sorted(set(files) - set(ref.by_file))[:5]}, "
          f"in the manifest but not found: {sorted(set(ref.by_file) - set(files))[:5]}")
    wrong = [(f, t, ref.by_file[f]["label"]) for f, (_, t) in zip(files, ds.samples) if f in ref.by_file and ref.by_file[f]["label"] != t]
    check(not wrong, "each image's ImageFolder target is its manifest label", f"ImageFolder targets differ from the manifest (file, target, label): {wrong[:5]}")
    counts = collections.Counter(ds.targets)
    check(counts == ref.counts, "ImageFolder per-class counts match the manifest: " + ref.count_text(counts),
          f"ImageFolder per-class counts {ref.count_text(counts)} != manifest {ref.count_text()}")

    # Every image decoded by ImageFolder's loader (PIL, converted to RGB) through a DataLoader.
    loader = torch.utils.data.DataLoader(ds, batch_size=8, shuffle=False, num_workers=0)
    shapes, targets = set(), []
    for x, y in loader:
        shapes.add(tuple(x.shape[1:]))
        targets += y.tolist()
    check(targets == ds.targets and shapes == {(3, res, res)}, f"all {len(targets)} images decode through ImageFolder's loader, batched at 3x{res}x{res}",
          f"ImageFolder's DataLoader gave shapes {shapes} and {len(targets)} targets")

    # The fixture does what it claims: a grayscale and an RGBA real image among the output.
    modes = collections.Counter(Image.open(os.path.join(ref.out, r["file_name"])).mode for r in ref.rows if r["source"] == "real")
    check(modes.get("L", 0) > 0 and modes.get("RGBA", 0) > 0, f"real images in the output by PNG mode: {dict(modes)}",
          f"fixture: the output's real images should include a grayscale and an RGBA PNG, modes are {dict(modes)}")
    sizes = collections.Counter(Image.open(os.path.join(ref.out, r["file_name"])).size for r in ref.rows if r["source"] == "synthetic")
    check(set(sizes) <= {(res, res)}, f"synthetic PNGs are {res}x{res} (dataset.json's resolution): {sum(sizes.values())}",
          f"synthetic PNG sizes {dict(sizes)}, dataset.json says resolution {res}")


class H5Shard:
    """One shard as docs/output.md reads it: the h5py file is opened lazily, in the worker."""

    def __init__(self, path):
        import h5py
        self.path, self.f = path, None
        with h5py.File(path, "r") as f:
            self.n = f["labels"].shape[0]

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        import h5py
        import torch
        if self.f is None:  # first use in this worker process
            self.f = h5py.File(self.path, "r")
        img = torch.from_numpy(self.f["images"][i]).permute(2, 0, 1)  # C x H x W, uint8
        name = self.f["files"][i]
        if isinstance(name, bytes):
            name = name.decode("utf-8")
        return img, int(self.f["labels"][i]), int(self.f["is_synthetic"][i]), name, os.getpid()


def check_hdf5(ref):
    import h5py
    import numpy as np
    import torch
    from PIL import Image
    from torch.utils.data import ConcatDataset, DataLoader, Dataset

    class Shard(H5Shard, Dataset):
        pass

    hdf5 = ref.out.rstrip("/") + "_hdf5"
    with open(os.path.join(hdf5, "index.json"), encoding="utf-8") as f:
        index = json.load(f)
    n = len(ref.rows)
    check(index["class_names"] == ref.class_names and index["total"] == n,
          f"index.json: {index['total']} images of {len(index['class_names'])} classes, as the manifest",
          f"index.json: {index['total']} images, classes {index['class_names']}; manifest: {n} images, classes {ref.class_names}")
    counts = {l: index["counts"].get(name, {}).get("total") for l, name in enumerate(ref.class_names)}
    synthetic = {l: index["counts"].get(name, {}).get("synthetic") for l, name in enumerate(ref.class_names)}
    check(counts == {l: ref.counts[l] for l in counts} and synthetic == {l: ref.synthetic_counts[l] for l in synthetic},
          "index.json's per-class counts (total, synthetic) match the manifest",
          f"index.json counts {index['counts']} != manifest {ref.count_text()}")
    shape = (index["channels"], index["height"], index["width"])
    check(shape == (ref.channels, ref.resolution, ref.resolution), f"index.json image shape {shape} matches dataset.json's generation settings",
          f"index.json image shape {shape}, dataset.json: {ref.channels} channels at {ref.resolution}")
    bad = []
    for s in index["shards"]:
        p = os.path.join(hdf5, s["file"])
        data = open(p, "rb").read()
        if hashlib.sha256(data).hexdigest() != s["sha256"] or len(data) != s["bytes"]:
            bad.append(s["file"])
            continue
        with h5py.File(p, "r") as f:
            names = [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in f.attrs["class_names"]]
            a = f.attrs
            if (names != ref.class_names or (int(a["channels"]), int(a["height"]), int(a["width"])) != shape
                    or f["images"].shape != (s["count"],) + (shape[1], shape[2], shape[0]) or f["images"].dtype != np.uint8
                    or f["labels"].shape != (s["count"],) or f["is_synthetic"].shape != (s["count"],) or f["files"].shape != (s["count"],)
                    or int(a["shard_count"]) != len(index["shards"])):
                bad.append(f"{s['file']} (attributes/shapes)")
    check(not bad, f"{len(index['shards'])} shards: SHA-256 and size as index.json says, attributes class_names/height/width/channels "
          "and dataset shapes consistent", f"shards that disagree with index.json or the manifest: {bad}")

    shards = [Shard(os.path.join(hdf5, s["file"])) for s in index["shards"]]
    data = ConcatDataset(shards)
    loader = DataLoader(data, batch_size=4, shuffle=True, num_workers=2, generator=torch.Generator().manual_seed(0))
    images, labels, flags, files, pids = [], [], [], [], set()
    for img, label, flag, name, pid in loader:
        images += list(img)
        labels += label.tolist()
        flags += flag.tolist()
        files += list(name)
        pids |= set(pid.tolist())
    check(all(s.f is None for s in shards) and len(pids) == 2 and os.getpid() not in pids,
          "the DataLoader's 2 worker processes each opened the shards themselves (none opened in the main process)",
          f"h5py opened in processes {pids} (main {os.getpid()}); main-process handles: {[s.f is not None for s in shards]}")
    check(len(files) == n and collections.Counter(files) == collections.Counter(list(ref.by_file)),
          f"the DataLoader yields {len(files)} images, each manifest file exactly once",
          f"the DataLoader yields {len(files)} images; duplicates: {[f for f, k in collections.Counter(files).items() if k > 1][:5]}, "
          f"not in the manifest: {sorted(set(files) - set(ref.by_file))[:5]}, missing: {sorted(set(ref.by_file) - set(files))[:5]}")
    check(set(labels) == set(range(len(ref.class_names))) == set(ref.counts), f"label set {sorted(set(labels))} = the manifest's",
          f"shard label set {sorted(set(labels))}, manifest {sorted(ref.counts)}")
    got = collections.Counter(labels)
    check(got == ref.counts, "shard per-class counts match the manifest: " + ref.count_text(got),
          f"shard per-class counts {ref.count_text(got)} != manifest {ref.count_text()}")
    wrong = [(f, l, ref.by_file[f]["label"]) for f, l in zip(files, labels) if f in ref.by_file and ref.by_file[f]["label"] != l]
    wrong += [(f, "is_synthetic", s) for f, s in zip(files, flags) if f in ref.by_file and s != (ref.by_file[f]["source"] == "synthetic")]
    check(not wrong, "each shard row's label and is_synthetic are the manifest's for its file",
          f"shard rows that disagree with the manifest (file, shard value, manifest): {wrong[:5]}")
    shapes = collections.Counter((tuple(x.shape), str(x.dtype)) for x in images)
    check(set(shapes) == {(shape, "torch.uint8")}, f"every image is {shape[0]}x{shape[1]}x{shape[2]} uint8 (C x H x W) as index.json and the shard attributes say",
          f"image shapes/dtypes from the shards: {dict(shapes)}, expected {shape} uint8")
    # Synthetic images are the output folder's PNGs, pixel for pixel.
    mode = {1: "L", 3: "RGB"}[shape[0]]
    differ = [f for f, x, s in zip(files, images, flags)
              if s and not np.array_equal(np.asarray(Image.open(os.path.join(ref.out, f)).convert(mode)).reshape(shape[1], shape[2], shape[0]),
                                          x.permute(1, 2, 0).numpy())]
    k = sum(flags)
    check(k > 0 and not differ, f"the {k} synthetic images in the shards equal the output folder's PNGs pixel for pixel",
          f"synthetic images in shards that differ from the output's PNG: {differ[:5]} (of {k})")


# --------------------------------------------------------------------------------------------
# Hugging Face datasets

def check_hf(ref):
    import datasets
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    try:
        d = datasets.load_dataset("imagefolder", data_dir=ref.out)
    except Exception as e:  # a loader that cannot read the folder at all
        fail(f"datasets {datasets.__version__}: load_dataset('imagefolder', data_dir=OUTPUT) raised {type(e).__name__}: {e}")
        return
    check(list(d) == ["train"], f"datasets {datasets.__version__}: load_dataset('imagefolder', data_dir=OUTPUT) gives the split 'train'",
          f"load_dataset('imagefolder') gives splits {list(d)}, expected ['train']")
    if "train" not in d:
        return
    ds = d["train"]
    check(ds.num_rows == len(ref.rows), f"{ds.num_rows} rows, as the manifest", f"{ds.num_rows} rows, the manifest has {len(ref.rows)}")
    expected = {c for c in ref.header if c != "file_name"} | {"image"}
    check(set(ds.column_names) == expected, f"columns: image + metadata.jsonl's {len(expected) - 1}: {sorted(ds.column_names)}",
          f"columns {sorted(ds.column_names)}; expected image + metadata.jsonl's: {sorted(expected)}")
    label = ds.features.get("label")
    names = getattr(label, "names", None)
    # With a metadata file present, the imagefolder builder takes the label's type from it (an
    # int64 column) rather than inferring a ClassLabel from the folders; the names are in
    # dataset.json and the `class` column. The values themselves are checked row by row below.
    check(isinstance(label, datasets.ClassLabel) and names in (ref.class_names, ref.folders)
          or isinstance(label, datasets.Value) and label.dtype in ("int64", "int32"),
          f"the label feature is {label!r}",
          f"the label feature is {label!r}: neither a ClassLabel with the class names {ref.class_names} nor an integer")
    paths = ds.cast_column("image", datasets.Image(decode=False))
    rel, wrong = [], []
    for row in paths:
        f = os.path.relpath(row["image"]["path"], ref.out)
        rel.append(f)
        want = ref.by_file.get(f)
        if want is None:
            continue
        for k, v in want.items():
            if k != "file_name" and k in row and not same_value(row[k], v):
                wrong.append((f, k, row[k], v))
    check(sorted(rel) == sorted(ref.by_file), "every row's image is a manifest file, each once",
          f"row images not in the manifest: {sorted(set(rel) - set(ref.by_file))[:5]}, missing: {sorted(set(ref.by_file) - set(rel))[:5]}")
    check(not wrong, "every row's metadata (class, label, source, seed, weight, ...) equals metadata.jsonl's for its image",
          f"row values that differ from metadata.jsonl (file, column, row, metadata): {wrong[:5]}")
    counts = collections.Counter(ds["label"])
    check(counts == ref.counts, "per-label row counts match the manifest: " + ref.count_text(counts),
          f"per-label row counts {ref.count_text(counts)} != manifest {ref.count_text()}")
    from PIL import Image
    bad = [f for f, row in zip(rel, ds) if row["image"].size != Image.open(os.path.join(ref.out, f)).size]
    check(not bad, f"all {ds.num_rows} images decode, each the size of its file", f"images whose decoded size differs from the file: {bad[:5]}")


# --------------------------------------------------------------------------------------------
# mlcroissant

def check_croissant(ref):
    import mlcroissant as mlc
    path = os.path.join(ref.out, "croissant.json")
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    # The distribution, independently of mlcroissant: every image and manifest with its size and SHA-256.
    listed = {e.get("contentUrl"): e for e in doc.get("distribution", [])}
    # The card names the manifests (croissant.json cannot list itself).
    want = sorted(ref.by_file) + sorted({"dataset.json", *ref.card["files"].values()} - {"croissant.json"})
    bad = [f for f in want if f not in listed or listed[f].get("sha256") != hashlib.sha256(open(os.path.join(ref.out, f), "rb").read()).hexdigest()
           or listed[f].get("contentSize") != f"{os.path.getsize(os.path.join(ref.out, f))} B"]
    check(not bad and len(listed) == len(want), f"croissant.json lists the {len(want)} files (images and manifests) with their SHA-256 and size",
          f"croissant.json: {len(listed)} files listed, {len(want)} expected; wrong or missing: {bad[:5]}")
    try:
        ds = mlc.Dataset(jsonld=path)
    except mlc.ValidationError as e:
        lines = str(e).splitlines()
        fail(f"mlcroissant rejects croissant.json ({len(lines)} lines of issues), first: " + " | ".join(lines[:3]))
        return
    except Exception as e:
        fail(f"mlcroissant.Dataset(jsonld=croissant.json) raised {type(e).__name__}: {e}")
        return
    ok("mlcroissant validates croissant.json")
    sets = [rs.name for rs in ds.metadata.record_sets]
    check(sets == ["images"], f"record sets: {sets}", f"record sets {sets}, expected ['images']")
    for rs in sets:
        try:
            records = list(ds.records(record_set=rs))
        except Exception as e:
            fail(f"mlcroissant cannot read the records of {rs!r}: {type(e).__name__}: {e}")
            continue
        check(len(records) == len(ref.rows), f"record set {rs!r}: {len(records)} records, as the manifest",
              f"record set {rs!r}: {len(records)} records, the manifest has {len(ref.rows)}")
        wrong = []
        for rec in records:
            name = rec.get(f"{rs}/file_name")
            name = name.decode("utf-8") if isinstance(name, bytes) else name
            row = ref.by_file.get(name)
            if row is None:
                wrong.append((name, "file_name", name, None))
                continue
            for k, v in row.items():
                got = rec.get(f"{rs}/{k}")
                if isinstance(got, bytes):
                    got = got.decode("utf-8")
                if k == "seed" and got is not None and v not in (None, ""):
                    # mlcroissant reads the CSV through pandas, which makes a column with empty
                    # cells (real images have no seed) float64: 63-bit seeds keep 53 bits there.
                    if float(got) != float(v):
                        wrong.append((row["file_name"], k, got, v))
                    continue
                if not same_value(got, v):
                    wrong.append((row["file_name"], k, got, v))
        check(not wrong, f"record set {rs!r}: every record's {len(ref.header)} fields equal the manifest row",
              f"record values that differ from the manifest (file, field, record, manifest): {wrong[:5]}")


def main():
    global quiet
    mode, out = sys.argv[1], os.path.abspath(sys.argv[2])
    quiet = mode != "torch"
    ref = Reference(out)
    quiet = False
    {"torch": lambda r: (check_image_folder(r), check_hdf5(r)), "hf": check_hf, "croissant": check_croissant}[mode](ref)
    if failures:
        print(f"{mode}: {len(failures)} check(s) failed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
