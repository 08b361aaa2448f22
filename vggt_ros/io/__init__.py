"""File and message formats, with no rclpy and no model code.

Bags (``bag_messages``, ``bag_layout``, ``bag_reader`` with ``mcap_recovery``,
``sqlite_recovery`` and ``read_report``, ``bag_writer`` with ``mcap_storage``,
``image_stream``), ROS stamps (``stamps``), image encodings (``images``), the PointCloud2
layout (``pointcloud``), TUM trajectories (``tum``), strict JSON (``strict_json``) and atomic
file creation (``atomic``).
Import the modules directly.
"""
