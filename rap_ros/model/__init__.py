"""The joint video/camera model in torch: codec, DSCA denoiser, flow matching, training.

    from rap_ros.model.codec import CausalVideoCodec      # encode / decode
    from rap_ros.model.dit import RaxelDiT                # forward(video, raxel, t_v, t_r, motion)
    from rap_ros.model.flow import flow_loss, sample, draw_jobs, job_batch_masks
    from rap_ros.model.checkpoint import load_weights, save_weights, weights_from_run
    from rap_ros.model.train import run_training

The torch-free half of the contract (``ModelConfig``, pre- and post-processing, job masks)
is ``rap_ros.contract``; the ONNX export and the backends that run the model are
``rap_ros.backend``. Nothing below this package imports it, so torch stays optional.
"""
