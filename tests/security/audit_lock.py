"""`make audit`: pip-audit over every package pinned in uv.lock (not just what is installed).

Exit 1 when a known vulnerability is found that is not accepted below. When the vulnerability
service cannot be reached (an offline CI runner, a sandbox), pip-audit reports every package as
"not found"; that is not a pass: the audit says so loudly and exits 0, unless
``AUDIT_REQUIRE_NETWORK=1`` (a release build) turns it into a failure. See docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# vulnerability id -> why it is accepted (reviewed; see docs/reliability.md). Empty today.
ACCEPTED: dict[str, str] = {}


def main() -> int:
    root = Path(__file__).resolve().parents[2]
    python = os.environ.get("PYTHON", "python3.11")
    with tempfile.TemporaryDirectory() as folder:
        requirements = Path(folder) / "requirements.txt"
        exported = subprocess.run(
            [python, "-m", "uv", "export", "--frozen", "--format", "requirements-txt", "--no-hashes", "--all-extras",
             "--no-emit-project", "-o", str(requirements)], cwd=root, capture_output=True, text=True,
        )
        if exported.returncode != 0:
            print(f"audit: uv export failed: {exported.stderr.strip()}", file=sys.stderr)
            return 1
        audited = subprocess.run(
            [str(Path(sys.executable).parent / "pip-audit"), "-r", str(requirements), "--no-deps", "--disable-pip",
             "--progress-spinner", "off", "-f", "json"], cwd=root, capture_output=True, text=True, timeout=1800,
        )
    try:
        report = json.loads(audited.stdout)
    except json.JSONDecodeError:
        print(f"audit: pip-audit failed: {audited.stderr.strip()[-2000:]}", file=sys.stderr)
        return 1
    packages = report.get("dependencies", [])
    skipped = [package for package in packages if package.get("skip_reason")]
    found = [(package["name"], package["version"], vulnerability["id"], vulnerability.get("fix_versions"))
             for package in packages for vulnerability in package.get("vulns", [])]
    blocking = [item for item in found if item[2] not in ACCEPTED]
    for name, version, ident, fixes in found:
        status = f"accepted: {ACCEPTED[ident]}" if ident in ACCEPTED else "BLOCKING"
        print(f"{name} {version}: {ident} (fixed in {', '.join(fixes or []) or 'no release'}) {status}")
    print(f"audit: {len(packages)} pinned packages, {len(packages) - len(skipped)} checked, {len(skipped)} not "
          f"checked, {len(found)} known vulnerabilities ({len(blocking)} blocking)")
    if blocking:
        return 1
    if packages and len(skipped) == len(packages):
        print("audit: WARNING: the vulnerability service was unreachable; nothing was checked", file=sys.stderr)
        return 1 if os.environ.get("AUDIT_REQUIRE_NETWORK") == "1" else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
