"""LiteRT.js, the WebAssembly runtime the exported web page runs the model with, fetched once at install time.

`python -m core.serving.web_runtime` (run by `make run` / `make test`) downloads the pinned `@litertjs/core` and
`@litertjs/wasm-utils` packages from the npm registry, checks them against the registry's sha512
integrity, and keeps the files a page needs beside the installed Python packages, in
`.venv/share/transferlab/` (not in git: the WebAssembly files are ~9 MB each). Exporting a web page
then needs no network, and neither does the page.
"""

from __future__ import annotations

import base64
import hashlib
import io
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

VERSION = "2.5.3"
PACKAGES = {  # npm package -> (tarball, sha512 integrity as the registry publishes it)
    "@litertjs/core": (f"https://registry.npmjs.org/@litertjs/core/-/core-{VERSION}.tgz",
                       "sha512-PlGmbMOq9WitX7FO0jhbdJw9GthatsyuCQXjTt/wJZo0FLaw48q4tz8IwqgqCIkviYGr9OFDL1kCnN4nzWoyJQ=="),
    "@litertjs/wasm-utils": (f"https://registry.npmjs.org/@litertjs/wasm-utils/-/wasm-utils-{VERSION}.tgz",
                             "sha512-4fJiw6tBQnIs+0jH/OQ16nYOiSl8/+zZnn5h2ul8aTKHi05sVqZW580Tmk78pC2kT39A9OYBVdFawteZ/sI1kQ=="),
}
# What a page needs, as (package, file in its tarball, name kept). The plain and "compat" builds: the loader picks
# the compat one where the browser lacks relaxed SIMD; the threaded and JSPI builds need headers or flags a simple
# local server does not give.
FILES = (
    ("@litertjs/core", "package/dist/index.js", "litert.js"),
    ("@litertjs/wasm-utils", "package/dist/index.js", "wasm-utils.js"),
    *(("@litertjs/core", f"package/wasm/litert_wasm{kind}_internal.{ext}", f"wasm/litert_wasm{kind}_internal.{ext}")
      for kind in ("", "_compat") for ext in ("js", "wasm")),
)
LICENSE = Path(__file__).parent / "web" / "LICENSE-litertjs.txt"
RUNTIME_DIR = Path(sys.prefix) / "share" / "transferlab" / f"litertjs-{VERSION}"
TIMEOUT_S = 120


class RuntimeMissing(RuntimeError):
    """The LiteRT.js files are not installed: the install step has not run."""


def runtime_files() -> dict[str, Path]:
    """Name in the page's `litertjs/` folder -> installed file; raises RuntimeMissing when any is absent."""
    found = {name: RUNTIME_DIR / name for _, _, name in FILES}
    missing = [name for name, path in found.items() if not path.is_file()]
    if missing:
        raise RuntimeMissing(f"The LiteRT.js runtime for web pages is not installed ({', '.join(missing)} missing "
                             f"in {RUNTIME_DIR}). Run `make run` or `python -m core.serving.web_runtime` once with a "
                             "connection to the npm registry.")
    return {**found, "LICENSE.txt": LICENSE}


def _fetch(url: str, integrity: str) -> bytes:
    algorithm, expected = integrity.split("-", 1)
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
        data = response.read()
    if base64.b64encode(hashlib.new(algorithm, data).digest()).decode() != expected:
        raise RuntimeError(f"{url} does not match its published {algorithm} integrity: not installed.")
    return data


def install() -> Path:
    """Download, check and unpack the pinned runtime into RUNTIME_DIR (a no-op when it is there)."""
    try:
        runtime_files()
        return RUNTIME_DIR
    except RuntimeMissing:
        pass
    tarballs = {package: tarfile.open(fileobj=io.BytesIO(_fetch(url, integrity)), mode="r:gz")
                for package, (url, integrity) in PACKAGES.items()}
    RUNTIME_DIR.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".litertjs-", dir=RUNTIME_DIR.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the installed runtime is for every user of the checkout
    try:
        for package, member, name in FILES:
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tarballs[package].extractfile(member)
            if source is None:
                raise RuntimeError(f"{package} {VERSION} has no file {member}.")
            target.write_bytes(source.read())
        shutil.rmtree(RUNTIME_DIR, ignore_errors=True)
        staging.rename(RUNTIME_DIR)  # whole or not at all
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return RUNTIME_DIR


if __name__ == "__main__":
    try:
        print(f"LiteRT.js {VERSION} for web pages: {install()}")
    except (OSError, RuntimeError) as exc:
        print(f"error: could not install LiteRT.js for the web page export: {exc}", file=sys.stderr)
        sys.exit(1)
