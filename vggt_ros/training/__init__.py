"""Training of VGGT-structured models on the procedural scenes of ``vggt_ros.synth``.

Nothing here imports rclpy or rosbags: the package runs on a bare GPU machine with only torch,
NumPy and SciPy.
"""
