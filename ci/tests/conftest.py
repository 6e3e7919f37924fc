import sys
from pathlib import Path

# ci/ is not a package on sys.path; make `import vmrun` work from any cwd.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
