"""Joint video/camera denoiser: a DiT with Decoupled Self-Cross Attention (DSCA).

Two token streams share one network: video latents (plus motion channels, concatenated before
the patch embedding) and raxel latents, each with its own patch embedding. A DSCA block does,
for each modality m in (video, raxel):

    x_m += g1 * SelfAttn_m(mod(LN(x_m)))                          within the modality
    x_m += g2 * CrossAttn_m(q=mod(LN(x_m)), kv=mod(LN(x_other)))  across (both directions)
    x_m += g3 * MLP_m(mod(LN(x_m)))

with shift/scale/gate (mod, g) from adaLN-Zero on a per-latent-frame timestep embedding, per
modality, so clean (t=0) and noised frames sit side by side in one clip. The ablation
`attention="joint"` replaces self+cross by one self-attention over the concatenated tokens.

Tokens stay (B, t, n, d) -- latent frame and patch apart -- so the per-frame modulation
broadcasts with no reshape; attention alone flattens t*n. Few reshapes keep the exported ONNX
graph small: at this size a denoiser step costs more in per-operator overhead than in FLOPs.

    forward(video (B,t,C,s,s), raxel (B,t,2C,s,s), t_video (B,t), t_raxel (B,t), motion (B,t,M,s,s),
            warp (B,t,C+1,s,s) only with config.warp_condition)
        -> (v_video (B,t,C,s,s), v_raxel (B,t,2C,s,s))

Geometry conditioning (``config.warp_condition``, issue 12; as ViewCrafter / GenWarp condition
video diffusion on point-cloud renders): the source image forward-warped into every target
camera, encoded by the codec (C channels), plus the warp's validity (1 channel, the share of
each latent cell and latent frame the warp has data for) enters the video branch through its
own patch embedding (``warp_embed``), added to the video tokens. It is ZERO-initialised
(weight and bias; ControlNet's zero convolution), so a denoiser built with the switch on and
loaded with weights trained without it computes exactly what they did until fine-tuning moves
it. All-zero warp input = no condition (what training shows the view job 20 % of the time and
the other jobs always).

Warp skip (``config.warp_skip``, x0 prediction only): the predicted clean video latents also
receive ``WarpSkip(warp)``, a 1x1 convolution of [warp latents, validity, validity * warp
latents] (2C+1 -> C channels per latent cell), zero-initialised like ``warp_embed``. Where the
warp is valid the denoiser can then pass the warp's latents straight to its output and spend
its tokens on what the warp gets wrong (holes, depth errors), GenWarp-style; a 4x4-patch token
alone cannot carry a warp's detail to the output.

Output parametrisation (`prediction`): "x0" (default) -- the heads predict the clean latents
and forward returns v = (x_t - x0) / max(t, 0.05), the contract's velocity. A token carries
4*4*16 = 256 raxel values but is only 96 wide, so a velocity head cannot pass the noise
through (velocity = noise - x0 is full-rank noise at t ~ 1); clean latents are low-dimensional
and can be predicted (as argued in "Back to Basics: Let Denoising Generative Models Denoise").
"velocity" predicts v directly.

Positions: fixed 2D sin-cos over the patch grid plus a learned embedding per latent frame.
Initialisation (as DiT): Linear layers Xavier-uniform with zero bias, patch embeddings like a
Linear, timestep MLP normal(0, 0.02), temporal embedding normal(0, 0.02), and every adaLN
modulation and final output layer zero, so each block is the identity at init and the heads
start at zero (x0 = 0, or v = 0 with prediction="velocity").
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from rap_ros.contract.config import ModelConfig

# x0-prediction turns clean-latent outputs into velocities v = (x_t - x0) / max(t, T_MIN).
T_MIN = 0.05

# Motion channels are flow / image size, typically 0.01-0.05; this fixed gain brings them to
# the order of the latents before the (shared) patch embedding.
MOTION_GAIN = 10.0


def modulate(x, shift, scale):
    """adaLN: tokens x (B, t, n, d) with per-latent-frame shift, scale (B, t, 1, d)."""
    return x * (1 + scale) + shift                          # (B, t, n, d)


def sincos_2d(grid: int, dim: int) -> np.ndarray:
    """Fixed 2D sin-cos position table (grid*grid, dim), as in MAE/DiT."""
    ys, xs = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64),
                         indexing="ij")
    quarter = dim // 4
    omega = 1.0 / 10000 ** (np.arange(quarter) / max(quarter, 1))
    out = []
    for pos in (ys.reshape(-1), xs.reshape(-1)):
        angles = pos[:, None] * omega[None]
        out += [np.sin(angles), np.cos(angles)]
    table = np.concatenate(out, axis=1)
    return np.pad(table, ((0, 0), (0, dim - table.shape[1]))).astype(np.float32)


class TimestepEmbedder(nn.Module):
    """Flow time per latent frame -> conditioning vector: (B, t) -> (B, t, cond_dim)."""

    def __init__(self, cond_dim: int, freq_dim: int = 64):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, cond_dim), nn.SiLU(),
                                 nn.Linear(cond_dim, cond_dim))
        half = freq_dim // 2
        self.register_buffer("freqs", torch.exp(-math.log(10000.0) * torch.arange(half) / half),
                             persistent=False)

    def forward(self, t):                                   # t: (B, t) in [0, 1]
        args = (t * 1000.0)[..., None] * self.freqs         # (B, t, freq/2)
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, t, freq)
        return self.mlp(emb)                                # (B, t, cond)


class Attention(nn.Module):
    """Multi-head attention over all tokens of a clip; queries from x, keys/values from y
    (y = x: self-attention). Tokens are (B, t, n, d); every token attends to every token of
    y, across latent frames. Exported to ONNX as matmul + softmax (any opset); in torch
    (training, the torch backend) the same product through ``scaled_dot_product_attention``
    (equal to ~1e-6), whose fused kernels are meant for the GPU recipe; on the 2-core CPU a
    training step is no faster (``benchmarks/results/attention_cpu.jsonl``), on a GPU it is
    not measured yet."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, y=None):                           # x: (B, t, n, d), y: (B, t', n', d)
        y = x if y is None else y
        B, t, n, d = x.shape
        h = self.heads
        q = self.q(x).reshape(B, -1, h, d // h).transpose(1, 2)         # (B, h, N, d/h)
        k, v = self.kv(y).reshape(B, -1, 2, h, d // h).permute(2, 0, 3, 1, 4)  # (B, h, L, d/h) x2
        if torch.onnx.is_in_onnx_export():
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(d // h))  # (B, h, N, L)
            out = att.softmax(dim=-1) @ v                               # (B, h, N, d/h)
        else:
            out = F.scaled_dot_product_attention(q, k, v)               # (B, h, N, d/h)
        return self.proj(out.transpose(1, 2).reshape(B, t, n, d))      # (B, t, n, d)


class Mlp(nn.Module):
    def __init__(self, dim: int, ratio: float):
        super().__init__()
        hidden = int(dim * ratio)
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), \
            nn.Linear(hidden, dim)

    def forward(self, x):                                   # x: (..., d)
        return self.fc2(self.act(self.fc1(x)))              # (..., d)


class ModalityLayers(nn.Module):
    """The per-modality half of a block: norms, attention(s), MLP and adaLN-Zero."""

    def __init__(self, dim, heads, mlp_ratio, cond_dim, cross: bool):
        super().__init__()
        self.n_mod = 9 if cross else 6
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.self_attn = Attention(dim, heads) if cross else None
        if cross:
            self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
            self.cross_attn = Attention(dim, heads)
        self.norm3 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, mlp_ratio)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, self.n_mod * dim))

    def modulation(self, c):                                # c: (B, t, cond)
        return self.ada(c)[:, :, None].chunk(self.n_mod, dim=-1)  # n_mod x (B, t, 1, d)


