"""A small causal spatio-temporal autoencoder for 3-channel videos (RGB and raxel halves).

Frame 0 is encoded alone, then each group of `temporal_factor` frames gives one latent frame:
the clip is padded at the front with `temporal_factor - 1` copies of frame 0 (as causal video
VAEs do) so every group has the same size, and a latent frame only sees the frames of its own
group. A per-frame 2D conv encoder takes each frame to the latent grid (s = S / spatial_factor),
the features of a group are stacked on channels and mixed into `latent_channels` channels.
The decoder mirrors it: one latent frame -> `temporal_factor` frame features -> 2D decoder.

    encode: (B, T, 3, S, S) in [-1, 1] -> (B, t, C, s, s)
    decode: (B, t, C, s, s) -> (B, T, 3, S, S),  T = 1 + temporal_factor * (t - 1)

A linear skip path carries the average-pooled frames of each group (their mean and slope in
time) into the latent and back (bilinear upsampling): smooth raxel images pass almost exactly
from the start, and the conv paths learn the detail. Latents are multiplied by `latent_scale` (a buffer set after training so the latents of the
training mix have unit standard deviation) before they leave `encode`, and divided by it in
`decode`. Initialisation: PyTorch's default conv init, the second conv of every ResBlock zero (so
each block starts as the identity), the last conv of each conv path zero (so the codec
starts as its skip path, initialised by `_init_skip`). No normalisation layers (see ResBlock).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from rap_ros.contract.config import ModelConfig


class ResBlock(nn.Module):
    """x + conv(silu(conv(silu(x)))), the second conv zero-initialised (identity at init).

    No normalisation layer: GroupNorm's per-frame spatial statistics would remove exactly what
    raxel images carry in their absolute levels (a constant ray-origin image, the mean ray
    direction = the camera rotation)."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x):                                   # x: (N, ch, h, w)
        h = self.conv1(F.silu(x))                           # (N, ch, h, w)
        h = self.conv2(F.silu(h))                           # (N, ch, h, w)
        return x + h                                        # (N, ch, h, w)


class FrameEncoder(nn.Module):
    """One frame -> features on the latent grid: (N, 3, S, S) -> (N, widths[-1], s, s).
    Full resolution only has the stem conv (it dominates the cost on a CPU); each halving is a
    stride-2 conv followed by a ResBlock."""

    def __init__(self, widths):
        super().__init__()
        layers = [nn.Conv2d(3, widths[0], 3, padding=1)]
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(w_in, w_out, 3, stride=2, padding=1), ResBlock(w_out)]
        layers += [nn.SiLU()]
        self.body = nn.Sequential(*layers)

    def forward(self, x):                                   # x: (N, 3, S, S)
        return self.body(x)                                 # (N, w, s, s)


class FrameDecoder(nn.Module):
    """Features on the latent grid -> one frame: (N, widths[-1], s, s) -> (N, 3, S, S).
    Mirrors FrameEncoder: ResBlock, then per doubling nearest upsampling + conv (+ ResBlock
    below full resolution), then SiLU, conv to RGB."""

    def __init__(self, widths):
        super().__init__()
        layers = [ResBlock(widths[-1])]
        rev = widths[::-1]
        for i, (w_in, w_out) in enumerate(zip(rev[:-1], rev[1:])):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"),
                       nn.Conv2d(w_in, w_out, 3, padding=1)]
            if i < len(rev) - 2:
                layers.append(ResBlock(w_out))
        layers += [nn.SiLU(), nn.Conv2d(widths[0], 3, 3, padding=1)]
        self.body = nn.Sequential(*layers)

    def forward(self, h):                                   # h: (N, w, s, s)
        return self.body(h)                                 # (N, 3, S, S)


