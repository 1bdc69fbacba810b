"""Example outside family for vision-gmps: a fingertip on a table reaches a hidden target.

``CONFIG_DIR`` is this package's hydra config folder; put it on ``VGMPS_CONFIG_PATH`` to use
``env=reach`` and ``+experiment=reach_cpu``.
"""

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