class DSCABlock(nn.Module):
    def __init__(self, dim, heads, mlp_ratio, cond_dim, attention="dsca"):
        super().__init__()
        self.attention = attention
        cross = attention == "dsca"
        self.video = ModalityLayers(dim, heads, mlp_ratio, cond_dim, cross)
        self.raxel = ModalityLayers(dim, heads, mlp_ratio, cond_dim, cross)
        self.joint_attn = None if cross else Attention(dim, heads)

    def forward(self, xv, xr, cv, cr):  # xv, xr: (B, t, n, d); cv, cr: (B, t, cond)
        V, R = self.video, self.raxel
        mv, mr = V.modulation(cv), R.modulation(cr)         # (B, t, 1, d) each
        if self.attention == "dsca":
            xv = xv + mv[2] * V.self_attn(modulate(V.norm1(xv), mv[0], mv[1]))  # (B, t, n, d)
            xr = xr + mr[2] * R.self_attn(modulate(R.norm1(xr), mr[0], mr[1]))  # (B, t, n, d)
            hv = modulate(V.norm2(xv), mv[3], mv[4])                            # (B, t, n, d)
            hr = modulate(R.norm2(xr), mr[3], mr[4])                            # (B, t, n, d)
            xv, xr = (xv + mv[5] * V.cross_attn(hv, hr),                        # (B, t, n, d)
                      xr + mr[5] * R.cross_attn(hr, hv))                        # (B, t, n, d)
            k = 6
        else:
            hv = modulate(V.norm1(xv), mv[0], mv[1])                            # (B, t, n, d)
            hr = modulate(R.norm1(xr), mr[0], mr[1])                            # (B, t, n, d)
            h = self.joint_attn(torch.cat([hv, hr], dim=2))                     # (B, t, 2n, d)
            xv = xv + mv[2] * h[:, :, :xv.shape[2]]                             # (B, t, n, d)
            xr = xr + mr[2] * h[:, :, xv.shape[2]:]                             # (B, t, n, d)
            k = 3
        xv = xv + mv[k + 2] * V.mlp(modulate(V.norm3(xv), mv[k], mv[k + 1]))   # (B, t, n, d)
        xr = xr + mr[k + 2] * R.mlp(modulate(R.norm3(xr), mr[k], mr[k + 1]))   # (B, t, n, d)
        return xv, xr


