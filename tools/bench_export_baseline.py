"""The usual Python route for comparison (benchmark only, never used by augment): h5py writing the
same shard layout as `augment export` (uint8 N x H x W x C, chunks of the same shape, shuffle +
gzip + fletcher32, labels, is_synthetic, files), one shard per SHARD images, each fsync'ed.
Content as in bench_export: smooth colour fields, with +-8 of noise per byte for "noisy".
usage: bench_export_baseline.py [IMAGES] [noisy|smooth] [GZIP_LEVEL] [DIR] -> prints JSON
"""
import json, os, sys, time

import h5py
import numpy as np

IMAGES = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
CONTENT = sys.argv[2] if len(sys.argv) > 2 else "noisy"
LEVEL = int(sys.argv[3]) if len(sys.argv) > 3 else 4
DIR = sys.argv[4] if len(sys.argv) > 4 else "/tmp/augment-bench-export-h5py"
RES, CH, SHARD = 32, 3, 10000


def images(rng):
    n = IMAGES
    fx = 0.05 + rng.integers(0, 100, n) / 400.0
    fy = 0.05 + rng.integers(0, 100, n) / 400.0
    phase = rng.integers(0, 628, n) / 100.0
    y, x, c = np.meshgrid(np.arange(RES), np.arange(RES), np.arange(CH), indexing="ij")
    out = np.empty((n, RES, RES, CH), np.uint8)
    noise = 16 if CONTENT == "noisy" else 1
    for s in range(0, n, 1000):
        e = min(n, s + 1000)
        v = 127.5 + 100 * np.sin(fx[s:e, None, None, None] * x + fy[s:e, None, None, None] * y + phase[s:e, None, None, None] + c)
        v += rng.integers(0, noise, v.shape) - noise // 2
        out[s:e] = np.clip(v, 0, 255).astype(np.uint8)
    return out


def main():
    pixels = images(np.random.default_rng(1))
    labels = np.arange(IMAGES) % 10
    files = [f"class {i % 10}/synthetic_{i:06}.png" for i in range(IMAGES)]
    per_chunk = max(1, -(-10240 // (RES * RES * CH)))  # as augment: whole images, >= 10 KiB
    os.makedirs(DIR, exist_ok=True)
    t0 = time.time()
    written = 0
    for k, s in enumerate(range(0, IMAGES, SHARD)):
        e = min(IMAGES, s + SHARD)
        path = os.path.join(DIR, f"h5py-{k:05}.h5")
        with h5py.File(path, "w") as f:
            f.create_dataset("images", data=pixels[s:e], chunks=(min(per_chunk, e - s), RES, RES, CH),
                             shuffle=True, compression="gzip" if LEVEL > 0 else None,
                             compression_opts=LEVEL if LEVEL > 0 else None, fletcher32=True)
            f.create_dataset("labels", data=labels[s:e].astype(np.int64))
            f.create_dataset("is_synthetic", data=(labels[s:e] % 2).astype(np.uint8))
            f.create_dataset("files", data=files[s:e], dtype=h5py.string_dtype("utf-8"))
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        written += os.path.getsize(path)
    dt = time.time() - t0
    mb = pixels.nbytes / 1e6
    print(json.dumps({"tool": f"h5py {h5py.__version__}", "images": IMAGES, "content": CONTENT, "gzip": LEVEL,
                      "image_mb": mb, "file_mb": round(written / 1e6, 2), "seconds": round(dt, 3), "mb_per_s": round(mb / dt, 1)}))
    for k in range(0, -(-IMAGES // SHARD)):
        os.remove(os.path.join(DIR, f"h5py-{k:05}.h5"))


if __name__ == "__main__":
    main()
