"""Docker HEALTHCHECK: healthy when the Jupyter server's API answers /api/status with our token."""

import os
import sys
import urllib.request
from pathlib import Path

TOKEN_FILE = Path("/tmp/jupyter-token")


def main() -> int:
    """0 when /api/status answers 200 to an authenticated request, else 1."""
    token = os.environ.get("JUPYTER_TOKEN") or (
        TOKEN_FILE.read_text().strip() if TOKEN_FILE.exists() else "")
    url = f"http://127.0.0.1:{os.environ.get('JUPYTER_PORT', '8888')}/api/status"
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except OSError as e:
        print(f"unhealthy: {url}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