class FinalLayer(nn.Module):
    """adaLN + linear to patch values: (B, t, n, d) -> (B, t, n, p*p*out)."""

    def __init__(self, dim, cond_dim, patch, out_ch):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 2 * dim))
        self.linear = nn.Linear(dim, patch * patch * out_ch)

    def forward(self, x, c):                                # x: (B, t, n, d), c: (B, t, cond)
        shift, scale = self.ada(c)[:, :, None].chunk(2, dim=-1)  # (B, t, 1, d) each
        return self.linear(modulate(self.norm(x), shift, scale))  # (B, t, n, p*p*out)


class PatchEmbed(nn.Module):
    """(B, t, ch, s, s) -> (B, t, n, d), n = (s/p)^2 patches in row-major order."""

    def __init__(self, in_ch, dim, patch):
        super().__init__()
        self.proj = nn.Conv2d(in_ch, dim, patch, stride=patch)

    def forward(self, x):                                   # x: (B, t, ch, s, s)
        B, t = x.shape[:2]
        h = self.proj(x.flatten(0, 1))                      # (B*t, d, s/p, s/p)
        return h.flatten(2).transpose(1, 2).reshape(B, t, -1, h.shape[1])  # (B, t, n, d)


class WarpSkip(nn.Module):
    """warp (B, t, C+1, s, s) -> (B, t, C, s, s) added to the x0 video head (zero at init)."""

    def __init__(self, latent_channels: int):
        super().__init__()
        self.proj = nn.Conv2d(2 * latent_channels + 1, latent_channels, kernel_size=1)

    def forward(self, warp):                                # warp: (B, t, C+1, s, s)
        latents, validity = warp[:, :, :-1], warp[:, :, -1:]
        x = torch.cat([latents, validity, latents * validity], dim=2)  # (B, t, 2C+1, s, s)
        return self.proj(x.flatten(0, 1)).unflatten(0, warp.shape[:2])  # (B, t, C, s, s)


