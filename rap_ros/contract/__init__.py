"""The contract shared by the model (torch), the backends and the pipeline (numpy), torch-free.

* ``config``: ``ModelConfig``, the sizes of every tensor (docs/architecture.md), named sizes,
  YAML files.
* ``preprocess``: images and raxels to and from the model's layout, motion channels, and
  the job masks (which latent frames are clean).
* ``files``: ``ModelFileError`` and the weights digest.

Imports numpy, OpenCV and PyYAML only; never torch, onnxruntime or rclpy.
"""
