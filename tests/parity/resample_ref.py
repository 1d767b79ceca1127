"""resample_ref.py - PyTorch side of parity/resample.sh.
  gen DIR N C H W SEED           random float32 images in [0,1] as an npy directory (tsimport --format npy)
  check OUT SRC OH OW AA TOL     OUT/image.npy vs F.interpolate(SRC/image.npy, bilinear, align_corners=False)
  merge OUT X P ALPHA TOL        OUT/image.npy vs alpha*x + (1-alpha)*F.interpolate(p, x's size)
Prints the max abs difference; exits 1 above TOL."""
import os, sys
import numpy as np
import torch
import torch.nn.functional as F


def interp(x, oh, ow, aa=False):
    return F.interpolate(torch.from_numpy(x), size=(oh, ow), mode="bilinear", align_corners=False,
                         antialias=aa).numpy()


def report(what, got, want, tol):
    d = float(np.abs(got.astype(np.float64) - want).max())
    ok = got.shape == want.shape and d <= tol
    print(f"{'ok' if ok else 'FAIL'}: {what}: max abs diff {d:.3g} (tolerance {tol:g}), "
          f"bitwise equal {np.mean(got == want) * 100:.2f}%")
    return ok


def main(a):
    if a[0] == "gen":
        d, n, c, h, w, seed = a[1], *map(int, a[2:7])
        os.makedirs(d, exist_ok=True)
        r = np.random.default_rng(seed)
        np.save(f"{d}/image.npy", r.random((n, c, h, w), dtype=np.float32))
        np.save(f"{d}/label.npy", (np.arange(n) % 2).astype(np.int64))
        return True
    if a[0] == "check":
        out, src, oh, ow, aa, tol = a[1], a[2], int(a[3]), int(a[4]), a[5] == "1", float(a[6])
        x = np.load(f"{src}/image.npy")
        return report(f"{x.shape[2]}x{x.shape[3]} -> {oh}x{ow}{' antialias' if aa else ''} (C={x.shape[1]})",
                      np.load(f"{out}/image.npy"), interp(x, oh, ow, aa), tol)
    if a[0] == "merge":
        out, xd, pd, alpha, tol = a[1], a[2], a[3], float(a[4]), float(a[5])
        x, p = np.load(f"{xd}/image.npy"), np.load(f"{pd}/image.npy")
        tx = torch.from_numpy(x)
        want = (alpha * tx + (1 - alpha) * torch.from_numpy(interp(p, x.shape[2], x.shape[3]))).numpy()
        return report(f"arcmerge alpha {alpha}, P {p.shape[2]} -> x {x.shape[2]}", np.load(f"{out}/image.npy"), want, tol)
    raise SystemExit(f"unknown command {a[0]}")


if __name__ == "__main__":
    sys.exit(0 if main(sys.argv[1:]) else 1)
