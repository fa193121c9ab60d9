"""Periodic lesion textures of the budget preset: one per class, all with the same mean colour."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from wsi_downsample.synthetic.texture import _periodic_noise, pack_rgb, textures, uniform

__all__ = ["LESION_PERIOD", "LESION_RGB", "GlandSpec", "GLAND_SPECS", "lesion_textures"]

LESION_PERIOD = 1024  # lesion textures repeat every LESION_PERIOD level-0 pixels
LESION_RGB = np.array([180.0, 112.0, 172.0], np.float32)
"""Mean colour of every lesion class (purple: epithelium-dense); stroma is pinker."""

_LUMEN_RGB = np.array([244.0, 236.0, 244.0], np.float32)
_EPITHELIUM_RGB = np.array([150.0, 80.0, 170.0], np.float32)


@dataclass(frozen=True)
class GlandSpec:
    """Glands of one lesion class on a jittered grid of ``cell_um`` cells.

    ``diameter``: gland diameter range as a fraction of the cell (above 1: glands fuse into
    sheets); ``lumen``: lumen radius / gland radius range (0: solid); ``cribriform``: punched
    round holes instead of one lumen; ``tufts``: amplitude of the lumen's tufted outline;
    ``nuclei_um``: scale of the dark nuclear texture and ``nuclei``: its contrast.
    """

    cell_um: float
    diameter: tuple[float, float]
    lumen: tuple[float, float]
    cribriform: bool = False
    tufts: float = 0.0
    nuclei_um: float = 1.2
    nuclei: float = 0.25


GLAND_SPECS: dict[int, GlandSpec] = {
    1: GlandSpec(36.0, (0.78, 0.90), (0.50, 0.65)),  # benign: large glands, wide lumen
    2: GlandSpec(18.0, (0.60, 0.75), (0.35, 0.50)),  # Gleason 3: small, discrete glands
    3: GlandSpec(40.0, (1.00, 1.10), (0.0, 0.0), cribriform=True),  # Gleason 4: fused sheets
    4: GlandSpec(16.0, (0.80, 0.92), (0.70, 0.80), nuclei=0.10),  # atrophy: flat thin rims
    5: GlandSpec(30.0, (0.75, 0.88), (0.30, 0.45), tufts=0.35, nuclei_um=3.0, nuclei=0.5),
}
"""Per lesion class: the gland pattern that tells the classes apart at full resolution."""


def _glands(spec: GlandSpec, mpp: float, seed: int, stream: int) -> tuple:
    """Epithelium and lumen masks of one class over the period.

    Shape: two ``(P, P)`` bool arrays.
    """
    p = LESION_PERIOD
    n = max(1, round(p * mpp / spec.cell_um))
    cell = p / n
    cy, cx = np.arange(n)[:, None], np.arange(n)[None, :]
    rnd = [uniform(cy, cx, seed, stream + k) for k in range(8)]
    a = cell / 2 * (spec.diameter[0] + rnd[0] * (spec.diameter[1] - spec.diameter[0]))
    b = a * (0.75 + 0.25 * rnd[1])
    phi = np.pi * rnd[2]
    room = np.maximum(cell / 2 - a - 1, 0)
    gx = (cx + 0.5) * cell + (2 * rnd[3] - 1) * room
    gy = (cy + 0.5) * cell + (2 * rnd[4] - 1) * room
    lumen = spec.lumen[0] + rnd[5] * (spec.lumen[1] - spec.lumen[0])
    pos = np.arange(p) + 0.5
    iy = (pos // cell).astype(np.int64)[:, None]
    ix = (pos // cell).astype(np.int64)[None, :]
    dx, dy = pos[None, :] - gx[iy, ix], pos[:, None] - gy[iy, ix]
    c, s = np.cos(phi)[iy, ix], np.sin(phi)[iy, ix]
    u, v = (dx * c + dy * s) / a[iy, ix], (dy * c - dx * s) / b[iy, ix]
    rho = np.hypot(u, v)
    edge = lumen[iy, ix]
    if spec.tufts:
        k = (7 + np.floor(5 * rnd[6])).astype(np.int64)[iy, ix]
        edge = edge * (1 + spec.tufts * np.sin(k * np.arctan2(v, u) + 6.3 * rnd[7][iy, ix]))
    gland = rho <= 1
    hole = rho < edge
    if spec.cribriform:
        hole = (rho < 0.85) & (_periodic_noise(3.0 / mpp, seed, stream + 9, p) > 0.6)
    return gland & ~hole, gland & hole


def _match_mean(rgb: np.ndarray, lum: np.ndarray) -> np.ndarray:
    """Scale the non-lumen pixels per channel so that the mean is :data:`LESION_RGB`.

    Lumen stays near-white; epithelium and stroma take the whole correction.
    """
    rest = LESION_RGB * lum.size - rgb[lum].sum(axis=0)
    scale = rest / np.maximum(rgb[~lum].sum(axis=0), 1.0)
    out = rgb.copy()
    out[~lum] *= scale
    return out


@lru_cache(maxsize=4)
def lesion_textures(seed: int, mpp: float) -> np.ndarray:
    """Packed RGB textures of the lesion classes (index = class; 0 unused), built once.

    Each class: its glands (epithelium shaded by a nuclear texture, near-white lumen) in
    the slide's stroma; epithelium and stroma are then tinted so that the texture's mean
    is :data:`LESION_RGB` for every class (where lesions are shows at low resolution, their
    class only at full resolution).

    Shape: ``(6, P, P)`` uint32 (see ``pack_rgb``).
    """
    p = LESION_PERIOD
    base = textures(seed, mpp)
    stroma_small = base.stroma.view(np.uint8).reshape(*base.stroma.shape, 4)[..., :3]
    reps = -(-p // stroma_small.shape[0])
    stroma = np.tile(stroma_small, (reps, reps, 1))[:p, :p].astype(np.float32)
    fine = _periodic_noise(1.2 / mpp, seed, 60, p)
    lumen = _LUMEN_RGB * (0.98 + 0.04 * fine)[..., None]
    out = np.zeros((len(GLAND_SPECS) + 1, p, p), np.uint32)
    for cls, spec in GLAND_SPECS.items():
        epi, lum = _glands(spec, mpp, seed, 100 + 20 * cls)
        grain = _periodic_noise(spec.nuclei_um / mpp, seed, 61 + cls, p)
        shade = (1 - spec.nuclei * (grain - 0.5) * 2).astype(np.float32)
        rgb = np.where(lum[..., None], lumen, stroma)
        rgb = np.where(epi[..., None], _EPITHELIUM_RGB * shade[..., None], rgb)
        rgb = _match_mean(rgb, lum)
        out[cls] = pack_rgb(np.clip(np.rint(rgb), 0, 255).astype(np.uint8))
    return out
