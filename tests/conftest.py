import sys
from pathlib import Path

# tests import shared helpers (workflow_helpers) from this folder
sys.path.insert(0, str(Path(__file__).parent))
