"""Offline mapping of recorded bags: the mapper, its ``vggt_map`` command line and ``make demo``.

It feeds a bag through the same ``vggt_ros.pipeline.pipeline.Pipeline`` the live node runs and
hands the results to ``vggt_ros.export``.
"""
