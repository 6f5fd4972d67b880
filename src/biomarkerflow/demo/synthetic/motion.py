"""The signal model: wrist acceleration (in g) for each activity kind of the schedule.

A unit gravity vector in the device frame, turned by the arm's orientation, plus linear
movement and a few mg of sensor noise (quantised to 12 bits when written).

- sedentary (awake, worn): orientation that drifts continuously by a few degrees and
  changes every 1-6 minutes, occasional small gestures; ENMO well below 0.05 g.
- light: frequent orientation changes and continuous moderate movement, ENMO 0.06-0.09 g.
- walking (moderate): arm swing at half the step frequency (steps at 1.75-2.05 Hz) with
  vertical impacts at the step frequency, ENMO 0.17-0.33 g; running (vigorous): steps at
  2.5-2.9 Hz, ENMO 0.55-0.85 g. Intensities follow SKDH's ``migueles_wrist_adult``
  cut-points (ENMO on 5 s epochs: sedentary < 0.050 <= light < 0.110 <= moderate
  < 0.440 <= vigorous); each bout's movement amplitude is scaled to a target ENMO drawn
  well inside its band.
- sleep: long still postures (posture changes every 20-75 min), small postural shifts of
  1-3 degrees every 3-15 min and brief twitches every 4-15 min, slow drift; this keeps
  every 60-minute window above SKDH's non-wear range criterion while the 5-minute median
  arm-angle change stays far below its sleep (TSO) threshold. Optional brief awakenings.
- non-wear: the device lies flat and perfectly still (sensor noise only, about 2.5 mg).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt

from biomarkerflow.demo.synthetic.schedule import BED_WAKE, LIGHT, NONWEAR, RUN, SEDENTARY, SLEEP, Schedule
from biomarkerflow.demo.synthetic.spec import RecordingSpec

FloatArray = npt.NDArray[np.float64]

_SENSOR_NOISE_G = 0.0025


def accel_segments(spec: RecordingSpec, schedule: Schedule) -> Iterator[tuple[int, FloatArray]]:
    """Yield (first sample, accel in g) per activity segment, in order.

    Each segment draws from its own random stream (``[seed, 1, segment index]``) and starts
    from the orientation the previous one ended in, so the arm never jumps.
    """
    el, az = -30.0, 0.0
    fs = spec.fs
    for i, (s0, s1, kind) in enumerate(schedule.segments()):
        rng = np.random.default_rng([spec.seed, 1, i])
        n = s1 - s0
        if kind == NONWEAR:
            acc, el, az = _gen_nonwear(rng, n, fs, el, az)
        elif kind == SLEEP:
            acc, el, az = _gen_sleep(rng, n, fs, el, az)
        elif kind == BED_WAKE:
            acc, el, az = _gen_bed_wake(rng, n, fs, el, az)
        elif kind == SEDENTARY:
            acc, el, az = _gen_sedentary(rng, n, fs, el, az)
        elif kind == LIGHT:
            acc, el, az = _gen_light(rng, n, fs, el, az)
        else:
            acc, el, az = _gen_walk(rng, n, fs, el, az, running=kind == RUN)
        acc += _SENSOR_NOISE_G * rng.standard_normal(acc.shape, dtype=np.float32)
        yield s0, acc


def _smoothstep(x: FloatArray) -> FloatArray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _knot_noise(rng: np.random.Generator, n: int, fs: float, knot_hz: float, dims: int) -> FloatArray:
    """Smooth noise: unit normal knots at ``knot_hz``, smoothstep-interpolated, (n, dims)."""
    step = fs / knot_hz
    knots = rng.standard_normal((int(n / step) + 2, dims))
    pos = np.arange(n) / step
    whole = np.floor(pos)
    frac = pos - whole
    # smoothstep interpolation == linear interpolation at a warped position (fast in C)
    warped = whole + frac * frac * (3.0 - 2.0 * frac)
    grid = np.arange(knots.shape[0], dtype=np.float64)
    out = np.empty((n, dims))
    for k in range(dims):
        out[:, k] = np.interp(warped, grid, knots[:, k])
    return out


def _ramp_in(n: int, fs: float, seconds: float = 2.0) -> FloatArray:
    return _smoothstep(np.arange(n) / max(seconds * fs, 1.0))


def _orientation_path(
    n: int, el0: float, az0: float, events: Sequence[tuple[int, int, float, float]]
) -> tuple[FloatArray, FloatArray]:
    """Hold an orientation and move smoothly to each event's (elevation, azimuth).

    ``events`` are (start sample, transition samples, elevation deg, azimuth deg), sorted.
    Azimuth moves the short way round.
    """
    el = np.empty(n)
    az = np.empty(n)
    cur_el, cur_az = el0, az0
    pos = 0
    for s, length, t_el, t_az in events:
        s = min(max(s, pos), n)
        el[pos:s] = cur_el
        az[pos:s] = cur_az
        t_az = cur_az + ((t_az - cur_az + 180.0) % 360.0 - 180.0)
        length = max(length, 1)
        e = min(s + length, n)
        if e > s:
            f = _smoothstep((np.arange(s, e) - s + 1.0) / length)
            el[s:e] = cur_el + (t_el - cur_el) * f
            az[s:e] = cur_az + (t_az - cur_az) * f
        cur_el, cur_az = t_el, t_az
        pos = e
        if pos >= n:
            break
    el[pos:] = cur_el
    az[pos:] = cur_az
    return el, az


def _unit(el_deg: FloatArray, az_deg: FloatArray) -> FloatArray:
    """Gravity direction in the device frame; elevation is SKDH's z-angle."""
    el = np.radians(el_deg)
    az = np.radians(az_deg)
    c = np.cos(el)
    return np.stack((c * np.cos(az), c * np.sin(az), np.sin(el)), axis=1)


