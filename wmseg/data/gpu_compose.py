"""The fast path's compositor in torch: a batch of plans (`wmseg.synth.compose.Plan`)
carried out on the training device (`data.compose_on=gpu`).

The layer bank (marks as one flat RGBA buffer, backgrounds, the noise table) is moved to
the device once; after that a batch costs the loader only its plans (a few hundred bytes
a sample) and the device does the rest: gathers backgrounds, samples every mark's tile
through its inverse map (a tiled grid folded into one cell with a modulo), blends it in
its mode, takes the visible footprint as the mask, then blurs, resizes, adds noise,
rounds and JPEG-compresses (torchvision's codec, on the device where it supports it).
It follows `wmseg.synth.compose.compose` step by step; the two differ only by
interpolation rounding (OpenCV samples tiles at 1/32 px in fixed point, this in float)
and the JPEG codec: tests/test_fast_synthesis.py states the tolerance. No Lightning.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from wmseg.synth.compose import LINES, noise_table
from wmseg.synth.config import SynthConfig
from wmseg.synth.layer_bank import COL, LayerBank


def _dihedral_index(size: int) -> torch.Tensor:
    """(8, size * size): for each of the 8 flips and quarter turns, the source pixel of
    every output pixel (as `wmseg.synth.compose.dihedral`)."""
    from wmseg.synth.compose import dihedral

    grid = np.arange(size * size).reshape(size, size, 1)
    return torch.from_numpy(np.stack([dihedral(grid, c).reshape(-1) for c in range(8)]).copy())


def _band(t: torch.Tensor, period: torch.Tensor, offset: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    m = torch.remainder(t - offset, period)
    d = torch.minimum(m, period - m)
    return (width / 2 + 0.5 - d).clamp(0.0, 1.0)


def _blend(image: torch.Tensor, colour: torch.Tensor, mode: torch.Tensor) -> torch.Tensor:
    """Per-sample blend mode (B,) of `colour` over `image`, both (B, 3, H, W)."""
    multiply = image * colour / 255.0
    screen = 255.0 - (255.0 - image) * (255.0 - colour) / 255.0
    overlay = torch.where(
        image < 128, 2 * image * colour / 255.0, 255.0 - 2 * (255.0 - image) * (255.0 - colour) / 255.0
    )
    m = mode.view(-1, 1, 1, 1)
    return torch.where(m == 0, colour, torch.where(m == 1, multiply, torch.where(m == 2, screen, overlay)))


def gaussian_kernels(sigmas: torch.Tensor) -> torch.Tensor:
    """(B, 2R + 1) normalised Gaussians of radius ceil(4 sigma) each (as
    `wmseg.synth.compose.gaussian_kernel`), zero-padded to the batch's largest radius R;
    a sigma of 0 gives the identity."""
    radii = [max(1, math.ceil(4.0 * float(s))) if s > 0 else 0 for s in sigmas.tolist()]
    r = max([*radii, 1])
    x = torch.arange(-r, r + 1, dtype=torch.float64, device=sigmas.device)
    out = torch.zeros(len(radii), 2 * r + 1, dtype=torch.float64, device=sigmas.device)
    for i, (s, radius) in enumerate(zip(sigmas.tolist(), radii, strict=True)):
        if radius == 0:
            out[i, r] = 1.0
            continue
        k = torch.exp(-0.5 * (x / s) ** 2) * (x.abs() <= radius)
        out[i] = k / k.sum()
    return out.float()


def separable_blur(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Blur each sample of (B, C, H, W) by its own 1-D kernel (B, K) along both axes, the
    border replicated."""
    b, c, h, w = x.shape
    k = kernels.shape[1]
    r = k // 2
    weight = kernels.repeat_interleave(c, dim=0)  # (B * C, K)
    flat = x.reshape(1, b * c, h, w)
    flat = F.conv2d(F.pad(flat, (r, r, 0, 0), mode="replicate"), weight.view(b * c, 1, 1, k), groups=b * c)
    flat = F.conv2d(F.pad(flat, (0, 0, r, r), mode="replicate"), weight.view(b * c, 1, k, 1), groups=b * c)
    return flat.view(b, c, h, w)


