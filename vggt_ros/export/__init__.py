"""Writers for the offline mapper's outputs (PLY, COLMAP text, MCAP bag, report, summary;
the TUM trajectory is written by ``vggt_ros.io.tum.write_tum``).

One small module per format; every file is written atomically (``vggt_ros.io.atomic``:
temporary name in the same directory, then ``os.replace``), so an interrupted run never leaves
a half-written file under a final name.
"""
