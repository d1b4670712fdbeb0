"""The peer a researcher would write: the same optimal-denoiser study (Euler 20 + Heun 10 on the polynomial schedule,
dense D* over the training set, float32, batches of 32) in plain numpy. Prints JSON: seconds, trajectories, evaluations.
Usage: python3 numpy_peer.py <idx.gz> <limit> <samples>"""
import gzip, json, sys, time
import numpy as np

path, limit, samples = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
raw = gzip.open(path).read() if path.endswith('.gz') else open(path, 'rb').read()
n, h, w = np.frombuffer(raw[4:16], dtype='>u4')
y = (np.frombuffer(raw[16:], dtype=np.uint8).reshape(n, h * w)[:limit].astype(np.float32) / 127.5 - 1.0)
yt = np.ascontiguousarray(y.T)
half = 0.5 * (y * y).sum(1)

def denoise(x, t):
    logits = (x @ yt - half) / (t * t)
    logits -= logits.max(1, keepdims=True)
    wts = np.exp(logits)
    wts /= wts.sum(1, keepdims=True)
    return wts @ y

def sigmas(steps, smin=0.002, smax=80.0, rho=7.0):
    i = np.arange(steps + 1)
    return (smax ** (1 / rho) + i / steps * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho

def euler(x, s):
    for t, tn in zip(s[:-1], s[1:]):
        x = x + (tn - t) * (x - denoise(x, t)) / t
    return x

def heun(x, s):
    for t, tn in zip(s[:-1], s[1:]):
        d = (x - denoise(x, t)) / t
        xe = x + (tn - t) * d
        x = x + (tn - t) * 0.5 * (d + (xe - denoise(xe, tn)) / tn)
    return x

rng = np.random.default_rng(0)
start = time.perf_counter()
evals = 0
for solver, steps, nfe in ((euler, 20, 20), (heun, 10, 20)):
    s = sigmas(steps).astype(np.float32)
    for b in range(0, samples, 32):
        x = (80.0 * rng.standard_normal((min(32, samples - b), h * w))).astype(np.float32)
        solver(x, s)
        evals += nfe * x.shape[0]
print(json.dumps({"seconds": time.perf_counter() - start, "trajectories": 2 * samples, "evaluations": evals}))
