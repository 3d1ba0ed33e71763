"""Episode recordings to and from LeRobot's dataset format v3.0, without lerobot at run time.

    python -m robolearn.dataset export <replay file | run dir> <out_dir> [--env NAME] [env overrides]
    python -m robolearn.dataset import <dataset_dir> <out.npz> [--env NAME] [env overrides]

lerobot_format.py: the layout (and what of LeRobot's was followed); export.py: replay files -> dataset;
importer.py: dataset -> a demo file training loads (docs/datasets.md).
"""

from robolearn.dataset.export import export_dataset
from robolearn.dataset.importer import import_dataset
from robolearn.dataset.lerobot_format import DatasetError

__all__ = ["DatasetError", "export_dataset", "import_dataset"]
