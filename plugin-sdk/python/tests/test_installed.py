"""The test host ships in the installed package: ``pip install --target DIR plugin-sdk/python``
(offline: the package has no dependencies) and the test host imported from DIR serves a
plugin."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import unittest
from pathlib import Path

from harness import PYTHON_SDK

# A scenario run by a separate interpreter that sees only the installed copy (no checkout).
SCENARIO = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    import gatekeeper_plugin, gatekeeper_plugin.testing as testing
    from gatekeeper_plugin import ModifierPlugin, cookies

    class Deny(ModifierPlugin):
        async def modify_request(self, request):
            if cookies(request).get("session"):
                return {}
            return {"response": {"status": 401, "headers": [], "body": "no"}}

    with testing.PluginHost(Deny(), type="modifier") as host:
        denied = host.modify_request(testing.make_request(path="/x"))
        allowed = host.modify_request(testing.make_request(cookies={"session": "s"}))
    print(gatekeeper_plugin.__file__)
    print(denied["response"]["status"], allowed)
    """
)


def installer() -> str | None:
    """A Python whose pip can build the package offline (pip, setuptools and wheel importable):
    this one, else the system's (the package is pure Python: any 3.11+ installs it)."""
    for python in (sys.executable, "/usr/bin/python3"):
        if not Path(python).exists():
            continue
        found = subprocess.run(
            [python, "-c", "import setuptools, wheel, pip"],
            capture_output=True, check=False, timeout=60,
        )
        if found.returncode == 0:
            return python
    return None


INSTALLER = installer()


@unittest.skipUnless(INSTALLER, "no Python with pip, setuptools and wheel to install with")
class Installed(unittest.TestCase):
    def test_the_test_host_is_in_the_installed_package(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp) / "site"
            # From a clean copy: pip builds in the source tree, whose stale build/ would hide a
            # package left out of pyproject.toml.
            source = Path(tmp) / "src"
            shutil.copytree(
                PYTHON_SDK, source,
                ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "tests"),
            )
            install = subprocess.run(
                [
                    str(INSTALLER), "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", "--target", str(target), str(source),
                ],
                capture_output=True, text=True, check=False, timeout=180,
                env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}, cwd=tmp,
            )
            self.assertEqual(install.returncode, 0, install.stderr)
            self.assertTrue((target / "gatekeeper_plugin" / "testing" / "host.py").is_file())
            run = subprocess.run(
                [sys.executable, "-I", "-c", SCENARIO, str(target)],
                capture_output=True, text=True, check=False, timeout=60, cwd=tmp,
            )
            self.assertEqual(run.returncode, 0, run.stderr)
            module_file, outcome = run.stdout.strip().splitlines()
            self.assertTrue(module_file.startswith(str(target)), module_file)
            self.assertEqual(outcome, "401 {}")


if __name__ == "__main__":
    unittest.main()
