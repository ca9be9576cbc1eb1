import sys

from napari_sam_peft.cli import main

sys.exit(main())
