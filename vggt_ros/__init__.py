"""vggt_ros: VGGT on ROS 2 camera streams and rosbags.

The generated interface modules (``vggt_ros.msg``, ``vggt_ros.srv``) may live in another
directory than this source tree (the development venv keeps them apart so an editable install
and the cmake-generated code do not shadow each other); extend_path merges every ``vggt_ros``
directory on sys.path into this one package.
"""
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
__version__ = "0.1.0"
