import sys
from pathlib import Path

# kernel-build/ is not a package on sys.path; make `import kbuild` work from any cwd.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
