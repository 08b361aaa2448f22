"""pip install path of vggt_ros (development venv, machines without ROS).

On a robot the package is built by colcon through CMakeLists.txt (ament_cmake); both paths
install the same Python package and the same executables.
"""
from setuptools import find_packages, setup

setup(
    name="vggt_ros",
    version="0.1.0",
    description="VGGT for ROS 2: poses on TF, depth, PointCloud2, tracking, offline mapping",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["vggt_ros", "vggt_ros.*"]),
    package_data={"vggt_ros": ["data/*.safetensors"]},
    entry_points={
        "console_scripts": [
            "vggt_node = vggt_ros.nodes.vggt_node:main",
            "vggt_map = vggt_ros.offline.cli:main",
            "vggt_synth = vggt_ros.synth.cli:main",
            "vggt_eval = vggt_ros.evaluation.cli:main",
            "vggt_bench = vggt_ros.bench.cli:main",
            "vggt_train = vggt_ros.training.cli:main",
        ]
    },
)
