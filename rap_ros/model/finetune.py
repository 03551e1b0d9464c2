"""Fine-tuning: exported weights adapted to the user's recordings.

The shipped codec stays frozen; the denoiser continues from its EMA weights on synthetic clips
mixed with pseudo-labelled clips of the recordings (``evaluation.pseudo_labels``, written by
`rap-ros train --finetune` into the run's real_cache/), through the training's denoiser loop
(``train.fit_dit``).
"""
import dataclasses
from pathlib import Path

from rap_ros.contract.files import file_sha256
from rap_ros.model import data as data_mod
from rap_ros.model.checkpoint import load_weights, save_checkpoint, save_weights
from rap_ros.model.dit import add_warp_condition
from rap_ros.model.run import Run, ensure_caches
from rap_ros.model.train import encoded_clips, fit_dit


def finetune_dit(run: Run, weights, real_cache, minutes, resume, max_steps=0,
                 real_fraction=0.5, warp_clip=None):
    """Adapt shipped weights to pseudo-labelled real clips (a clip cache,
    ``evaluation.pseudo_labels``), drawn in proportion ``real_fraction`` with the synthetic
    training clips so the model keeps what it knew. The codec stays as shipped (frozen: the
    latent space the ONNX graphs and the real clips' latents share); the denoiser starts
    from the weights' EMA denoiser. Writes run.dir/rap_small.pt with the provenance in
    ``meta``, and the frozen codec as run.dir/codec.pt (so ``weights_from_run`` exports the
    run's checkpoints too). Returns its path.

    real_cache None: synthetic clips only. With ``run.config.model.warp_condition`` on and
    weights trained without it, the denoiser gains the zero-initialised warp input
    (``dit.add_warp_condition``, with the warp skip if the run's config has it: it starts
    exactly where the weights are) and learns it;
    ``warp_clip`` (``pipeline.conditioning.training_warp``) makes the clips' warps."""
    config, codec, dit = load_weights(weights)
    codec.requires_grad_(False)
    warp = run.config.model.warp_condition
    if warp:
        dit = add_warp_condition(dit, skip=run.config.model.warp_skip)
        config = dit.config
    framing = getattr(run.config.model, "framing", "centre")
    if config.framing != framing:  # the framing changes the data, not the networks
        config = dataclasses.replace(config, framing=framing)
        dit.config = config
    if config != run.config.model:
        raise ValueError(f"run config {run.config.model} is not the weights' {config}")
    cache, _ = ensure_caches(run)
    digest = file_sha256(weights)[:12] + ("_warp" if warp else "")
    if run.main:
        save_checkpoint(run.dir / "codec.pt", {"model": codec.state_dict(), "step": 0,
                                               "elapsed": 0.0, "done": True,
                                               "config": run.config.to_dict(),
                                               "frozen_from": str(weights)})
    synthetic = encoded_clips(run, cache, codec, f"synthetic_{digest}", warp_clip)
    sources, mix, real_clips = [synthetic], [1.0], None
    if real_cache is not None:
        real_clips = data_mod.FrameCache(real_cache)  # framed as run.config.model.framing
        if not len(real_clips):
            raise ValueError(f"no pseudo-labelled clips in {real_cache}: the odometry core "
                             "tracked no window of the recordings")
        labels = file_sha256(Path(real_cache) / "c2w.npy")[:12]   # new labels: encoded anew
        sources.append(encoded_clips(run, real_clips, codec, f"real_{digest}_{labels}",
                                     warp_clip))
        mix = [1.0 - real_fraction, real_fraction]
    if framing == "letterbox":  # square clips and their letterboxed strips (issue 12)
        if run.main:
            data_mod.letterbox_cache(run.dir / "cache", run.dir / "letterbox_cache",
                                     seed=run.config.train.seed, log=run.log)
        run.barrier()
        boxed = data_mod.FrameCache(run.dir / "letterbox_cache")
        sources.insert(1, encoded_clips(run, boxed, codec, f"letterbox_{digest}", warp_clip))
        share = data_mod.LETTERBOX_SHARE
        mix = [mix[0] * (1.0 - share), mix[0] * share] + mix[1:]
    dit.train()
    ema = fit_dit(run, codec, dit, sources, mix, minutes, resume, max_steps)
    out = run.dir / "rap_small.pt"
    if run.main:
        meta = {"finetuned_from": str(weights), "finetuned_from_sha256": file_sha256(weights),
                "framing": framing,
                "real_clips": len(sources[-1]) if real_clips is not None else 0,
                "real_fraction": real_fraction if real_clips is not None else 0.0,
                "recordings": real_clips.meta.get("recordings", []) if real_clips else [],
                "warp_condition": warp, "dit_weights": "ema"}
        save_weights(out, config, codec, ema, meta)
        run.log(f"fine-tuned weights -> {out}")
    return out