class CausalVideoCodec(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        tf, w, C = config.temporal_factor, config.codec_widths[-1], config.latent_channels
        self.tf, self.sf = tf, config.spatial_factor
        self.frame_encoder = FrameEncoder(config.codec_widths)
        self.to_latent = nn.Sequential(nn.Conv2d(tf * w, w, 1), nn.SiLU(),
                                       nn.Conv2d(w, C, 3, padding=1))
        self.from_latent = nn.Sequential(nn.Conv2d(C, w, 3, padding=1), nn.SiLU(),
                                         nn.Conv2d(w, tf * w, 1))
        self.frame_decoder = FrameDecoder(config.codec_widths)
        # Linear skip path: average-pooled group frames -> latent, latent -> per-frame images
        # upsampled bilinearly (see _init_skip); the conv paths learn what it misses.
        self.skip_in = nn.Conv2d(tf * 3, C, 1, bias=False)
        self.skip_out = nn.Conv2d(C, tf * 3, 1, bias=False)
        self.register_buffer("latent_scale", torch.ones(()))
        self._init_skip()
        with torch.no_grad():
            self.to_latent[-1].weight.zero_()
            self.to_latent[-1].bias.zero_()
            self.frame_decoder.body[-1].weight.zero_()
            self.frame_decoder.body[-1].bias.zero_()

    @torch.no_grad()
    def _init_skip(self):
        """Start the skip path as a least-squares line through each group in time: latent
        channels 0:3 = mean of the group's pooled frames, 3:6 = their slope per frame (when
        latent_channels allows); frame k of the group decodes to mean + (k - c) * slope with
        c = (tf - 1) / 2. Exact for pooled content that changes linearly within a group, which
        smooth camera motion nearly does for raxel images."""
        tf, C = self.tf, self.skip_in.weight.shape[0]
        self.skip_in.weight.zero_()
        self.skip_out.weight.zero_()
        offsets = torch.arange(tf, dtype=torch.float32) - (tf - 1) / 2   # (tf,)
        denom = float((offsets ** 2).sum()) or 1.0
        for c in range(3):
            if c < C:
                for k in range(tf):
                    self.skip_in.weight[c, 3 * k + c] = 1.0 / tf
                    self.skip_out.weight[3 * k + c, c] = 1.0
            if tf > 1 and 3 + c < C:
                for k in range(tf):
                    self.skip_in.weight[3 + c, 3 * k + c] = offsets[k] / denom
                    self.skip_out.weight[3 * k + c, 3 + c] = offsets[k]

    def _pad(self, x):
        """Front-pad with tf - 1 copies of frame 0: (B, T, ...) -> (B, tf * t, ...)."""
        if self.tf == 1:
            return x
        first = x[:, :1].expand(-1, self.tf - 1, *x.shape[2:])
        return torch.cat([first, x], dim=1)

    def encode(self, x):                                    # x: (B, T, 3, S, S)
        B, T = x.shape[:2]
        if (T - 1) % self.tf:
            raise ValueError(f"{T} frames is not 1 + {self.tf} * k")
        x = self._pad(x)                                    # (B, tf*t, 3, S, S)
        t = x.shape[1] // self.tf
        frames = x.flatten(0, 1)                            # (B*tf*t, 3, S, S)
        h = self.frame_encoder(frames)                      # (B*tf*t, w, s, s)
        h = h.reshape(B * t, self.tf * h.shape[1], *h.shape[2:])  # (B*t, tf*w, s, s)
        pooled = F.avg_pool2d(frames, self.sf)              # (B*tf*t, 3, s, s)
        pooled = pooled.reshape(B * t, self.tf * 3, *pooled.shape[2:])  # (B*t, tf*3, s, s)
        z = (self.to_latent(h) + self.skip_in(pooled)) * self.latent_scale  # (B*t, C, s, s)
        return z.reshape(B, t, *z.shape[1:])                # (B, t, C, s, s)

    def decode(self, z, frames: int = None):                # z: (B, t, C, s, s)
        B, t = z.shape[:2]
        z = z.flatten(0, 1) / self.latent_scale             # (B*t, C, s, s)
        h = self.from_latent(z)                             # (B*t, tf*w, s, s)
        h = h.reshape(B * t * self.tf, -1, *h.shape[2:])    # (B*t*tf, w, s, s)
        low = self.skip_out(z).reshape(B * t * self.tf, 3, *z.shape[2:])  # (B*t*tf, 3, s, s)
        low = F.interpolate(low, scale_factor=self.sf, mode="bilinear",
                            align_corners=False)            # (B*t*tf, 3, S, S)
        x = self.frame_decoder(h) + low                     # (B*t*tf, 3, S, S)
        x = x.reshape(B, t * self.tf, *x.shape[1:])         # (B, tf*t, 3, S, S)
        x = x[:, self.tf - 1:]                              # (B, T, 3, S, S), padding dropped
        if frames is not None:
            if frames > x.shape[1]:
                raise ValueError(f"{t} latent frames decode to {x.shape[1]} frames, not {frames}")
            x = x[:, :frames]
        return x

    def forward(self, x):                                   # x: (B, T, 3, S, S)
        return self.decode(self.encode(x), frames=x.shape[1])  # (B, T, 3, S, S)


def encode_raxels_latent(codec: CausalVideoCodec, raxels):
    """Normalised raxels (B, T, 6, S, S) -> raxel latents (B, t, 2C, s, s): the direction and
    origin halves are encoded as two videos and concatenated on channels."""
    return torch.cat([codec.encode(raxels[:, :, 0:3]), codec.encode(raxels[:, :, 3:6])], dim=2)


def decode_raxels_latent(codec: CausalVideoCodec, z, frames: int = None):
    """Raxel latents (B, t, 2C, s, s) -> normalised raxels (B, T, 6, S, S)."""
    C = z.shape[2] // 2
    return torch.cat([codec.decode(z[:, :, :C], frames), codec.decode(z[:, :, C:], frames)], dim=2)
