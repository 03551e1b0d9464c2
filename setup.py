"""rap_ros: an ament_python package, installable with pip or colcon."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "rap_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={PACKAGE: ["model/weights/*", "model/weights/onnx/*", "model/configs/*.yaml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE}/rviz", glob("rviz/*.rviz")),
        (f"share/{PACKAGE}/foxglove", glob("foxglove/*.json")),
    ],
    python_requires=">=3.10",
    install_requires=[
        "setuptools", "numpy", "scipy", "onnxruntime", "opencv-python-headless",
        "pyyaml", "tqdm", "matplotlib", "rosbags", "scikit-image", "pillow", "gtsam", "mcap",
    ],
    extras_require={"train": ["torch", "onnx"], "gpu": ["onnxruntime-gpu"]},
    zip_safe=True,
    maintainer="rap_ros maintainers",
    maintainer_email="maintainers@rap-ros.invalid",
    description="Rays as Pixels for ROS 2: ego-motion from video and view prediction along paths.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "rap-ros = rap_ros.tools.cli:main",
            "trajectory_estimator = rap_ros.nodes.trajectory_estimator:main",
            "view_predictor = rap_ros.nodes.view_predictor:main",
        ],
    },
)