class RaxelDiT(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        C, d, p = config.latent_channels, config.width, config.patch_size
        self.grid = config.latent_size // p
        self.n = self.grid * self.grid
        video_in = C + (config.motion_dim if config.motion_channels else 0)
        self.video_embed = PatchEmbed(video_in, d, p)
        self.raxel_embed = PatchEmbed(2 * C, d, p)
        # warp condition: (B, t, C+1, s, s) -> (B, t, n, d), added to the video tokens
        self.warp_embed = PatchEmbed(config.warp_dim, d, p) if config.warp_condition else None
        self.warp_skip = WarpSkip(C) if config.warp_skip else None
        self.register_buffer("pos_space", torch.from_numpy(sincos_2d(self.grid, d)))  # (n, d)
        self.pos_time = nn.Parameter(torch.zeros(config.max_latent_frames, d))       # (t_max, d)
        self.t_embed = TimestepEmbedder(config.cond_dim)
        self.blocks = nn.ModuleList(
            DSCABlock(d, config.heads, config.mlp_ratio, config.cond_dim, config.attention)
            for _ in range(config.depth))
        self.video_out = FinalLayer(d, config.cond_dim, p, C)
        self.raxel_out = FinalLayer(d, config.cond_dim, p, 2 * C)
        self.initialize_weights()

    def initialize_weights(self):
        def basic(m):
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        self.apply(basic)
        for emb in (self.video_embed, self.raxel_embed):
            w = emb.proj.weight
            nn.init.xavier_uniform_(w.view(w.shape[0], -1))
            nn.init.zeros_(emb.proj.bias)
        if self.warp_embed is not None:  # zero: the condition adds nothing at init
            nn.init.zeros_(self.warp_embed.proj.weight)
            nn.init.zeros_(self.warp_embed.proj.bias)
        if self.warp_skip is not None:  # zero as well
            nn.init.zeros_(self.warp_skip.proj.weight)
            nn.init.zeros_(self.warp_skip.proj.bias)
        nn.init.normal_(self.pos_time, std=0.02)
        for lin in (self.t_embed.mlp[0], self.t_embed.mlp[2]):
            nn.init.normal_(lin.weight, std=0.02)
        for block in self.blocks:
            for half in (block.video, block.raxel):
                nn.init.zeros_(half.ada[-1].weight)
                nn.init.zeros_(half.ada[-1].bias)
        for final in (self.video_out, self.raxel_out):
            for lin in (final.ada[-1], final.linear):
                nn.init.zeros_(lin.weight)
                nn.init.zeros_(lin.bias)

    def positions(self, t):                                 # -> (t, n, d)
        return self.pos_time[:t, None, :] + self.pos_space[None]

    def unpatchify(self, x, ch):                            # x: (B, t, n, p*p*ch)
        B, t = x.shape[:2]
        g, p = self.grid, self.config.patch_size
        x = x.reshape(B, t, g, g, p, p, ch)                 # (B, t, g, g, p, p, ch)
        x = x.permute(0, 1, 6, 2, 4, 3, 5)                  # (B, t, ch, g, p, g, p)
        return x.reshape(B, t, ch, g * p, g * p)            # (B, t, ch, s, s)

    def forward(self, video, raxel, t_video, t_raxel, motion=None, warp=None):
        # video (B, t, C, s, s); raxel (B, t, 2C, s, s); t_* (B, t); motion (B, t, M, s, s);
        # warp (B, t, C+1, s, s) (config.warp_condition; None: zeros, no condition)
        t, C = video.shape[1], video.shape[2]
        if self.config.motion_channels:
            if motion is None:
                motion = video.new_zeros(video.shape[0], t, self.config.motion_dim,
                                         *video.shape[3:])
            video_in = torch.cat([video, motion * MOTION_GAIN], dim=2)  # (B, t, C+M, s, s)
        else:
            video_in = video                                # (B, t, C, s, s)
        pos = self.positions(t)                             # (t, n, d)
        xv = self.video_embed(video_in) + pos               # (B, t, n, d)
        if self.warp_embed is not None:
            if warp is None:
                warp = video.new_zeros(video.shape[0], t, self.config.warp_dim,
                                       *video.shape[3:])
            xv = xv + self.warp_embed(warp)                 # (B, t, n, d)
        xr = self.raxel_embed(raxel) + pos                  # (B, t, n, d)
        cv, cr = self.t_embed(t_video), self.t_embed(t_raxel)  # (B, t, cond) each
        for block in self.blocks:
            xv, xr = block(xv, xr, cv, cr)                  # (B, t, n, d) each
        out_v = self.unpatchify(self.video_out(xv, cv), C)       # (B, t, C, s, s)
        out_r = self.unpatchify(self.raxel_out(xr, cr), 2 * C)   # (B, t, 2C, s, s)
        if self.config.prediction == "velocity":
            return out_v, out_r
        # x0-prediction: the heads give clean latents, returned as v = (x_t - x0) / t
        if self.warp_skip is not None:
            out_v = out_v + self.warp_skip(warp)            # (B, t, C, s, s)
        tv = t_video.clamp(min=T_MIN).reshape(*t_video.shape, 1, 1, 1)        # (B, t, 1, 1, 1)
        tr = t_raxel.clamp(min=T_MIN).reshape(*t_raxel.shape, 1, 1, 1)        # (B, t, 1, 1, 1)
        return (video - out_v) / tv, (raxel - out_r) / tr                     # velocities


def add_warp_condition(dit: RaxelDiT, skip: bool = False) -> RaxelDiT:
    """A denoiser with ``warp_condition`` on (and ``warp_skip`` with ``skip``) and every weight
    of ``dit``: the warp modules it lacks are added zero, so it computes exactly what ``dit``
    computes, for any warp input. ``dit`` with those switches on already is returned as is."""
    config = dit.config
    if config.warp_condition and (config.warp_skip or not skip):
        return dit
    config = type(config).from_dict({**config.to_dict(), "warp_condition": True,
                                     "warp_skip": skip or config.warp_skip})
    out = RaxelDiT(config)
    missing, unexpected = out.load_state_dict(dit.state_dict(), strict=False)
    if unexpected or any(not k.startswith(("warp_embed.", "warp_skip.")) for k in missing):
        raise RuntimeError(f"cannot add the warp condition: missing {missing}, "
                           f"unexpected {unexpected}")
    return out.train(dit.training)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
