"""The usual Python route for comparison (benchmark only, never used by augment):
PIL decode + resize of the shorter side + centre crop in a 2-process pool, no verification.
usage: bench_ingest_baseline.py ROOT RESOLUTION PROCESSES -> prints JSON {images, seconds, images_per_s}
"""
import json, os, sys, time
from multiprocessing import Pool

import numpy as np
from PIL import Image

RES = int(sys.argv[2])


def load(path):
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = RES / min(w, h)
        im = im.resize((max(RES, round(w * s)), max(RES, round(h * s))), Image.BILINEAR)
        w, h = im.size
        left, top = (w - RES) // 2, (h - RES) // 2
        return np.asarray(im.crop((left, top, left + RES, top + RES)))


def main():
    root = sys.argv[1]
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.lower().endswith((".jpg", ".jpeg", ".png")))
    t0 = time.time()
    with Pool(int(sys.argv[3])) as pool:
        arrays = pool.map(load, files, chunksize=64)
    out = np.stack(arrays)
    dt = time.time() - t0
    print(json.dumps({"images": len(files), "seconds": round(dt, 3), "images_per_s": round(len(files) / dt, 1), "shape": list(out.shape)}))


if __name__ == "__main__":
    main()