class TorchComposer:
    """Carries out batches of plans on their device (the bank moved there on first use).

    Example:
        >>> out = TorchComposer(config, bank)(batch)  # doctest: +SKIP
        >>> out["image"].shape, out["mask"].shape  # doctest: +SKIP
        (torch.Size([64, 3, 192, 192]), torch.Size([64, 1, 192, 192]))
    """

    def __init__(self, config: SynthConfig, bank: LayerBank) -> None:
        self.config, self.bank = config, bank
        self.device: torch.device | None = None

    def _to(self, device: torch.device) -> None:
        if self.device == device:
            return
        bank = self.bank
        offsets, pixels, base = [], [], 0
        for shard_pixels, shard_index in bank.layer_shards:
            pixels.append(torch.from_numpy(np.array(shard_pixels)))
            offsets.append(shard_index[:, COL["offset"]] + base)
            base += len(shard_pixels)
        index = bank.layer_index()
        self.pixels = torch.cat(pixels).to(device)  # (P, 4) uint8
        self.offsets = torch.from_numpy(np.concatenate(offsets)).long().to(device)
        self.heights = torch.from_numpy(index[:, COL["height"]]).long().to(device)
        self.widths = torch.from_numpy(index[:, COL["width"]]).long().to(device)
        self.line_opacity = torch.from_numpy(index[:, COL["opacity"]]).float().to(device)
        self.backgrounds = torch.cat([torch.from_numpy(np.array(p)) for p, _ in bank.background_shards]).to(
            device
        )  # (N, S, S, 3) uint8
        self.noise = torch.from_numpy(noise_table(bank.spec.seed)).to(device)
        self.dihedral = _dihedral_index(self.config.size).to(device)
        self.device = device

    def _sample(self, layer: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Bilinear samples (B, H, W, 4) of each sample's tile at tile pixel coordinates
        (u, v) (B, H, W); zero outside the tile (OpenCV's constant border)."""
        h = self.heights[layer].view(-1, 1, 1)
        w = self.widths[layer].view(-1, 1, 1)
        off = self.offsets[layer].view(-1, 1, 1)
        x0, y0 = torch.floor(u), torch.floor(v)
        fx, fy = (u - x0).unsqueeze(-1), (v - y0).unsqueeze(-1)
        x0, y0 = x0.long(), y0.long()
        out = torch.zeros((*u.shape, 4), device=u.device)
        for dx, dy, weight in (
            (0, 0, (1 - fx) * (1 - fy)),
            (1, 0, fx * (1 - fy)),
            (0, 1, (1 - fx) * fy),
            (1, 1, fx * fy),
        ):
            xi, yi = x0 + dx, y0 + dy
            inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
            idx = torch.where(inside, off + yi * w + xi, torch.zeros_like(xi))
            out += self.pixels[idx].float() * (weight * inside.unsqueeze(-1))
        return out

    @torch.no_grad()
    def __call__(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        device = batch["plan_layer"].device
        self._to(device)
        cfg, size = self.config, self.config.size
        b = batch["plan_layer"].shape[0]
        bg = self.backgrounds[batch["plan_background"]].view(b, size * size, 3)
        perm = self.dihedral[batch["plan_dihedral"]].unsqueeze(-1).expand(-1, -1, 3)
        clean = torch.gather(bg, 1, perm).view(b, size, size, 3).permute(0, 3, 1, 2).float()
        image = clean.clone()
        ys, xs = torch.meshgrid(
            torch.arange(size, device=device, dtype=torch.float32),
            torch.arange(size, device=device, dtype=torch.float32),
            indexing="ij",
        )
        for slot in range(batch["plan_layer"].shape[1]):
            valid = batch["plan_valid"][:, slot]
            if not bool(valid.any()):
                continue
            layer = batch["plan_layer"][:, slot]
            m = batch["plan_inverse"][:, slot].float()  # (B, 2, 3)
            u = m[:, 0, 0, None, None] * xs + m[:, 0, 1, None, None] * ys + m[:, 0, 2, None, None]
            v = m[:, 1, 0, None, None] * xs + m[:, 1, 1, None, None] * ys + m[:, 1, 2, None, None]
            tiled = batch["plan_tiled"][:, slot].view(-1, 1, 1)
            cell = batch["plan_cell"][:, slot].float()
            dx = torch.where(tiled[:, 0, 0], cell[:, 0], torch.ones_like(cell[:, 0])).view(-1, 1, 1)
            dy = torch.where(tiled[:, 0, 0], cell[:, 1], torch.ones_like(cell[:, 1])).view(-1, 1, 1)
            r = torch.floor(v / dy)
            shift = torch.where(torch.remainder(r, 2) == 1, dx / 2, torch.zeros_like(dx))
            tu = torch.where(tiled, torch.remainder(u - shift, dx) - cell[:, 2].view(-1, 1, 1), u)
            tv = torch.where(tiled, v - r * dy - cell[:, 3].view(-1, 1, 1), v)
            sampled = self._sample(layer, tu, tv).permute(0, 3, 1, 2)  # (B, 4, H, W)
            opacity = batch["plan_opacity"][:, slot].float().view(-1, 1, 1, 1)
            a = (sampled[:, 3:] * opacity / 255.0).clamp(max=1.0) * valid.view(-1, 1, 1, 1)
            recolour = batch["plan_recolour"][:, slot].view(-1, 1, 1, 1)
            colour = batch["plan_colour"][:, slot].float().view(-1, 3, 1, 1)
            colour_px = torch.where(recolour, colour.expand_as(sampled[:, :3]), sampled[:, :3])
            mode = batch["plan_mode"][:, slot]
            image = image + a * (_blend(image, colour_px, mode) - image)
            lines = batch["plan_lines"][:, slot].float()
            on = (lines[:, LINES.index("on")] > 0) & valid
            if bool(on.any()):
                # Rows without lines get periods of 1: a modulo by 0 would make NaNs that
                # survive the multiplication by `on`.
                for name in ("period", "step"):
                    i = LINES.index(name)
                    lines[:, i] = torch.where(on, lines[:, i], torch.ones_like(lines[:, i]))
                col = {name: lines[:, i].view(-1, 1, 1) for i, name in enumerate(LINES)}
                cov = _band(v, col["period"], col["offset"], col["width"])
                slant = _band(u * col["nx"] + v * col["ny"], col["step"], col["slant_offset"], col["width"])
                cov = torch.where(col["slant_on"] > 0, torch.maximum(cov, slant), cov)
                op = (self.line_opacity[layer] * batch["plan_opacity"][:, slot].float()).view(-1, 1, 1)
                a = ((cov * op).clamp(max=1.0) * on.view(-1, 1, 1)).unsqueeze(1)
                image = image + a * (_blend(image, colour.expand_as(image), mode) - image)
        diff = (image - clean).abs()
        diff = (
            diff.amax(dim=1, keepdim=True)
            if cfg.footprint_channels == "max"
            else diff.mean(dim=1, keepdim=True)
        )
        if cfg.footprint_blur > 0:
            k = gaussian_kernels(torch.full((b,), cfg.footprint_blur, device=device))
            diff = separable_blur(diff, k)
        mask = (diff >= cfg.visibility_threshold).float()
        image = self._degrade(image, batch["plan_degrade"].float())
        if "live" in batch and bool(batch["live"].any()):
            live = batch["live"].view(-1, 1, 1, 1)
            image = torch.where(live, batch["live_image"].float(), image)
            mask = torch.where(live, batch["live_mask"].float(), mask)
        return {"image": image / 255.0, "mask": mask}

    def _degrade(self, image: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """The degradations of `wmseg.synth.compose.degrade`, per sample; uint8-valued
        float (B, 3, H, W) out."""
        b, _, size, _ = image.shape
        shift = (d[:, 0] > 0).view(-1, 1, 1, 1)
        image = torch.where(shift, image * d[:, 1:4].view(-1, 3, 1, 1) + d[:, 4:7].view(-1, 3, 1, 1), image)
        if bool((d[:, 7] > 0).any()):
            image = separable_blur(image, gaussian_kernels(d[:, 7]))
        for i in torch.nonzero(d[:, 8] > 0).flatten().tolist():
            small = max(1, round(size * float(d[i, 8])))
            x = F.interpolate(image[i : i + 1], size=(small, small), mode="bilinear", align_corners=False)
            image[i : i + 1] = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        n = size * size * 3
        idx = d[:, 10].long().view(-1, 1) + torch.arange(n, device=image.device)
        grain = self.noise[idx].view(b, size, size, 3).permute(0, 3, 1, 2)
        image = torch.round(image + grain * d[:, 9].view(-1, 1, 1, 1)).clamp(0, 255)
        quality = d[:, 11].long()
        if bool((quality > 0).any()):
            image = self._jpeg(image, quality)
        return image

    @staticmethod
    def _jpeg(image: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
        """JPEG round trips at each sample's quality: torchvision's codec on the device
        where it supports it (nvJPEG on CUDA), else on the CPU."""
        from torchvision.io import decode_jpeg, encode_jpeg

        out = image.clone()
        for q in torch.unique(quality[quality > 0]).tolist():
            rows = torch.nonzero(quality == q).flatten().tolist()
            tiles = [image[i].to(torch.uint8) for i in rows]
            try:
                encoded = [e.cpu() for e in encode_jpeg(tiles, quality=int(q))]
                decoded = decode_jpeg(encoded, device=image.device)
            except (RuntimeError, TypeError, ValueError):  # no device codec: the CPU one
                encoded = encode_jpeg([t.cpu() for t in tiles], quality=int(q))
                decoded = [t.to(image.device) for t in decode_jpeg(encoded)]
            for i, t in zip(rows, decoded, strict=True):
                out[i] = t.float()
        return out