def _bursts(
    rng: np.random.Generator,
    n: int,
    fs: float,
    every_s: tuple[float, float],
    dur_s: tuple[float, float],
    amp: tuple[float, float],
) -> FloatArray:
    """Envelope (n,) of Hann-shaped movement bursts at random intervals."""
    env = np.zeros(n)
    t = rng.uniform(*every_s) * rng.random()
    while True:
        s = int(t * fs)
        if s >= n:
            break
        length = max(int(rng.uniform(*dur_s) * fs), 2)
        e = min(s + length, n)
        env[s:e] += rng.uniform(*amp) * np.hanning(length)[: e - s]
        t += rng.uniform(*every_s)
    return env


def _enmo(acc: FloatArray) -> float:
    return float(np.maximum(np.linalg.norm(acc, axis=1) - 1.0, 0.0).mean())


def _scale_to_enmo(g: FloatArray, dyn: FloatArray, target: float, fs: float) -> float:
    """Scale factor s such that ENMO(g + s * dyn) is ``target`` (bisection)."""
    sub = slice(None, None, max(1, int(fs // 10)))
    gs, ds = g[sub], dyn[sub]
    lo, hi = 0.0, 1.0
    while _enmo(gs + hi * ds) < target and hi < 256:
        lo, hi = hi, hi * 2.0
    for _ in range(25):
        mid = 0.5 * (lo + hi)
        if _enmo(gs + mid * ds) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


Gen = tuple[FloatArray, float, float]


def _finish(el: FloatArray, az: FloatArray, dyn: FloatArray | None) -> Gen:
    acc = _unit(el, az)
    if dyn is not None:
        acc += dyn
    return acc, float(el[-1]), float(az[-1])


def _gen_nonwear(rng: np.random.Generator, n: int, fs: float, el0: float, az0: float) -> Gen:
    """Taken off and laid flat on a table: still, sensor noise only."""
    side = 1.0 if rng.random() < 0.5 else -1.0
    flat_el = side * (90.0 - rng.uniform(0.5, 2.0))  # a table is never quite level
    events = [(0, int(rng.uniform(2.0, 4.0) * fs), flat_el, rng.uniform(-180, 180))]
    el, az = _orientation_path(n, el0, az0, events)
    # handling while taking it off: a 3 s burst of movement, then nothing
    k = min(n, int(3 * fs))
    dyn = np.zeros((n, 3))
    dyn[:k] = 0.08 * np.hanning(k)[:, None] * _knot_noise(rng, k, fs, 3.0, 3)
    return _finish(el, az, dyn)


def _gen_sedentary(rng: np.random.Generator, n: int, fs: float, el0: float, az0: float) -> Gen:
    """Sitting or standing still-ish: drifting arm, posture changes, small gestures."""
    events = []
    t = 0.0
    while t * fs < n:
        events.append(
            (
                int(t * fs),
                int(rng.uniform(1.5, 4.0) * fs),
                rng.uniform(-75.0, 25.0),
                rng.uniform(-180.0, 180.0),
            )
        )
        t += rng.uniform(60.0, 360.0)
    el, az = _orientation_path(n, el0, az0, events)
    ramp = _ramp_in(n, fs)
    wob = _knot_noise(rng, n, fs, 0.7, 2) * ramp[:, None]
    el += 4.0 * wob[:, 0]
    az += 6.0 * wob[:, 1]
    env = _bursts(rng, n, fs, (15.0, 75.0), (1.0, 3.0), (0.04, 0.12))
    env += 0.01 * ramp  # fidgeting
    dyn = env[:, None] * _knot_noise(rng, n, fs, 3.0, 3)
    return _finish(el, az, dyn)


def _gen_bed_wake(rng: np.random.Generator, n: int, fs: float, el0: float, az0: float) -> Gen:
    """Awake in bed at night: restless, frequent small movements."""
    events = []
    t = 0.0
    while t * fs < n:
        events.append(
            (
                int(t * fs),
                int(rng.uniform(2.0, 5.0) * fs),
                rng.uniform(-70.0, 70.0),
                rng.uniform(-180.0, 180.0),
            )
        )
        t += rng.uniform(30.0, 120.0)
    el, az = _orientation_path(n, el0, az0, events)
    ramp = _ramp_in(n, fs)
    # turning the arm about: large, fairly quick rotations (SKDH's activity index sees them,
    # ENMO hardly does), plus small movements
    wob = _knot_noise(rng, n, fs, 1.2, 2) * ramp[:, None]
    el += 15.0 * wob[:, 0]
    az += 20.0 * wob[:, 1]
    dyn = 0.04 * _knot_noise(rng, n, fs, 3.0, 3) * ramp[:, None]
    return _finish(el, az, dyn)


def _gen_light(rng: np.random.Generator, n: int, fs: float, el0: float, az0: float) -> Gen:
    """Light activity (chores, slow pottering): continuous moderate movement."""
    events = []
    t = 0.0
    while t * fs < n:
        events.append(
            (
                int(t * fs),
                int(rng.uniform(1.0, 2.5) * fs),
                rng.uniform(-80.0, 40.0),
                rng.uniform(-180.0, 180.0),
            )
        )
        t += rng.uniform(10.0, 40.0)
    el, az = _orientation_path(n, el0, az0, events)
    ramp = _ramp_in(n, fs)
    wob = _knot_noise(rng, n, fs, 1.0, 2) * ramp[:, None]
    el += 8.0 * wob[:, 0]
    az += 10.0 * wob[:, 1]
    # a few arm rhythms per axis (0.6-2.5 Hz) with slowly wandering amplitude: steady enough
    # that nearly every 5 s epoch stays inside the light band
    secs = np.arange(n) / fs
    dyn = np.zeros((n, 3))
    for axis in range(3):
        for _ in range(3):
            f = rng.uniform(0.6, 2.5)
            dyn[:, axis] += rng.uniform(0.5, 1.0) * np.sin(2 * np.pi * f * secs + rng.uniform(0, 7))
    envelope = np.clip(1.0 + 0.08 * _knot_noise(rng, n, fs, 0.1, 1)[:, 0], 0.7, None)
    dyn *= (envelope * ramp)[:, None]
    g = _unit(el, az)
    scale = _scale_to_enmo(g, dyn, rng.uniform(0.068, 0.082), fs)
    return g + scale * dyn, float(el[-1]), float(az[-1])


def _gen_walk(rng: np.random.Generator, n: int, fs: float, el0: float, az0: float, *, running: bool) -> Gen:
    """Walking or running: periodic arm swing and step impacts."""
    if running:
        cadence, swing, base_el = rng.uniform(2.5, 2.9), rng.uniform(25, 40), rng.uniform(-50, -20)
        target = rng.uniform(0.55, 0.85)
    else:
        cadence, swing, base_el = rng.uniform(1.75, 2.05), rng.uniform(15, 25), rng.uniform(-20, 10)
        target = rng.uniform(0.17, 0.33)
    base_az = 180.0 + rng.uniform(-25.0, 25.0)
    el, az = _orientation_path(n, el0, az0, [(0, int(2.0 * fs), base_el, base_az)])
    ramp = _ramp_in(n, fs, 3.0)
    freq = cadence * (1.0 + 0.02 * _knot_noise(rng, n, fs, 0.1, 1)[:, 0])
    step_phase = 2.0 * np.pi * np.cumsum(freq) / fs + rng.uniform(0, 2 * np.pi)
    arm_phase = 0.5 * step_phase
    el = el + swing * ramp * np.sin(arm_phase)
    az = az + 3.0 * _knot_noise(rng, n, fs, 0.5, 1)[:, 0] * ramp
    g = _unit(el, az)
    # local frame: along gravity, along increasing elevation (swing), and lateral
    elr, azr = np.radians(el), np.radians(az)
    e_el = np.stack((-np.sin(elr) * np.cos(azr), -np.sin(elr) * np.sin(azr), np.cos(elr)), axis=1)
    e_az = np.stack((-np.sin(azr), np.cos(azr), np.zeros(n)), axis=1)
    ph = rng.uniform(0, 2 * np.pi, size=3)
    vertical = np.sin(step_phase + ph[0]) + 0.35 * np.sin(2.0 * step_phase + ph[1])
    forward = 0.8 * np.sin(arm_phase + ph[2])
    lateral = 0.3 * np.sin(step_phase + ph[2])
    amp = np.clip(1.0 + 0.1 * _knot_noise(rng, n, fs, 0.2, 1)[:, 0], 0.5, None) * ramp
    dyn = (vertical[:, None] * g + forward[:, None] * e_el + lateral[:, None] * e_az) * amp[:, None]
    dyn += 0.15 * _knot_noise(rng, n, fs, 8.0, 3) * amp[:, None]
    scale = _scale_to_enmo(g, dyn, target, fs)
    return g + scale * dyn, float(el[-1]), float(az[-1])


def _gen_sleep(rng: np.random.Generator, n: int, fs: float, el0: float, az0: float) -> Gen:
    """Asleep: still postures, small postural shifts, twitches, slow drift."""
    events: list[tuple[int, int, float, float]] = []
    posture_el, posture_az = rng.uniform(-60.0, 60.0), rng.uniform(-180.0, 180.0)
    events.append((0, int(rng.uniform(3.0, 6.0) * fs), posture_el, posture_az))
    cur_el, cur_az = posture_el, posture_az
    big: list[tuple[int, int]] = [(0, events[0][1])]
    t_posture = rng.uniform(20.0, 75.0) * 60.0
    t_shift = rng.uniform(3.0, 15.0) * 60.0
    while min(t_posture, t_shift) * fs < n:
        if t_posture <= t_shift:
            # a new posture at least 30 degrees away (elevation or azimuth)
            while True:
                new_el, new_az = rng.uniform(-70.0, 70.0), rng.uniform(-180.0, 180.0)
                d_az = abs((new_az - cur_az + 180.0) % 360.0 - 180.0)
                if abs(new_el - cur_el) > 30.0 or d_az > 45.0:
                    break
            length = int(rng.uniform(3.0, 8.0) * fs)
            events.append((int(t_posture * fs), length, new_el, new_az))
            big.append((int(t_posture * fs), length))
            cur_el, cur_az = new_el, new_az
            t_posture += rng.uniform(20.0, 75.0) * 60.0
        else:
            d_el = rng.choice([-1.0, 1.0]) * rng.uniform(1.0, 3.0)
            d_az = rng.choice([-1.0, 1.0]) * rng.uniform(1.0, 3.0)
            cur_el = float(np.clip(cur_el + d_el, -80.0, 80.0))
            cur_az = cur_az + d_az
            events.append((int(t_shift * fs), int(rng.uniform(0.5, 1.5) * fs), cur_el, cur_az))
            t_shift += rng.uniform(3.0, 15.0) * 60.0
    events.sort(key=lambda ev: ev[0])
    el, az = _orientation_path(n, el0, az0, events)
    drift = _knot_noise(rng, n, fs, 1.0 / 120.0, 2) * _ramp_in(n, fs, 60.0)[:, None]
    el += 0.3 * drift[:, 0]
    az += 0.3 * drift[:, 1]
    env = _bursts(rng, n, fs, (240.0, 900.0), (0.5, 1.5), (0.08, 0.16))
    for s, length in big:  # movement while turning over
        e = min(s + length + int(2 * fs), n)
        if e > s:
            env[s:e] += 0.12 * np.hanning(e - s + 2)[1:-1][: e - s]
    dyn = env[:, None] * _knot_noise(rng, n, fs, 4.0, 3)
    return _finish(el, az, dyn)
